// safetensors files: strict header validation, memory-mapped reading (single and sharded), writing.
#include "model/safetensors.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "support/bf16.hpp"
#include "support/files.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"

namespace ffnjit::st {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct DtypeRow {
  Dtype d;
  const char* code;
  size_t size;
};
constexpr DtypeRow kDtypes[] = {
    {Dtype::kBool, "BOOL", 1},      {Dtype::kU8, "U8", 1},          {Dtype::kI8, "I8", 1},
    {Dtype::kF8E5M2, "F8_E5M2", 1}, {Dtype::kF8E4M3, "F8_E4M3", 1}, {Dtype::kI16, "I16", 2},
    {Dtype::kU16, "U16", 2},        {Dtype::kF16, "F16", 2},        {Dtype::kBF16, "BF16", 2},
    {Dtype::kI32, "I32", 4},        {Dtype::kU32, "U32", 4},        {Dtype::kF32, "F32", 4},
    {Dtype::kF64, "F64", 8},        {Dtype::kI64, "I64", 8},        {Dtype::kU64, "U64", 8},
};

Error bad(const std::string& label, const std::string& msg) {
  return user_error(label + ": not a valid safetensors file: " + msg);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

uint64_t read_u64_le(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

const char* dtype_name(Dtype d) {
  for (const auto& r : kDtypes)
    if (r.d == d) return r.code;
  return "?";
}

size_t dtype_size(Dtype d) {
  for (const auto& r : kDtypes)
    if (r.d == d) return r.size;
  return 0;
}

Expected<Dtype> parse_dtype(std::string_view code) {
  for (const auto& r : kDtypes)
    if (code == r.code) return r.d;
  return user_error("unknown dtype '" + text_excerpt(code, 40) + "'");
}

bool is_float_dtype(Dtype d) {
  return d == Dtype::kBF16 || d == Dtype::kF16 || d == Dtype::kF32;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t s : shape) n *= uint64_t(s);
  return n;
}

const TensorInfo* Header::find(std::string_view name) const {
  // Binary search over the name order: a sharded index looks up every tensor it lists.
  auto it = std::lower_bound(by_name.begin(), by_name.end(), name,
                             [&](size_t i, std::string_view n) { return tensors[i].name < n; });
  return it != by_name.end() && tensors[*it].name == name ? &tensors[*it] : nullptr;
}

Expected<Header> parse_header_json(std::string_view text, uint64_t data_bytes,
                                   const std::string& label) {
  if (text.empty() || text[0] != '{')
    return bad(label, "the header does not start with '{' (it must be a JSON object)");
  auto parsed = parse_json(text, label + ": not a valid safetensors file: header JSON",
                           {.refuse_duplicate_keys = true});
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (!j.is_object()) return bad(label, "the header is not a JSON object");

  Header h;
  h.header_bytes = text.size();
  h.data_bytes = data_bytes;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return bad(label, "__metadata__ must be an object of string values");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return bad(label, "__metadata__ key '" + text_excerpt(m.key(), 80) + "' has a " +
                                m.value().type_name() + " value; metadata values must be strings");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (name.size() > kMaxTensorNameBytes)
      return bad(label, "a tensor name of " + std::to_string(name.size()) + " bytes ('" +
                            text_excerpt(name, 60) + "') is longer than the limit of " +
                            std::to_string(kMaxTensorNameBytes) + " bytes");
    const std::string t = "tensor '" + name + "': ";
    if (!v.is_object())
      return bad(label, t + "its entry must be an object with dtype, shape, data_offsets");
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        return bad(label, t + "unknown field '" + text_excerpt(f.key(), 80) +
                              "' (allowed: dtype, shape, data_offsets)");
    if (!v.contains("dtype") || !v["dtype"].is_string())
      return bad(label, t + "dtype missing or not a string");
    if (!v.contains("shape") || !v["shape"].is_array())
      return bad(label, t + "shape missing or not an array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2)
      return bad(label, t + "data_offsets must be an array [begin, end]");
    TensorInfo info;
    info.name = name;
    auto d = parse_dtype(v["dtype"].get<std::string>());
    if (!d) return bad(label, t + d.error().message);
    info.dtype = *d;
    uint64_t numel = 1;
    const auto shape_text = [&] { return "shape " + json_excerpt(v["shape"]); };
    for (const json& s : v["shape"]) {
      if (!s.is_number_unsigned())
        return bad(label, t + shape_text() + " must hold non-negative integers");
      const uint64_t dim = s.get<uint64_t>();
      if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        return bad(label, t + shape_text() + " overflows 64 bits");
      info.shape.push_back(int64_t(dim));
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, dtype_size(info.dtype), &nbytes))
      return bad(label, t + shape_text() + " overflows 64 bits in bytes");
    for (const json& o : v["data_offsets"])
      if (!o.is_number_unsigned())
        return bad(label, t + "data_offsets must be non-negative integers");
    info.begin = v["data_offsets"][0].get<uint64_t>();
    info.end = v["data_offsets"][1].get<uint64_t>();
    if (info.end < info.begin)
      return bad(label, t + "data_offsets [" + std::to_string(info.begin) + ", " +
                            std::to_string(info.end) + "] end before they begin");
    if (info.end - info.begin != nbytes)
      return bad(label, t + "dtype " + dtype_name(info.dtype) + " x shape " +
                            shape_str(info.shape) + " needs " + std::to_string(nbytes) +
                            " bytes but data_offsets [" + std::to_string(info.begin) + ", " +
                            std::to_string(info.end) + "] hold " +
                            std::to_string(info.end - info.begin));
    if (info.end > data_bytes)
      return bad(label, t + "data_offsets end " + std::to_string(info.end) +
                            " is past the data section (" + std::to_string(data_bytes) +
                            " bytes; the file is truncated)");
    h.tensors.push_back(std::move(info));
  }
  // The data section must be tiled exactly: sorted by offset, each tensor starts
  // where the previous one ends, and the last one ends at the end of the file.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin
                              : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.begin < pos)
      return bad(label, "tensor '" + t.name + "' (bytes [" + std::to_string(t.begin) + ", " +
                            std::to_string(t.end) + ")) overlaps tensor '" + prev->name +
                            "' (ends at " + std::to_string(pos) + ")");
    if (t.begin > pos)
      return bad(label, "tensor '" + t.name + "' starts at byte " + std::to_string(t.begin) +
                            ", leaving a gap of " + std::to_string(t.begin - pos) +
                            " bytes after " +
                            (prev ? "tensor '" + prev->name + "'" : std::string("the header")) +
                            " (tensors must be contiguous)");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_bytes)
    return bad(label, std::to_string(data_bytes - pos) + " trailing bytes after the last tensor" +
                          (prev ? " '" + prev->name + "'" : std::string()) +
                          " (the data section holds " + std::to_string(data_bytes) +
                          " bytes, the tensors " + std::to_string(pos) + ")");
  h.by_name.resize(h.tensors.size());
  std::iota(h.by_name.begin(), h.by_name.end(), size_t(0));
  std::sort(h.by_name.begin(), h.by_name.end(),
            [&](size_t a, size_t b) { return h.tensors[a].name < h.tensors[b].name; });
  return h;
}

