// JSON from untrusted files: bounded nesting, duplicate keys, bounded message text.
#include "support/json.hpp"

#include <exception>
#include <vector>

namespace ffnjit {
namespace {

using nlohmann::json;

// Builds the tree from nlohmann's SAX events, like its own DOM parser, but checks the
// nesting depth at every opening bracket and duplicate keys at every key, so that a
// deep or ambiguous document stops the parse before it is built. One pass; a
// duplicate key costs one map lookup (a parser callback, the other way to see keys,
// makes nlohmann rescan the parent object after every member: quadratic).
class LimitedBuilder {
 public:
  LimitedBuilder(json& root, const JsonLimits& limits) : root_(root), limits_(limits) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return value(json(v)); }
  bool string(json::string_t& v) { return value(json(std::move(v))); }
  bool binary(json::binary_t& v) { return value(json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    if (limits_.refuse_duplicate_keys && open_.back()->contains(k)) {
      error_ = "key '" + text_excerpt(k, 80) + "' appears twice";
      return false;
    }
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    // The message quotes the token read so far, which can be a whole long string.
    error_ = text_excerpt(ex.what(), 300);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  // Places `v` where the parse is (the root, the next array element, or the member
  // named by the last key) and returns where it landed.
  json* place(json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    if (int(open_.size()) >= limits_.max_depth) {
      error_ = "nesting deeper than " + std::to_string(limits_.max_depth) +
               " levels of arrays and objects; ffnjit refuses deeper JSON";
      return false;
    }
    // Pointers into open containers stay valid: a parent gets no new member while
    // its child is open, and object members never move.
    open_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  json& root_;
  JsonLimits limits_;
  std::vector<json*> open_;
  std::string key_, error_;
};

// The largest cut <= n that does not split a UTF-8 character (s.size() > n).
size_t utf8_cut(std::string_view s, size_t n) {
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

void excerpt_into(const json& j, std::string& out, size_t max, int depth) {
  if (out.size() > max) return;
  if (j.is_object() || j.is_array()) {
    const bool obj = j.is_object();
    out += obj ? '{' : '[';
    if (depth >= 8 && !j.empty()) {
      out += "...";
    } else {
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (out.size() > max) return;
        if (!first) out += ',';
        first = false;
        if (obj) out += dump_json(json(text_excerpt(it.key(), max))) + ':';
        excerpt_into(*it, out, max, depth + 1);
      }
    }
    out += obj ? '}' : ']';
  } else if (j.is_string()) {
    out += dump_json(json(text_excerpt(j.get_ref<const std::string&>(), max)));
  } else if (j.is_binary()) {
    out += "<binary>";
  } else {
    out += j.dump();  // a number, boolean or null: short
  }
}

template <class J>
std::string dump_impl(const J& j, int indent) {
  try {
    return j.dump(indent, ' ', false, nlohmann::detail::error_handler_t::replace);
  } catch (const std::exception& e) {  // only bad_alloc remains possible
    return std::string("<unprintable JSON: ") + e.what() + ">";
  }
}

}  // namespace

Expected<json> parse_json(std::string_view text, const std::string& what,
                          const JsonLimits& limits) {
  json root;
  LimitedBuilder b(root, limits);
  try {
    if (!json::sax_parse(text.begin(), text.end(), &b) || !b.error().empty())
      return user_error(what + ": " + (b.error().empty() ? "parse failed" : b.error()));
  } catch (const std::exception& e) {  // bad_alloc; the parser reports through parse_error
    return user_error(what + ": " + text_excerpt(e.what(), 300));
  }
  return root;
}

std::string json_excerpt(const json& j, size_t max_chars) {
  std::string out;
  excerpt_into(j, out, max_chars, 0);
  if (out.size() > max_chars) out = out.substr(0, utf8_cut(out, max_chars)) + "...";
  return out;
}

std::string text_excerpt(std::string_view s, size_t max_chars) {
  if (s.size() <= max_chars) return std::string(s);
  return std::string(s.substr(0, utf8_cut(s, max_chars))) + "... (" + std::to_string(s.size()) +
         " bytes)";
}

std::string dump_json(const json& j, int indent) {
  return dump_impl(j, indent);
}

std::string dump_json(const nlohmann::ordered_json& j, int indent) {
  return dump_impl(j, indent);
}

}  // namespace ffnjit
