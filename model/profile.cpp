// Sparsity profiles: JSON writer, strict reader, and the builder that accumulates from gate values.
#include "model/profile.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"

namespace ffnjit::profile {

using nlohmann::json;

// ---- Histogram ----

uint64_t Histogram::total() const {
  uint64_t n = 0;
  for (const auto& [v, c] : bins) n += c;
  return n;
}

uint32_t Histogram::quantile(double q) const {
  const uint64_t n = total();
  if (n == 0) return 0;
  // Nearest rank in integer arithmetic (q in units of 1e-4), so that every reader
  // and writer agrees exactly: ceil(q * n) in floating point can be off by one.
  const unsigned __int128 qb = uint64_t(std::llround(std::clamp(q, 0.0, 1.0) * 10000.0));
  uint64_t rank = uint64_t((qb * n + 9999) / 10000);
  rank = std::clamp<uint64_t>(rank, 1, n);
  uint64_t cum = 0;
  for (const auto& [v, c] : bins) {
    cum += c;
    if (cum >= rank) return v;
  }
  return bins.back().first;
}

uint32_t Histogram::max() const {
  return bins.empty() ? 0 : bins.back().first;
}

double Histogram::mean() const {
  const uint64_t n = total();
  if (n == 0) return 0;
  double s = 0;
  for (const auto& [v, c] : bins) s += double(v) * double(c);
  return s / double(n);
}

uint64_t Histogram::count_above(uint32_t x) const {
  uint64_t n = 0;
  for (const auto& [v, c] : bins)
    if (v > x) n += c;
  return n;
}

Summary Summary::of(const Histogram& h) {
  return {h.mean(), h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.quantile(0.999), h.max()};
}

const Tiling* LayerProfile::tiling(int tile_n) const {
  for (const auto& t : tilings)
    if (t.tile_n == tile_n) return &t;
  return nullptr;
}

const LayerProfile* Profile::layer(int index) const {
  for (const auto& l : layers)
    if (l.index == index) return &l;
  return nullptr;
}

// ---- writer ----

namespace {

using ojson = nlohmann::ordered_json;

ojson hist_json(const Histogram& h) {
  ojson bins = ojson::array();
  for (const auto& [v, c] : h.bins) bins.push_back({v, c});
  const Summary s = Summary::of(h);
  ojson o;
  o["histogram"] = bins;
  o["mean"] = s.mean;
  o["p50"] = s.p50, o["p90"] = s.p90, o["p99"] = s.p99, o["p999"] = s.p999, o["max"] = s.max;
  return o;
}

bool flat(const ojson& a) {
  for (const auto& e : a)
    if (e.is_object() || (e.is_array() && !flat(e))) return false;
  return true;
}

// Objects one field per line, arrays of numbers (and of [value, count] pairs) on one
// line: readable, and a layer's d_ff counts do not become d_ff lines.
void pretty(const ojson& j, int indent, std::string& out) {
  const std::string pad(size_t(indent) * 2, ' ');
  if (j.is_object() && !j.empty()) {
    out += "{\n";
    size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i) {
      out += pad + "  " + dump_json(ojson(it.key())) + ": ";
      pretty(it.value(), indent + 1, out);
      out += i + 1 < j.size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (j.is_array() && !j.empty() && !flat(j)) {
    out += "[\n";
    for (size_t i = 0; i < j.size(); ++i) {
      out += pad + "  ";
      pretty(j[i], indent + 1, out);
      out += i + 1 < j.size() ? ",\n" : "\n";
    }
    out += pad + "]";
  } else {
    out += dump_json(j);  // never throws: a caller's non-UTF-8 string becomes U+FFFD
  }
}

}  // namespace

std::string to_json(const Profile& p) {
  ojson layers = ojson::array();
  for (const auto& l : p.layers) {
    ojson tilings = ojson::array();
    for (const auto& t : l.tilings) {
      ojson o;
      o["tile_n"] = t.tile_n;
      o["n_tiles"] = t.n_tiles;
      o["active_per_tile"] = hist_json(t.per_tile);
      o["tile_max"] = t.tile_max;
      o["tile_p50"] = t.tile_p50;
      o["tile_p90"] = t.tile_p90;
      o["tile_p99"] = t.tile_p99;
      o["tile_p999"] = t.tile_p999;
      tilings.push_back(std::move(o));
    }
    ojson o;
    o["index"] = l.index;
    o["d_model"] = l.d_model;
    o["d_ff"] = l.d_ff;
    o["gated"] = l.gated;
    o["tokens"] = l.tokens;
    o["active_per_token"] = hist_json(l.per_token);
    o["tilings"] = std::move(tilings);
    o["neuron_active_count"] = l.neuron_active;
    o["dead_neurons"] = l.dead_neurons;
    o["dead_fraction"] = l.d_ff ? double(l.dead_neurons.size()) / l.d_ff : 0.0;
    layers.push_back(std::move(o));
  }
  ojson out;
  out["format"] = kFormat;
  out["version"] = kVersion;
  out["checkpoint"] = {{"fingerprint", p.fingerprint}, {"model_type", p.model_type}};
  out["source"] = p.source;
  out["layers"] = std::move(layers);
  std::string text;
  pretty(out, 0, text);
  return text + "\n";
}

Status write(const std::string& path, const Profile& p) {
  return write_file_atomically(path, to_json(p));
}

// ---- strict reader ----

namespace {

// Walks a JSON value with a path for messages; every accessor checks the type.
struct Node {
  const json& j;
  std::string path;
  const std::string& label;