Expected<Header> parse_file_image(std::string_view bytes, const std::string& label) {
  if (bytes.size() < 8)
    return bad(label, "the file has " + std::to_string(bytes.size()) +
                          " bytes, fewer than the 8-byte header length");
  const uint64_t n = read_u64_le(bytes.data());
  if (n > kMaxHeaderBytes)
    return bad(label, "header length " + std::to_string(n) + " exceeds the format's cap of " +
                          std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > bytes.size() - 8)
    return bad(label, "header length " + std::to_string(n) + " runs past the end of the file (" +
                          std::to_string(bytes.size()) + " bytes)");
  return parse_header_json(bytes.substr(8, n), bytes.size() - 8 - n, label);
}

// ---- File ----

Expected<File> File::open(const std::string& path) {
  // Memory-mapped, so no size cap beyond the header's; a FIFO or device is refused.
  auto in = InputFile::open(path, "a safetensors file", kNoSizeCap);
  if (!in) return in.error();
  File f;
  f.path_ = path;
  f.map_size_ = size_t(in->size());
  if (f.map_size_ > 0) {
    void* p = ::mmap(nullptr, f.map_size_, PROT_READ, MAP_PRIVATE, in->fd(), 0);
    if (p == MAP_FAILED) return io_error(path + ": cannot memory-map: " + std::strerror(errno));
    f.map_ = static_cast<const char*>(p);
  }
  // Closing the descriptor (when `in` goes) leaves the mapping and the file alive.
  auto h = parse_file_image(std::string_view(f.map_ ? f.map_ : "", f.map_size_), path);
  if (!h) return h.error();
  f.header_ = std::move(*h);
  f.data_start_ = 8 + f.header_.header_bytes;
  return f;
}

