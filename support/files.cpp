// Files ffnjit reads and writes: regular files only, size caps, atomic writes.
#include "support/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

namespace ffnjit {
namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

std::string cap_str(uint64_t n) {
  if (n >= (1ull << 20) && n % (1ull << 20) == 0) return std::to_string(n >> 20) + " MiB";
  return std::to_string(n) + " bytes";
}

// The process umask without changing it (umask(2) can only be read by setting it,
// which races with other threads creating files): Linux reports it in
// /proc/self/status since 4.7; 022 otherwise.
mode_t current_umask() {
  mode_t mask = 022;
  if (FILE* f = std::fopen("/proc/self/status", "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "Umask:", 6) == 0) {
        mask = mode_t(std::strtoul(line + 6, nullptr, 8)) & 0777;
        break;
      }
    std::fclose(f);
  }
  return mask;
}

}  // namespace

Expected<InputFile> InputFile::open(const std::string& path, std::string_view what,
                                    uint64_t max_bytes, bool follow_symlinks) {
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (follow_symlinks ? 0 : O_NOFOLLOW);
  int fd;
  do fd = ::open(path.c_str(), flags);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return not_found(path + ": no such file");
    if (e == ELOOP && !follow_symlinks)
      return user_error(path + ": is a symbolic link; " + std::string(what) +
                        " must be a regular file");
    return io_error(path + ": cannot open: " + std::strerror(e));
  }
  InputFile f;
  f.fd_ = fd;
  f.path_ = path;
  f.what_ = std::string(what);
  f.max_bytes_ = max_bytes;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return user_error(path + ": is " + kind_of(st.st_mode) + ", not a regular file; " +
                      std::string(what) + " must be a regular file");
  f.size_ = uint64_t(st.st_size);
  if (f.size_ > max_bytes)
    return user_error(path + ": " + std::string(what) + " is " + std::to_string(f.size_) +
                      " bytes, more than ffnjit reads (" + cap_str(max_bytes) +
                      "); is it the right file?");
  // Regular files ignore O_NONBLOCK today; clearing it keeps reads blocking should the
  // descriptor be handed to code that expects so.
  if (const int fl = ::fcntl(fd, F_GETFL); fl >= 0) (void)::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return f;
}

InputFile::InputFile(InputFile&& o) noexcept {
  *this = std::move(o);
}

InputFile& InputFile::operator=(InputFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    size_ = o.size_;
    max_bytes_ = o.max_bytes_;
    path_ = std::move(o.path_);
    what_ = std::move(o.what_);
  }
  return *this;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<std::string> InputFile::read_all() {
  std::string out;
  // Read at most one byte past the cap: a file that grew since fstat is refused
  // instead of read without bound.
  const uint64_t limit = max_bytes_ == kNoSizeCap ? kNoSizeCap : max_bytes_ + 1;
  out.reserve(size_t(std::min<uint64_t>(size_, limit)));
  char buf[1 << 16];
  while (out.size() < limit) {
    const size_t want = size_t(std::min<uint64_t>(sizeof buf, limit - out.size()));
    const ssize_t n = ::read(fd_, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path_ + ": read failed: " + std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  if (out.size() > max_bytes_)
    return user_error(path_ + ": " + what_ + " grew past " + cap_str(max_bytes_) +
                      " while being read; is it the right file?");
  return out;
}

Expected<std::string> read_input_file(const std::string& path, std::string_view what,
                                      uint64_t max_bytes, bool follow_symlinks) {
  auto f = InputFile::open(path, what, max_bytes, follow_symlinks);
  if (!f) return f.error();
  return f->read_all();
}

Status write_file_atomically(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.filename().empty())
    return user_error(path + ": names a directory; give a file name to write");
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmpl = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0)
    return io_error(path + ": cannot create a temporary file in " + dir.string() + ": " +
                    std::strerror(errno) + " (does the directory exist and is it writable?)");
  auto fail = [&](const std::string& msg) {
    ::close(fd);
    ::unlink(tmpl.c_str());
    return io_error(msg);
  };
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(path + ": write failed: " + std::strerror(errno) + " (disk full?)");
    done += size_t(n);
  }
  if (::fchmod(fd, 0666 & ~current_umask()) != 0 || ::fsync(fd) != 0)
    return fail(path + ": cannot finish writing " + tmpl + ": " + std::strerror(errno));
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmpl.c_str());
    return io_error(path + ": write failed: " + std::strerror(e));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmpl.c_str());
    return io_error(path + ": cannot replace it with " + tmpl + ": " + std::strerror(e));
  }
  return {};
}

}  // namespace ffnjit
