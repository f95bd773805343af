// JSON from untrusted files: bounded nesting before any tree is built, optional refusal of
// duplicate keys, and bounded text for error messages.
//
// nlohmann's parser is iterative, but dump(), copies and comparisons recurse once per
// nesting level: ~57k levels (a 114 KB file) overflow the stack. Every JSON ffnjit reads
// goes through parse_json, which refuses nesting deeper than kMaxJsonDepth while
// scanning, before the tree exists. Messages quote JSON through json_excerpt and text
// through text_excerpt, never a whole attacker-sized value.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "support/status.hpp"

namespace ffnjit {

// Deepest nesting of arrays and objects accepted (the root object is level 1). The
// files ffnjit reads need 3 (safetensors headers) to 6 (profiles, configs of
// multimodal models).
inline constexpr int kMaxJsonDepth = 64;

struct JsonLimits {
  int max_depth = kMaxJsonDepth;
  // A key twice in one object: nlohmann keeps the last silently; files whose meaning
  // would be ambiguous (safetensors headers, indexes) refuse it.
  bool refuse_duplicate_keys = false;
};

// Parses `text` (UTF-8 JSON, one value). Errors (kInvalidArgument) start with `what`
// (e.g. "config.json: not valid JSON"): the parser's message, "nesting deeper than 64
// levels", or "key 'k' appears twice". Never throws.
Expected<nlohmann::json> parse_json(std::string_view text, const std::string& what,
                                    const JsonLimits& limits = {});

// At most about `max_chars` characters of `j` as JSON, "..." marking the cut; safe on
// any tree (deep levels are elided) and on strings that are not UTF-8.
std::string json_excerpt(const nlohmann::json& j, size_t max_chars = 60);

// `s` if it has at most `max_chars` bytes, else its start (cut at a UTF-8 character
// boundary) and "... (N bytes)".
std::string text_excerpt(std::string_view s, size_t max_chars = 120);

// j.dump(indent) that never throws: bytes that are not UTF-8 (a file name from the
// command line, say) become U+FFFD instead of a type_error.
std::string dump_json(const nlohmann::json& j, int indent = -1);
std::string dump_json(const nlohmann::ordered_json& j, int indent = -1);

}  // namespace ffnjit