  Error err(const std::string& what) const { return user_error(label + ": " + path + ": " + what); }
  Node at(const std::string& key) const {
    return {j.at(key), path.empty() ? key : path + "." + key, label};
  }
  Node at(size_t i) const { return {j.at(i), path + "[" + std::to_string(i) + "]", label}; }

  // Exactly the listed keys, no more, no fewer.
  Status fields(std::initializer_list<const char*> keys) const {
    if (!j.is_object()) return err("must be an object");
    for (const char* k : keys)
      if (!j.contains(k)) return err("missing field '" + std::string(k) + "'");
    for (auto it = j.begin(); it != j.end(); ++it)
      if (std::find_if(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }) ==
          keys.end())
        return err("unknown field '" + text_excerpt(it.key(), 80) +
                   "' (this reader knows version " + std::to_string(kVersion) + ")");
    return {};
  }
  Expected<uint64_t> u64(uint64_t max = UINT64_MAX) const {
    if (!j.is_number_unsigned())
      return err("must be a non-negative integer, got " + json_excerpt(j, 40));
    const uint64_t v = j.get<uint64_t>();
    if (v > max)
      return err(std::to_string(v) + " is out of range (at most " + std::to_string(max) + ")");
    return v;
  }
  Expected<double> number() const {
    if (!j.is_number()) return err("must be a number");
    return j.get<double>();
  }
  Expected<std::string> str() const {
    if (!j.is_string()) return err("must be a string");
    return j.get<std::string>();
  }
  Status array(size_t want_size = SIZE_MAX) const {
    if (!j.is_array()) return err("must be an array");
    if (want_size != SIZE_MAX && j.size() != want_size)
      return err("has " + std::to_string(j.size()) + " entries, expected " +
                 std::to_string(want_size));
    return {};
  }
};

bool close(double a, double b) {
  return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b));
}

// A histogram with its summary: values <= max_value, counts summing to `total`.
Expected<Histogram> read_hist(const Node& n, uint32_t max_value, uint64_t total) {
  FFNJIT_TRY(n.fields({"histogram", "mean", "p50", "p90", "p99", "p999", "max"}));
  const Node bins = n.at("histogram");
  FFNJIT_TRY(bins.array());
  Histogram h;
  uint64_t sum = 0;
  for (size_t i = 0; i < bins.j.size(); ++i) {
    const Node b = bins.at(i);
    FFNJIT_TRY(b.array(2));
    auto v = b.at(0).u64(max_value);
    if (!v) return v.error();
    auto c = b.at(1).u64();
    if (!c) return c.error();
    if (*c == 0) return b.err("a bin with count 0 must be left out");
    if (!h.bins.empty() && *v <= h.bins.back().first)
      return b.err("values must be strictly increasing");
    if (__builtin_add_overflow(sum, *c, &sum)) return b.err("counts overflow 64 bits");
    h.bins.emplace_back(uint32_t(*v), *c);
  }
  if (sum != total)
    return bins.err("counts sum to " + std::to_string(sum) + " but the layer has " +
                    std::to_string(total) + " samples");
  const Summary s = Summary::of(h);
  auto mean = n.at("mean").number();
  if (!mean) return mean.error();
  if (!close(*mean, s.mean))
    return n.at("mean").err("is " + json_excerpt(n.at("mean").j) + " but the histogram gives " +
                            std::to_string(s.mean));
  const std::pair<const char*, uint32_t> q[] = {
      {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"p999", s.p999}, {"max", s.max}};
  for (const auto& [key, want] : q) {
    auto v = n.at(key).u64(UINT32_MAX);
    if (!v) return v.error();
    if (*v != want)
      return n.at(key).err("is " + std::to_string(*v) + " but the histogram gives " +
                           std::to_string(want) + " (nearest-rank quantile)");
  }
  return h;
}

