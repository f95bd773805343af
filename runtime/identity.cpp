// Layer ids (docs/identity.md).
#include "runtime/identity.hpp"

namespace ffnjit {
namespace {

const char* kGrammar = "; a layer_id is <64-hex fingerprint>:<layer index> or <fingerprint>:<index>:tp<size>.<rank>";

// A decimal without sign or leading zeros, at most `max`; advances `p`.
bool parse_decimal(const std::string& s, size_t& p, int max, int& out) {
  const size_t start = p;
  long long v = 0;
  while (p < s.size() && s[p] >= '0' && s[p] <= '9' && p - start < 10) v = v * 10 + (s[p++] - '0');
  if (p == start || (s[start] == '0' && p - start > 1) || v > max) return false;
  out = int(v);
  return true;
}

}  // namespace

bool is_fingerprint(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string format_layer_id(const LayerId& id) {
  std::string s = id.fingerprint + ":" + std::to_string(id.index);
  if (id.tp_size > 1) s += ":tp" + std::to_string(id.tp_size) + "." + std::to_string(id.tp_rank);
  return s;
}

Expected<LayerId> parse_layer_id(const std::string& s) {
  if (s.size() > kLayerIdMax)
    return user_error("layer_id is " + std::to_string(s.size()) + " bytes, more than " + std::to_string(kLayerIdMax) +
                      kGrammar);
  LayerId id;
  if (s.size() < 65 || s[64] != ':' || !is_fingerprint(s.substr(0, 64)))
    return user_error("layer_id does not start with a 64-digit lower-case hex fingerprint and ':'" +
                      std::string(kGrammar) + " (ffnjit_checkpoint_fingerprint computes the fingerprint)");
  id.fingerprint = s.substr(0, 64);
  size_t p = 65;
  if (!parse_decimal(s, p, 1 << 20, id.index))
    return user_error("layer_id's layer index is not a decimal number without leading zeros" + std::string(kGrammar));
  if (p == s.size()) return id;
  if (s.compare(p, 3, ":tp") != 0) return user_error("layer_id has trailing text after the layer index" + std::string(kGrammar));
  p += 3;
  if (!parse_decimal(s, p, kMaxTensorParallel, id.tp_size) || id.tp_size < 2 || p >= s.size() || s[p] != '.')
    return user_error("layer_id's tensor-parallel size must be 2.." + std::to_string(kMaxTensorParallel) + kGrammar);
  ++p;
  if (!parse_decimal(s, p, kMaxTensorParallel, id.tp_rank) || id.tp_rank >= id.tp_size || p != s.size())
    return user_error("layer_id's tensor-parallel rank must be 0.." + std::to_string(id.tp_size - 1) + kGrammar);
  return id;
}

}  // namespace ffnjit
