// Command-line parsing for the ffnjit subcommands: declared flags, one-line errors.
#include "cli/args.hpp"

#include <cstdint>
#include <sstream>

namespace ffnjit::cli {

Args& Args::flag(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, false, std::nullopt});
  return *this;
}

Args& Args::option(const std::string& name, const std::string& metavar, const std::string& help,
                   std::optional<std::string> default_value) {
  specs_.push_back({name, metavar, help, true, std::move(default_value)});
  return *this;
}

Args& Args::positional(const std::string& name, const std::string& help, bool required) {
  pos_specs_.push_back({name, help, required});
  return *this;
}

Args& Args::alias(const std::string& short_flag, const std::string& long_name) {
  aliases_[short_flag] = "--" + long_name;
  return *this;
}

Status Args::parse(const std::vector<std::string>& argv) {
  const std::string see = "; run `ffnjit " + command_ + " --help`";
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    if (auto al = aliases_.find(a); al != aliases_.end()) a = al->second;
    if (a == "--help" || a == "-h") {
      help_ = true;
      return {};
    }
    if (a.size() > 2 && a.substr(0, 2) == "--") {
      std::string name = a.substr(2), value;
      bool inline_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      const Spec* spec = nullptr;
      for (const auto& s : specs_)
        if (s.name == name) spec = &s;
      if (!spec) return user_error("unknown option --" + name + see);
      if (spec->takes_value) {
        if (!inline_value) {
          if (i + 1 >= argv.size())
            return user_error("--" + name + " needs a value (" + spec->metavar + ")" + see);
          value = argv[++i];
        }
        values_[name] = value;
      } else {
        if (inline_value) return user_error("--" + name + " takes no value" + see);
        values_[name] = "1";
      }
    } else {
      if (positional_values_.size() >= pos_specs_.size())
        return user_error("unexpected argument '" + a + "'" + see);
      positional_values_.push_back(a);
    }
  }
  for (size_t i = positional_values_.size(); i < pos_specs_.size(); ++i)
    if (pos_specs_[i].required) return user_error("missing <" + pos_specs_[i].name + ">" + see);
  return {};
}

bool Args::has(const std::string& name) const {
  if (values_.count(name)) return true;
  for (const auto& s : specs_)
    if (s.name == name && s.default_value) return true;
  return false;
}

std::string Args::get(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  for (const auto& s : specs_)
    if (s.name == name && s.default_value) return *s.default_value;
  for (size_t i = 0; i < pos_specs_.size() && i < positional_values_.size(); ++i)
    if (pos_specs_[i].name == name) return positional_values_[i];
  return "";
}

std::optional<int64_t> parse_int64(std::string_view s) {
  const bool neg = !s.empty() && s[0] == '-';
  const std::string_view digits = s.substr(neg ? 1 : 0);
  if (digits.empty() || digits.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint64_t(c - '0');  // 19 digits cannot overflow 64 bits
  }
  if (v > uint64_t(INT64_MAX) + (neg ? 1 : 0)) return std::nullopt;
  return neg ? int64_t(0 - v) : int64_t(v);
}

Expected<Shard> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  auto i = parse_int64(std::string_view(text).substr(0, slash));
  auto n = slash == std::string::npos ? std::nullopt
                                      : parse_int64(std::string_view(text).substr(slash + 1));
  if (!i || !n || *i < 0 || *n < 1 || *n > 65536 || *i >= *n)
    return user_error("--shard " + text +
                      " is not I/N with integers 0 <= I < N <= 65536, e.g. --shard 0/2");
  return Shard{int(*i), int(*n)};
}

Expected<int64_t> Args::get_int64(const std::string& name, int64_t min, int64_t max) const {
  const std::string v = get(name);
  const auto x = parse_int64(v);
  const std::string_view digits = std::string_view(v).substr(!v.empty() && v[0] == '-');
  const bool is_integer =
      !digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos;
  if (!x && !is_integer) return user_error("--" + name + " must be an integer, got '" + v + "'");
  if (!x || *x < min || *x > max)  // !x: an integer beyond 64 bits
    return user_error("--" + name + "=" + v + " is out of range; use a value in [" +
                      std::to_string(min) + ", " + std::to_string(max) + "]");
  return *x;
}

Expected<int> Args::get_int(const std::string& name, int min, int max) const {
  auto x = get_int64(name, min, max);
  if (!x) return x.error();
  return int(*x);  // in [min, max], so it fits
}

std::string Args::help() const {
  std::ostringstream o;
  o << "usage: ffnjit " << command_;
  for (const auto& p : pos_specs_)
    o << (p.required ? " <" : " [<") << p.name << (p.required ? ">" : ">]");
  if (!specs_.empty()) o << " [options]";
  o << "\n\n" << usage_ << "\n";
  if (!pos_specs_.empty()) o << "\narguments:\n";
  for (const auto& p : pos_specs_) o << "  <" << p.name << ">\n      " << p.help << "\n";
  if (!specs_.empty()) o << "\noptions:\n";
  for (const auto& s : specs_) {
    o << "  ";
    for (const auto& [short_flag, long_flag] : aliases_)
      if (long_flag == "--" + s.name) o << short_flag << ", ";
    o << "--" << s.name;
    if (s.takes_value) o << " " << s.metavar;
    o << "\n      " << s.help;
    if (s.default_value) o << " (default: " << *s.default_value << ")";
    o << "\n";
  }
  return o.str();
}

}  // namespace ffnjit::cli