Expected<std::vector<uint32_t>> read_u32s(const Node& n, size_t size, uint32_t max_value) {
  FFNJIT_TRY(n.array(size));
  std::vector<uint32_t> out(size);
  for (size_t i = 0; i < size; ++i) {
    auto v = n.at(i).u64(max_value);
    if (!v) return v.error();
    out[i] = uint32_t(*v);
  }
  return out;
}

Expected<Tiling> read_tiling(const Node& n, const LayerProfile& l) {
  FFNJIT_TRY(n.fields({"tile_n", "n_tiles", "active_per_tile", "tile_max", "tile_p50", "tile_p90",
                       "tile_p99", "tile_p999"}));
  Tiling t;
  auto tile_n = n.at("tile_n").u64(65536);
  if (!tile_n) return tile_n.error();
  if (*tile_n == 0) return n.at("tile_n").err("must be >= 1");
  t.tile_n = int(*tile_n);
  const uint64_t want_tiles = (uint64_t(l.d_ff) + *tile_n - 1) / *tile_n;
  auto n_tiles = n.at("n_tiles").u64();
  if (!n_tiles) return n_tiles.error();
  if (*n_tiles != want_tiles)
    return n.at("n_tiles").err(
        "is " + std::to_string(*n_tiles) + " but d_ff=" + std::to_string(l.d_ff) +
        " and tile_n=" + std::to_string(t.tile_n) + " give " + std::to_string(want_tiles));
  t.n_tiles = int(want_tiles);
  uint64_t pairs;
  if (__builtin_mul_overflow(l.tokens, want_tiles, &pairs))
    return n.at("n_tiles").err("tokens x n_tiles overflows");
  auto h = read_hist(n.at("active_per_tile"), uint32_t(t.tile_n), pairs);
  if (!h) return h.error();
  t.per_tile = std::move(*h);
  std::vector<uint32_t>* cols[] = {&t.tile_p50, &t.tile_p90, &t.tile_p99, &t.tile_p999,
                                   &t.tile_max};
  const char* names[] = {"tile_p50", "tile_p90", "tile_p99", "tile_p999", "tile_max"};
  for (int c = 0; c < 5; ++c) {
    auto v = read_u32s(n.at(names[c]), want_tiles, uint32_t(t.tile_n));
    if (!v) return v.error();
    *cols[c] = std::move(*v);
  }
  uint32_t overall = 0;
  for (size_t i = 0; i < want_tiles; ++i) {
    const uint32_t width = uint32_t(std::min<uint64_t>(*tile_n, uint64_t(l.d_ff) - i * *tile_n));
    for (int c = 0; c < 5; ++c) {
      if ((*cols[c])[i] > width)
        return n.at(names[c]).at(i).err("is " + std::to_string((*cols[c])[i]) + " but tile " +
                                        std::to_string(i) + " holds only " + std::to_string(width) +
                                        " neurons");
      if (c && (*cols[c])[i] < (*cols[c - 1])[i])
        return n.at(names[c]).at(i).err("is below " + std::string(names[c - 1]) + "[" +
                                        std::to_string(i) + "]; quantiles must not decrease");
    }
    overall = std::max(overall, t.tile_max[i]);
  }
  if (overall != t.per_tile.max())
    return n.at("tile_max")
        .err("peaks at " + std::to_string(overall) + " but active_per_tile.max is " +
             std::to_string(t.per_tile.max()));
  return t;
}

