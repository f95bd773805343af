// safetensors files: strict header validation, memory-mapped reading (single and sharded), writing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.hpp"

namespace ffnjit::st {

// Every dtype of the format, so that any valid file validates; only kBF16, kF16 and
// kF32 convert to the kernels' bf16.
enum class Dtype {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64
};

const char* dtype_name(Dtype d);  // the format's code: "BF16"
size_t dtype_size(Dtype d);       // bytes per element
Expected<Dtype> parse_dtype(std::string_view code);
bool is_float_dtype(Dtype d);  // kBF16, kF16 or kF32: the ones ffnjit converts

// The format's own cap (the official validator refuses larger headers).
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// ffnjit's cap on a tensor name (the format sets none; real names are < 200 bytes). A
// longer name is refused by the reader and the writer, so that no name of attacker size
// reaches discovery or an error message.
inline constexpr size_t kMaxTensorNameBytes = 1024;

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct Header {
  std::vector<TensorInfo> tensors;  // sorted by data offset
  std::vector<size_t> by_name;      // indices into `tensors` in name order, for find()
  std::map<std::string, std::string> metadata;
  uint64_t header_bytes = 0;                            // the N of the 8-byte prefix
  uint64_t data_bytes = 0;                              // size of the data section
  const TensorInfo* find(std::string_view name) const;  // O(log n)
};

// Validates a whole file image (8-byte little-endian length, JSON header, data)
// like the format's validator: header length cap and bounds, UTF-8 JSON object that
// starts with '{', known dtypes, non-negative shapes without overflow, dtype x shape
// = byte size, offsets in range, tensors contiguous, non-overlapping and covering
// the data section exactly (no trailing bytes), no duplicate names, `__metadata__`
// a string->string map. `label` (the file name) starts every error message.
// ffnjit's own limits on top: tensor names of at most kMaxTensorNameBytes, JSON
// nesting of at most kMaxJsonDepth (64, support/json.hpp) levels, refused before the
// tree is built. Time and memory are linear in the header size (a 40k-tensor,
// 2.7 MB header parses in well under a second).
Expected<Header> parse_file_image(std::string_view bytes, const std::string& label);

// The same checks for the header JSON alone, given the data section's size.
Expected<Header> parse_header_json(std::string_view json, uint64_t data_bytes,
                                   const std::string& label);

// A read-only memory map of one validated file; move-only.
class File {
 public:
  static Expected<File> open(const std::string& path);
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }
  const Header& header() const { return header_; }
  // Raw bytes of a tensor (little-endian, possibly unaligned).
  std::string_view raw(const TensorInfo& t) const;

 private:
  File() = default;
  std::string path_;
  Header header_;
  const char* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;
};

// A File is opened through InputFile (support/files.hpp): a FIFO, device or directory
// is refused (kInvalidArgument) without blocking.

// One tensor of a Store: where it lives and its validated description.
struct TensorRef {
  const File* file = nullptr;
  const TensorInfo* info = nullptr;
  std::string_view raw() const { return file->raw(*info); }
};

// All tensors of a checkpoint: one .safetensors file, a directory holding
// model.safetensors, or a directory whose model.safetensors.index.json maps each
// tensor to its shard. Every shard is validated; the index must name only plain
// file names in that directory, every tensor it lists must be in its shard, and no
// tensor may appear twice. The index is a regular file of at most kMaxIndexJsonBytes
// (64 MiB, support/files.hpp) with JSON nesting of at most kMaxJsonDepth.
class Store {
 public:
  static Expected<Store> open(const std::string& path);
  Store(Store&&) noexcept = default;
  Store& operator=(Store&&) noexcept = default;

  const TensorRef* find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted
  const std::vector<std::unique_ptr<File>>& files() const { return files_; }
  // Metadata of the index (sharded) or of the single file.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool sharded() const { return sharded_; }

 private:
  Store() = default;
  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, TensorRef, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
  bool sharded_ = false;
};

// Conversions of a float tensor to the kernels' bf16 (round to nearest even) or to
// fp32 (exact); other dtypes give an error naming the tensor and its dtype.
Expected<std::vector<uint16_t>> to_bf16(const TensorRef& t);
Expected<std::vector<float>> to_f32(const TensorRef& t);
float f16_to_float(uint16_t h);

// A tensor to write: `bytes` must hold dtype x shape bytes, little-endian.
struct WriteTensor {
  std::string name;
  Dtype dtype = Dtype::kBF16;
  std::vector<int64_t> shape;
  std::string_view bytes;
};

// The file image of a valid safetensors file: tensors laid out in name order,
// header padded with spaces to a multiple of 8 bytes (as the official writer does).
Expected<std::string> serialize(const std::vector<WriteTensor>& tensors,
                                const std::map<std::string, std::string>& metadata = {});
Status write_file(const std::string& path, const std::vector<WriteTensor>& tensors,
                  const std::map<std::string, std::string>& metadata = {});
// Writes `shards` files model-0000i-of-0000n.safetensors into `dir` plus
// model.safetensors.index.json (metadata.total_size and weight_map, as Hugging Face
// writes it); tensors are split in name order into shards of similar byte size.
Status write_sharded(const std::string& dir, const std::vector<WriteTensor>& tensors, int shards,
                     const std::map<std::string, std::string>& metadata = {});

}  // namespace ffnjit::st
