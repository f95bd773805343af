// Reading SQLite's database header and its WAL's newest page 1 without SQLite, so that
// whose file it is can be decided before anything could modify it (docs/cache.md).
#include "cache/sqlite_header.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

namespace ffnjit::cache {
namespace {

constexpr size_t kHeaderBytes = 100;
constexpr size_t kWalHeader = 32, kFrameHeader = 24;

uint32_t be32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
uint32_t le32(const unsigned char* p) {
  return uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | uint32_t(p[0]);
}

// SQLite's WAL checksum (wal.c walChecksumBytes): 32-bit words in the byte order the
// WAL's magic number names, folded in pairs; `n` is a multiple of 8.
void wal_checksum(bool big_endian, const unsigned char* p, size_t n, uint32_t* s) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint32_t a = big_endian ? be32(p + i) : le32(p + i);
    const uint32_t b = big_endian ? be32(p + i + 4) : le32(p + i + 4);
    s[0] += a + s[1];
    s[1] += b + s[0];
  }
}

// Reads `n` bytes at `off` into `out`; false when the source is shorter.
using ReadAt = std::function<bool(uint64_t off, size_t n, unsigned char* out)>;

std::optional<std::string> wal_page1_from(const ReadAt& read, uint64_t size) {
  unsigned char h[kWalHeader];
  if (size < kWalHeader || !read(0, kWalHeader, h)) return std::nullopt;
  const uint32_t magic = be32(h);
  if ((magic & 0xfffffffe) != 0x377f0682 || be32(h + 4) != 3007000) return std::nullopt;
  const bool big = magic & 1;
  const uint32_t page = be32(h + 8);
  if (page < 512 || page > 65536 || (page & (page - 1))) return std::nullopt;
  uint32_t sum[2] = {0, 0};
  wal_checksum(big, h, 24, sum);
  if (sum[0] != be32(h + 24) || sum[1] != be32(h + 28)) return std::nullopt;

  std::string frame(kFrameHeader + page, '\0');
  auto* f = reinterpret_cast<unsigned char*>(frame.data());
  std::optional<std::string> committed, pending;
  for (uint64_t off = kWalHeader; off + kFrameHeader + page <= size; off += kFrameHeader + page) {
    if (!read(off, frame.size(), f)) break;
    if (std::memcmp(f + 8, h + 16, 8) != 0) break;  // salts of an older log generation
    const uint32_t pgno = be32(f), commit = be32(f + 4);
    if (pgno == 0) break;
    wal_checksum(big, f, 8, sum);
    wal_checksum(big, f + kFrameHeader, page, sum);
    if (sum[0] != be32(f + 16) || sum[1] != be32(f + 20)) break;
    if (pgno == 1) pending = frame.substr(kFrameHeader, kHeaderBytes);
    if (commit != 0 && pending) committed = pending;  // a commit frame ends a transaction
    if (commit != 0) pending.reset();
  }
  return committed;
}

bool exists_with_data(const std::string& path, bool* exists = nullptr) {
  struct stat st;
  bool ok = ::lstat(path.c_str(), &st) == 0;
  if (exists) *exists = ok;
  return ok && st.st_size > 0;
}

}  // namespace

std::optional<SqliteHeader> parse_sqlite_header(std::string_view b) {
  static const char kMagic[16] = "SQLite format 3";  // with its NUL: 16 bytes
  if (b.size() < kHeaderBytes || std::memcmp(b.data(), kMagic, 16) != 0) return std::nullopt;
  auto u = reinterpret_cast<const unsigned char*>(b.data());
  SqliteHeader h;
  h.application_id = be32(u + 68);
  h.user_version = be32(u + 60);
  h.wal_mode = u[18] == 2 && u[19] == 2;
  return h;
}

std::optional<std::string> wal_page1(std::string_view wal) {
  return wal_page1_from(
      [&](uint64_t off, size_t n, unsigned char* out) {
        if (off > wal.size() || n > wal.size() - off) return false;
        std::memcpy(out, wal.data() + off, n);
        return true;
      },
      wal.size());
}

Expected<FileState> read_file_state(const std::string& path, int64_t max_wal_bytes) {
  FileState s;
  // O_NOFOLLOW|O_NONBLOCK: the caller checked it is a regular file; a swap for a FIFO
  // or a symlink in between must not block or redirect the read.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return io_error("cannot read " + path + ": " + std::strerror(errno) +
                    "; check its permissions, or pass --cache PATH or set FFNJIT_CACHE");
  struct stat st;
  char buf[kHeaderBytes] = {0};
  ssize_t n = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? ::pread(fd, buf, sizeof buf, 0) : -1;
  ::close(fd);
  if (n < 0) return io_error("cannot read " + path + ": not a regular file or unreadable");
  s.size = st.st_size;
  s.header = parse_sqlite_header(std::string_view(buf, size_t(n)));
  s.has_wal = exists_with_data(path + "-wal");
  s.has_journal = exists_with_data(path + "-journal");
  exists_with_data(path + "-shm", &s.has_shm);

  // In WAL mode the newest page 1 may still be in the -wal (not yet checkpointed):
  // that one says whose file it is and which schema it has.
  if (s.has_wal) {
    int wfd = ::open((path + "-wal").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat wst;
    if (wfd >= 0 && ::fstat(wfd, &wst) == 0 && S_ISREG(wst.st_mode) &&
        wst.st_size <= max_wal_bytes) {
      auto page1 = wal_page1_from(
          [wfd](uint64_t off, size_t len, unsigned char* out) {
            return ::pread(wfd, out, len, off_t(off)) == ssize_t(len);
          },
          uint64_t(wst.st_size));
      if (page1)
        if (auto h = parse_sqlite_header(*page1)) s.header = h, s.header_from_wal = true;
    }
    if (wfd >= 0) ::close(wfd);
  }
  return s;
}

}  // namespace ffnjit::cache