File::File(File&& o) noexcept {
  *this = std::move(o);
}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<char*>(map_), map_size_);
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    data_start_ = o.data_start_;
  }
  return *this;
}

File::~File() {
  if (map_) ::munmap(const_cast<char*>(map_), map_size_);
}

std::string_view File::raw(const TensorInfo& t) const {
  if (t.begin == t.end) return {};
  return std::string_view(map_ + data_start_ + t.begin, t.nbytes());
}

// ---- Store ----

Expected<Store> Store::open(const std::string& path) {
  Store s;
  std::error_code ec;
  std::string single = path;
  if (fs::is_directory(path, ec)) {
    const std::string index = (fs::path(path) / "model.safetensors.index.json").string();
    if (fs::exists(index, ec)) {
      auto text = read_input_file(index, "model.safetensors.index.json", kMaxIndexJsonBytes);
      if (!text) return text.error();
      auto parsed =
          parse_json(*text, index + ": not a valid index", {.refuse_duplicate_keys = true});
      if (!parsed) return parsed.error();
      const json& j = *parsed;
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        return user_error(
            index +
            ": not a valid index: it needs a \"weight_map\" object of tensor -> shard file");
      if (j.contains("metadata")) {
        if (!j["metadata"].is_object())
          return user_error(index + ": not a valid index: \"metadata\" must be an object");
        for (auto m = j["metadata"].begin(); m != j["metadata"].end(); ++m)
          s.metadata_[m.key()] =
              m.value().is_string() ? m.value().get<std::string>() : dump_json(m.value());
      }
      std::map<std::string, File*> shards;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        const std::string name = text_excerpt(it.key(), 200);  // for messages
        if (!it.value().is_string())
          return user_error(index + ": not a valid index: weight_map entry '" + name +
                            "' is not a file name");
        const std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
          return user_error(index + ": weight_map entry '" + name + "' names '" +
                            text_excerpt(shard, 200) +
                            "'; shards must be plain file names in the checkpoint directory");
        File*& f = shards[shard];
        if (!f) {
          auto opened = File::open((fs::path(path) / shard).string());
          if (!opened)
            return Error{opened.error().kind,
                         opened.error().message + " (shard named by " + index + ")"};
          s.files_.push_back(std::make_unique<File>(std::move(*opened)));
          f = s.files_.back().get();
        }
        const TensorInfo* info = f->header().find(it.key());
        if (!info)
          return user_error(index + ": maps tensor '" + name + "' to " + shard +
                            ", which does not hold it; the index and the shards disagree "
                            "(re-export the checkpoint)");
        s.tensors_[it.key()] = TensorRef{f, info};
      }
      // A tensor held by two shards is ambiguous even if the index picks one.
      std::map<std::string, std::string> owner;
      for (const auto& f : s.files_)
        for (const auto& t : f->header().tensors)
          if (auto [it, fresh] = owner.emplace(t.name, f->path()); !fresh)
            return user_error(index + ": tensor '" + t.name + "' is held by both " + it->second +
                              " and " + f->path());
      s.sharded_ = true;
      return s;
    }
    single = (fs::path(path) / "model.safetensors").string();
    if (!fs::exists(single, ec))
      return not_found(path + ": holds neither model.safetensors nor model.safetensors.index.json");
  }
  auto f = File::open(single);
  if (!f) return f.error();
  s.files_.push_back(std::make_unique<File>(std::move(*f)));
  s.metadata_ = s.files_[0]->header().metadata;
  for (const auto& t : s.files_[0]->header().tensors)
    s.tensors_[t.name] = TensorRef{s.files_[0].get(), &t};
  return s;
}

const TensorRef* Store::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> Store::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : tensors_) out.push_back(n);
  return out;
}

// ---- conversions ----

float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);  // inf or NaN (payload kept)
  } else if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      u = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace {
template <class F>
Status convert(const TensorRef& t, const char* to, F&& put) {
  const std::string_view raw = t.raw();
  const uint64_t n = t.info->numel();
  switch (t.info->dtype) {
    case Dtype::kBF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, raw.data() + 2 * i, 2);
        put(i, bf16_to_float(v), v, true);
      }
      return {};
    case Dtype::kF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, raw.data() + 2 * i, 2);
        put(i, f16_to_float(v), 0, false);
      }
      return {};
    case Dtype::kF32:
      for (uint64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, raw.data() + 4 * i, 4);
        put(i, v, 0, false);
      }
      return {};
    default:
      return unsupported(t.file->path() + ": tensor '" + t.info->name + "' has dtype " +
                         dtype_name(t.info->dtype) +
                         "; ffnjit converts only BF16, F16 and F32 to " + to);
  }
}
}  // namespace

