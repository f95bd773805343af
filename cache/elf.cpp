// CUDA ELF structure checks: header, arch in e_flags, header tables in bounds, symbol.
#include "cache/elf.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace ffnjit::cache {
namespace {

constexpr uint16_t kEmCuda = 190;
constexpr uint16_t kEtExec = 2;
constexpr uint32_t kShtSymtab = 2, kShtStrtab = 3, kShtNobits = 8;
constexpr uint8_t kSttFunc = 2;
constexpr size_t kEhdrSize = 64, kPhdrSize = 56, kShdrSize = 64, kSymSize = 24;

// Little-endian reads at `off`; the caller has checked the bounds.
uint64_t le(std::string_view b, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | uint8_t(b[off + size_t(i)]);
  return v;
}

// [off, off + len) lies inside an image of `size` bytes (no overflow).
bool inside(uint64_t off, uint64_t len, size_t size) {
  return off <= size && len <= size - off;
}

Status bad(const std::string& why) {
  return io_error("the cubin is not a well-formed CUDA ELF image: " + why);
}

struct Section {
  uint32_t type = 0, link = 0;
  uint64_t offset = 0, size = 0, entsize = 0;
};

}  // namespace

int arch_sm(std::string_view arch) {
  if (arch.size() < 4 || arch.substr(0, 3) != "sm_") return -1;
  size_t i = 3;
  int sm = 0;
  while (i < arch.size() && arch[i] >= '0' && arch[i] <= '9' && sm < 10000)
    sm = sm * 10 + (arch[i++] - '0');
  if (i == 3) return -1;
  if (i < arch.size() && arch[i] >= 'a' && arch[i] <= 'z') ++i;  // sm_90a, sm_100f
  return i == arch.size() ? sm : -1;
}

Status check_cubin(std::string_view b, std::string_view arch, std::string_view symbol) {
  const size_t size = b.size();
  if (size < kEhdrSize) return bad(std::to_string(size) + " bytes, shorter than an ELF header");
  if (std::memcmp(b.data(),
                  "\x7f"
                  "ELF",
                  4) != 0)
    return bad("no ELF magic");
  if (b[4] != 2)
    return bad("not a 64-bit ELF (EI_CLASS " + std::to_string(int(uint8_t(b[4]))) + ")");
  if (b[5] != 1)
    return bad("not little-endian (EI_DATA " + std::to_string(int(uint8_t(b[5]))) + ")");
  if (b[6] != 1 || le(b, 20, 4) != 1) return bad("unknown ELF version");
  if (uint16_t m = uint16_t(le(b, 18, 2)); m != kEmCuda)
    return bad("e_machine is " + std::to_string(m) + ", not EM_CUDA (190)");
  if (uint16_t t = uint16_t(le(b, 16, 2)); t != kEtExec)
    return bad("e_type is " + std::to_string(t) + ", not an executable (2) the driver can load");
  if (le(b, 52, 2) != kEhdrSize) return bad("e_ehsize is not 64");

  // The SM number: bits 0-7 of e_flags up to ELF ABI version 7 (CUDA 12), bits 8-15
  // from version 8 (CUDA 13). The 'a' of sm_90a is not recorded there.
  const int want = arch_sm(arch);
  if (want < 0) return bad("the record's arch '" + std::string(arch) + "' is not sm_NN");
  const uint32_t flags = uint32_t(le(b, 48, 4));
  const int abi = uint8_t(b[8]);
  const int have = int(abi >= 8 ? (flags >> 8) & 0xff : flags & 0xff);
  if (have != want) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", flags);
    return bad("it is built for sm_" + std::to_string(have) + " (e_flags " + hex +
               "), the record says " + std::string(arch));
  }

  const uint64_t phoff = le(b, 32, 8), shoff = le(b, 40, 8);
  const uint64_t phentsize = le(b, 54, 2), phnum = le(b, 56, 2);
  const uint64_t shentsize = le(b, 58, 2), shnum = le(b, 60, 2), shstrndx = le(b, 62, 2);
  if (phnum) {
    if (phentsize != kPhdrSize) return bad("e_phentsize is not 56");
    if (!inside(phoff, phnum * kPhdrSize, size))
      return bad("program headers lie outside the image");
    for (uint64_t i = 0; i < phnum; ++i) {
      const size_t p = size_t(phoff + i * kPhdrSize);
      if (!inside(le(b, p + 8, 8), le(b, p + 32, 8), size))
        return bad("segment " + std::to_string(i) + " lies outside the image");
    }
  }
  if (shnum == 0) return bad("no section headers");
  if (shentsize != kShdrSize) return bad("e_shentsize is not 64");
  if (!inside(shoff, shnum * kShdrSize, size)) return bad("section headers lie outside the image");
  if (shstrndx >= shnum) return bad("e_shstrndx is out of range");

  std::vector<Section> sec(static_cast<size_t>(shnum));
  for (uint64_t i = 0; i < shnum; ++i) {
    const size_t p = size_t(shoff + i * kShdrSize);
    Section& s = sec[size_t(i)];
    s.type = uint32_t(le(b, p + 4, 4));
    s.offset = le(b, p + 24, 8);
    s.size = le(b, p + 32, 8);
    s.link = uint32_t(le(b, p + 40, 4));
    s.entsize = le(b, p + 56, 8);
    if (s.type != kShtNobits && s.type != 0 && !inside(s.offset, s.size, size))
      return bad("section " + std::to_string(i) + " lies outside the image");
  }
  if (sec[size_t(shstrndx)].type != kShtStrtab) return bad("e_shstrndx is not a string table");

  bool any_symtab = false;
  for (const Section& s : sec) {
    if (s.type != kShtSymtab) continue;
    any_symtab = true;
    if (s.entsize != kSymSize || s.size % kSymSize) return bad("malformed symbol table");
    if (s.link >= shnum || sec[s.link].type != kShtStrtab)
      return bad("symbol table without strings");
    const Section& str = sec[s.link];
    const std::string_view names = b.substr(size_t(str.offset), size_t(str.size));
    for (uint64_t off = s.offset; off < s.offset + s.size; off += kSymSize) {
      const size_t p = size_t(off);
      const uint64_t name = le(b, p, 4);
      const uint8_t info = uint8_t(b[p + 4]);
      const uint64_t shndx = le(b, p + 6, 2);
      if ((info & 0xf) != kSttFunc || shndx == 0 || name >= names.size()) continue;
      const size_t end = names.find('\0', size_t(name));
      if (end == std::string_view::npos) continue;
      if (names.substr(size_t(name), end - size_t(name)) == symbol) {
        if (shndx < 0xff00 && shndx >= shnum)
          return bad("its function " + std::string(symbol) + " lies in no section");
        return {};
      }
    }
  }
  if (!any_symtab) return bad("no symbol table");
  return bad("it defines no function " + std::string(symbol));
}

}  // namespace ffnjit::cache