Expected<LayerProfile> read_layer(const Node& n) {
  FFNJIT_TRY(n.fields({"index", "d_model", "d_ff", "gated", "tokens", "active_per_token", "tilings",
                       "neuron_active_count", "dead_neurons", "dead_fraction"}));
  LayerProfile l;
  auto index = n.at("index").u64(1 << 20);
  if (!index) return index.error();
  auto d_model = n.at("d_model").u64(1 << 20);
  if (!d_model) return d_model.error();
  auto d_ff = n.at("d_ff").u64(1 << 20);
  if (!d_ff) return d_ff.error();
  if (*d_model == 0) return n.at("d_model").err("must be >= 1");
  if (*d_ff == 0) return n.at("d_ff").err("must be >= 1");
  if (!n.at("gated").j.is_boolean()) return n.at("gated").err("must be true or false");
  auto tokens = n.at("tokens").u64();
  if (!tokens) return tokens.error();
  l.index = int(*index), l.d_model = int(*d_model), l.d_ff = int(*d_ff),
  l.gated = n.at("gated").j.get<bool>();
  l.tokens = *tokens;
  auto h = read_hist(n.at("active_per_token"), uint32_t(l.d_ff), l.tokens);
  if (!h) return h.error();
  l.per_token = std::move(*h);

  const Node tilings = n.at("tilings");
  FFNJIT_TRY(tilings.array());
  for (size_t i = 0; i < tilings.j.size(); ++i) {
    auto t = read_tiling(tilings.at(i), l);
    if (!t) return t.error();
    if (l.tiling(t->tile_n))
      return tilings.at(i).at("tile_n").err("tile_n " + std::to_string(t->tile_n) +
                                            " appears twice");
    l.tilings.push_back(std::move(*t));
  }

  const Node counts = n.at("neuron_active_count");
  FFNJIT_TRY(counts.array(l.d_ff));
  uint64_t active_sum = 0, from_hist = 0;
  for (size_t j = 0; j < size_t(l.d_ff); ++j) {
    auto c = counts.at(j).u64(l.tokens);
    if (!c) return c.error();
    l.neuron_active.push_back(*c);
    if (__builtin_add_overflow(active_sum, *c, &active_sum))
      return counts.err("counts overflow 64 bits");
  }
  for (const auto& [v, c] : l.per_token.bins) {
    uint64_t prod;
    if (__builtin_mul_overflow(uint64_t(v), c, &prod) ||
        __builtin_add_overflow(from_hist, prod, &from_hist))
      return n.at("active_per_token").err("total active count overflows 64 bits");
  }
  if (active_sum != from_hist)
    return counts.err("sums to " + std::to_string(active_sum) +
                      " activations but active_per_token sums to " + std::to_string(from_hist));
  const Node dead = n.at("dead_neurons");
  FFNJIT_TRY(dead.array());
  std::vector<uint32_t> want_dead;
  for (size_t j = 0; j < size_t(l.d_ff); ++j)
    if (l.neuron_active[j] == 0) want_dead.push_back(uint32_t(j));
  auto got_dead = read_u32s(dead, dead.j.size(), uint32_t(l.d_ff - 1));
  if (!got_dead) return got_dead.error();
  if (*got_dead != want_dead)
    return dead.err("must list exactly the neurons whose neuron_active_count is 0 (" +
                    std::to_string(want_dead.size()) + " of them), in increasing order");
  l.dead_neurons = std::move(want_dead);
  auto frac = n.at("dead_fraction").number();
  if (!frac) return frac.error();
  if (!close(*frac, double(l.dead_neurons.size()) / l.d_ff))
    return n.at("dead_fraction")
        .err("is " + json_excerpt(n.at("dead_fraction").j) + " but dead_neurons gives " +
             std::to_string(double(l.dead_neurons.size()) / l.d_ff));
  return l;
}

}  // namespace