Expected<std::vector<uint16_t>> to_bf16(const TensorRef& t) {
  std::vector<uint16_t> out(t.info->numel());
  FFNJIT_TRY(convert(t, "bf16", [&](uint64_t i, float f, uint16_t raw, bool is_bf16) {
    out[i] =
        is_bf16 ? raw : float_to_bf16(f);  // bf16 passes through bit-exactly (NaN payloads too)
  }));
  return out;
}

Expected<std::vector<float>> to_f32(const TensorRef& t) {
  std::vector<float> out(t.info->numel());
  FFNJIT_TRY(convert(t, "fp32", [&](uint64_t i, float f, uint16_t, bool) { out[i] = f; }));
  return out;
}

// ---- writing ----

Expected<std::string> serialize(const std::vector<WriteTensor>& tensors,
                                const std::map<std::string, std::string>& metadata) {
  std::vector<const WriteTensor*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const WriteTensor& t = *order[i];
    if (t.name.empty() || t.name == "__metadata__")
      return user_error("cannot write a tensor named '" + t.name + "'; pick another name");
    if (t.name.size() > kMaxTensorNameBytes)
      return user_error("cannot write tensor '" + text_excerpt(t.name, 60) + "': its name has " +
                        std::to_string(t.name.size()) + " bytes, more than readers accept (" +
                        std::to_string(kMaxTensorNameBytes) + ")");
    if (i && order[i - 1]->name == t.name)
      return user_error("tensor '" + t.name + "' is listed twice");
    uint64_t numel = 1;
    for (int64_t s : t.shape) {
      if (s < 0)
        return user_error("tensor '" + t.name + "' has a negative dimension in " +
                          shape_str(t.shape));
      numel *= uint64_t(s);
    }
    if (numel * dtype_size(t.dtype) != t.bytes.size())
      return user_error("tensor '" + t.name + "': " + dtype_name(t.dtype) + " x " +
                        shape_str(t.shape) + " needs " +
                        std::to_string(numel * dtype_size(t.dtype)) + " bytes, got " +
                        std::to_string(t.bytes.size()));
    h[t.name] = {{"dtype", dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {pos, pos + t.bytes.size()}}};
    pos += t.bytes.size();
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const json::exception&) {  // type_error 316: a name or value that is not UTF-8
    return user_error(
        "cannot write a tensor name or metadata string that is not valid UTF-8 (the format's "
        "header is UTF-8 JSON)");
  }
  header.append((8 - header.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  out.reserve(out.size() + pos);
  for (const auto* t : order) out.append(t->bytes.data(), t->bytes.size());
  return out;
}

Status write_file(const std::string& path, const std::vector<WriteTensor>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  auto img = serialize(tensors, metadata);
  if (!img) return img.error();
  return write_file_atomically(path, *img);
}

Status write_sharded(const std::string& dir, const std::vector<WriteTensor>& tensors, int shards,
                     const std::map<std::string, std::string>& metadata) {
  if (shards < 1 || size_t(shards) > std::max<size_t>(1, tensors.size()))
    return user_error("cannot split " + std::to_string(tensors.size()) + " tensors into " +
                      std::to_string(shards) + " shards; use between 1 and the number of tensors");
  std::vector<const WriteTensor*> order;
  uint64_t total = 0;
  for (const auto& t : tensors) order.push_back(&t), total += t.bytes.size();
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  json weight_map = json::object();
  size_t next = 0;
  uint64_t done = 0;
  for (int s = 0; s < shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
    std::vector<WriteTensor> part;
    const uint64_t target = total * uint64_t(s + 1) / uint64_t(shards);
    // Take tensors until this shard reaches its share, leaving one per later shard.
    while (next < order.size() && (part.empty() || done < target) &&
           order.size() - next > size_t(shards - s - 1)) {
      part.push_back(*order[next]);
      done += order[next]->bytes.size();
      weight_map[order[next]->name] = name;
      ++next;
    }
    if (s == shards - 1)
      while (next < order.size())
        part.push_back(*order[next]), weight_map[order[next]->name] = name, ++next;
    FFNJIT_TRY(write_file((fs::path(dir) / name).string(), part, metadata));
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return write_file_atomically((fs::path(dir) / "model.safetensors.index.json").string(),
                               dump_json(index, 2) + "\n");
}

}  // namespace ffnjit::st
