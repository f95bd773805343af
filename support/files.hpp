// Files ffnjit reads and writes. Every input file is untrusted: it is opened through
// InputFile, which refuses anything but a regular file (a FIFO would block forever,
// /dev/zero would never end) and enforces a size cap per kind of file. Outputs are
// written through write_file_atomically (a fresh temporary file, then rename).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "support/status.hpp"

namespace ffnjit {

// Size caps per kind of input file, in bytes. Each is far above what real files need
// and far below what would exhaust memory; a larger file is refused before it is read.
// config.json: real ones are a few KB (multimodal configs < 100 KB).
inline constexpr uint64_t kMaxConfigJsonBytes = 16ull << 20;  // 16 MiB
// model.safetensors.index.json: ~100 bytes per tensor; 64 MiB is ~600k tensors.
inline constexpr uint64_t kMaxIndexJsonBytes = 64ull << 20;  // 64 MiB
// A sparsity profile: ~8 bytes per neuron and layer (a 128-layer, d_ff 53248 model
// writes ~60 MB).
inline constexpr uint64_t kMaxProfileJsonBytes = 256ull << 20;  // 256 MiB
// (safetensors files are memory-mapped, not read; their JSON header has its own cap,
// st::kMaxHeaderBytes = 100,000,000 bytes, the format's.)
inline constexpr uint64_t kNoSizeCap = UINT64_MAX;

// An open, read-only regular file; move-only, closes on destruction.
class InputFile {
 public:
  // Opens `path` with O_RDONLY | O_NONBLOCK | O_CLOEXEC (so that a FIFO cannot block
  // the open), fstat()s it, refuses what is not a regular file with a message naming
  // the path and what it is, refuses a size above `max_bytes` (naming `what`, e.g.
  // "config.json", and the cap), then clears O_NONBLOCK. `follow_symlinks` false adds
  // O_NOFOLLOW; checkpoints are read with it true, since the Hugging Face hub cache
  // stores every file of a snapshot as a symlink into its blobs/ directory.
  // Errors: kNotFound (no such file), kInvalidArgument (not a regular file, too
  // large), kIo (permissions and other open failures).
  static Expected<InputFile> open(const std::string& path, std::string_view what,
                                  uint64_t max_bytes, bool follow_symlinks = true);
  InputFile(InputFile&& o) noexcept;
  InputFile& operator=(InputFile&& o) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile();

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // st_size when opened
  const std::string& path() const { return path_; }
  // The whole content; a file that grew past the cap since open() is refused.
  Expected<std::string> read_all();

 private:
  InputFile() = default;
  int fd_ = -1;
  uint64_t size_ = 0, max_bytes_ = 0;
  std::string path_, what_;
};

// InputFile::open + read_all.
Expected<std::string> read_input_file(const std::string& path, std::string_view what,
                                      uint64_t max_bytes, bool follow_symlinks = true);

// Writes `bytes` to `path` through a temporary file created with mkstemp (O_EXCL: it
// never opens an existing file or follows a symlink) in the same directory, fsync, and
// rename over `path`. A symlink at `path` is replaced, not written through; readers
// never see a partial file. The file gets mode 0666 minus the umask, as fopen would.
Status write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace ffnjit