Expected<Profile> parse(std::string_view text, const std::string& label) {
  auto parsed = parse_json(text, label + ": not valid JSON");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  const Node root{j, "", label};
  if (!j.is_object())
    return user_error(label + ": a profile is a JSON object; see docs/profile.md");
  // Check format and version first so that a foreign or newer file says so.
  if (!j.contains("format") || !j["format"].is_string() || j["format"] != kFormat)
    return user_error(label + ": format: not an ffnjit profile (\"format\" must be \"" + kFormat +
                      "\"); create one with `ffnjit profile`");
  if (!j.contains("version") || !j["version"].is_number_unsigned())
    return user_error(label + ": version: missing or not a non-negative integer");
  if (j["version"].get<uint64_t>() != uint64_t(kVersion))
    return user_error(label + ": version: " + json_excerpt(j["version"]) +
                      " is not the version this ffnjit reads (" + std::to_string(kVersion) +
                      "); re-create the profile with this ffnjit");
  FFNJIT_TRY(root.fields({"format", "version", "checkpoint", "source", "layers"}));
  Profile p;
  const Node ck = root.at("checkpoint");
  FFNJIT_TRY(ck.fields({"fingerprint", "model_type"}));
  auto fp = ck.at("fingerprint").str();
  if (!fp) return fp.error();
  if (fp->size() != 64 || fp->find_first_not_of("0123456789abcdef") != std::string::npos)
    return ck.at("fingerprint").err("must be 64 lower-case hex digits (a SHA-256)");
  p.fingerprint = *fp;
  auto mt = ck.at("model_type").str();
  if (!mt) return mt.error();
  p.model_type = *mt;
  auto src = root.at("source").str();
  if (!src) return src.error();
  p.source = *src;
  const Node layers = root.at("layers");
  FFNJIT_TRY(layers.array());
  for (size_t i = 0; i < layers.j.size(); ++i) {
    auto l = read_layer(layers.at(i));
    if (!l) return l.error();
    if (!p.layers.empty() && l->index <= p.layers.back().index)
      return layers.at(i).at("index").err("layer indices must be strictly increasing");
    p.layers.push_back(std::move(*l));
  }
  return p;
}

Expected<Profile> read(const std::string& path) {
  auto text = read_input_file(path, "a profile", kMaxProfileJsonBytes);
  if (!text) {
    if (text.error().kind == ErrorKind::kNotFound)
      return not_found(path + ": cannot read the profile: no such file");
    return text.error();
  }
  return parse(*text, path);
}

// ---- builder ----

void ActiveSets::add_token(const uint32_t* active, size_t n) {
  neurons.insert(neurons.end(), active, active + n);
  offsets.push_back(neurons.size());
}

Builder::Acc* Builder::find(int layer) {
  for (auto& a : layers_)
    if (a.meta.index == layer) return &a;
  return nullptr;
}

const ActiveSets* Builder::sample(int layer) const {
  for (const auto& a : layers_)
    if (a.meta.index == layer) return &a.sample;
  return nullptr;
}

Status Builder::add_layer(int index, int d_model, int d_ff, bool gated) {
  if (find(index))
    return user_error("profile builder: layer " + std::to_string(index) + " was already added");
  if (d_model < 1 || d_ff < 1 || d_ff > (1 << 20))
    return user_error("profile builder: layer " + std::to_string(index) +
                      " has d_model=" + std::to_string(d_model) + ", d_ff=" + std::to_string(d_ff) +
                      "; both must be in [1, 2^20]");
  for (int t : opts_.tile_widths)
    if (t < 1 || t > 65536)
      return user_error("profile builder: tile width " + std::to_string(t) +
                        " must be in [1, 65536]");
  Acc a;
  a.meta.index = index, a.meta.d_model = d_model, a.meta.d_ff = d_ff, a.meta.gated = gated;
  a.meta.neuron_active.assign(d_ff, 0);
  a.per_token.assign(size_t(d_ff) + 1, 0);
  a.sample.d_ff = d_ff;
  for (int t : opts_.tile_widths) {
    const int n_tiles = (d_ff + t - 1) / t;
    a.tile_hist.emplace_back(size_t(n_tiles) * (t + 1), 0);
  }
  layers_.push_back(std::move(a));
  std::sort(layers_.begin(), layers_.end(),
            [](const Acc& x, const Acc& y) { return x.meta.index < y.meta.index; });
  return {};
}

void Builder::add_token(Acc& a, const uint32_t* active, size_t n) {
  const int d_ff = a.meta.d_ff;
  a.meta.tokens++;
  a.per_token[n]++;
  for (size_t i = 0; i < n; ++i) a.meta.neuron_active[active[i]]++;
  for (size_t w = 0; w < opts_.tile_widths.size(); ++w) {
    const int t = opts_.tile_widths[w], n_tiles = (d_ff + t - 1) / t;
    a.scratch.assign(n_tiles, 0);
    for (size_t i = 0; i < n; ++i) a.scratch[active[i] / t]++;
    for (int tile = 0; tile < n_tiles; ++tile)
      a.tile_hist[w][size_t(tile) * (t + 1) + a.scratch[tile]]++;
  }
  if (a.sample.tokens() < opts_.keep_sample_tokens) a.sample.add_token(active, n);
}

Status Builder::add_gate(int layer, const float* gate, uint64_t tokens) {
  Acc* a = find(layer);
  if (!a)
    return user_error("profile builder: layer " + std::to_string(layer) +
                      " was not added; call add_layer first");
  std::vector<uint32_t> active;
  const size_t d_ff = size_t(a->meta.d_ff);
  for (uint64_t m = 0; m < tokens; ++m) {
    active.clear();
    const float* g = gate + m * d_ff;
    for (size_t j = 0; j < d_ff; ++j)
      if (!(g[j] <= 0.0f)) active.push_back(uint32_t(j));  // > 0 or NaN: what TwELL packs
    add_token(*a, active.data(), active.size());
  }
  return {};
}

Status Builder::add_active(int layer, const ActiveSets& batch) {
  Acc* a = find(layer);
  if (!a)
    return user_error("profile builder: layer " + std::to_string(layer) +
                      " was not added; call add_layer first");
  if (batch.d_ff != a->meta.d_ff || batch.offsets.empty() ||
      batch.offsets.back() != batch.neurons.size())
    return user_error("profile builder: active sets for layer " + std::to_string(layer) +
                      " do not match d_ff=" + std::to_string(a->meta.d_ff) + " or are malformed");
  for (uint64_t m = 0; m < batch.tokens(); ++m) {
    const uint64_t b = batch.offsets[m], e = batch.offsets[m + 1];
    if (e < b || e > batch.neurons.size())
      return user_error("profile builder: active-set offsets must not decrease");
    for (uint64_t i = b; i < e; ++i)
      if (batch.neurons[i] >= uint32_t(a->meta.d_ff) ||
          (i > b && batch.neurons[i] <= batch.neurons[i - 1]))
        return user_error("profile builder: token " + std::to_string(m) + " of layer " +
                          std::to_string(layer) + " lists neurons out of range or not increasing");
    add_token(*a, batch.neurons.data() + b, e - b);
  }
  return {};
}

namespace {}  // namespace

Histogram from_dense(const uint64_t* counts, size_t n) {
  Histogram h;
  for (size_t v = 0; v < n; ++v)
    if (counts[v]) h.bins.emplace_back(uint32_t(v), counts[v]);
  return h;
}

Tiling tiling_from_dense(int tile_n, int d_ff, const uint64_t* per_tile) {
  Tiling t;
  t.tile_n = tile_n;
  t.n_tiles = (d_ff + tile_n - 1) / tile_n;
  std::vector<uint64_t> all(size_t(tile_n) + 1, 0);
  for (int tile = 0; tile < t.n_tiles; ++tile) {
    const uint64_t* row = per_tile + size_t(tile) * (tile_n + 1);
    for (int v = 0; v <= tile_n; ++v) all[v] += row[v];
    const Histogram h = from_dense(row, size_t(tile_n) + 1);
    t.tile_max.push_back(h.max());
    t.tile_p50.push_back(h.quantile(0.5));
    t.tile_p90.push_back(h.quantile(0.9));
    t.tile_p99.push_back(h.quantile(0.99));
    t.tile_p999.push_back(h.quantile(0.999));
  }
  t.per_tile = from_dense(all.data(), all.size());
  return t;
}

std::vector<uint32_t> dead_neurons(const std::vector<uint64_t>& neuron_active) {
  std::vector<uint32_t> dead;
  for (size_t j = 0; j < neuron_active.size(); ++j)
    if (neuron_active[j] == 0) dead.push_back(uint32_t(j));
  return dead;
}

Profile Builder::finish(std::string fingerprint, std::string model_type, std::string source) const {
  Profile p;
  p.fingerprint = std::move(fingerprint), p.model_type = std::move(model_type),
  p.source = std::move(source);
  for (const Acc& a : layers_) {
    LayerProfile l = a.meta;
    l.per_token = from_dense(a.per_token.data(), a.per_token.size());
    for (size_t w = 0; w < opts_.tile_widths.size(); ++w)
      l.tilings.push_back(tiling_from_dense(opts_.tile_widths[w], l.d_ff, a.tile_hist[w].data()));
    l.dead_neurons = dead_neurons(l.neuron_active);
    p.layers.push_back(std::move(l));
  }
  return p;
}

}  // namespace ffnjit::profile
