// Command-line parsing for the ffnjit subcommands: declared flags, one-line errors.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.hpp"

namespace ffnjit::cli {

// A subcommand declares its flags; parse() rejects anything undeclared with a
// message that names the command's --help.
// Strict decimal integer: an optional '-' then 1 to 19 digits, the whole string, no
// overflow ("12", "-3"; not " 12", "+3", "1e3", "0x10", "12junk").
std::optional<int64_t> parse_int64(std::string_view s);

// `--shard I/N`: exactly two strict non-negative integers "I/N" with 0 <= I < N <= 65536
// ("0/2"; not "1/2/3", "0/2junk", "1/2.5"). The error names the option and the form.
struct Shard {
  int index = 0, count = 1;
};
Expected<Shard> parse_shard(const std::string& text);

class Args {
 public:
  Args(std::string command, std::string usage)
      : command_(std::move(command)), usage_(std::move(usage)) {}

  Args& flag(const std::string& name, const std::string& help);  // --name
  Args& option(const std::string& name, const std::string& metavar, const std::string& help,
               std::optional<std::string> default_value = std::nullopt);  // --name VALUE
  Args& positional(const std::string& name, const std::string& help, bool required = true);
  Args& alias(const std::string& short_flag, const std::string& long_name);  // e.g. -o for --output

  Status parse(const std::vector<std::string>& argv);
  std::string help() const;
  bool help_requested() const { return help_; }

  bool has(const std::string& name) const;  // flag given, or option given/defaulted
  std::string get(const std::string& name) const;
  // The option as a decimal integer in [min, max] (strict: an optional '-' and digits,
  // nothing else). The bounds are ints, so a result always fits the int it is stored in
  // (a bound above INT_MAX does not compile); get_int64 is for the few wider options.
  Expected<int> get_int(const std::string& name, int min, int max) const;
  Expected<int64_t> get_int64(const std::string& name, int64_t min, int64_t max) const;
  const std::vector<std::string>& positionals() const { return positional_values_; }

 private:
  struct Spec {
    std::string name, metavar, help;
    bool takes_value = false;
    std::optional<std::string> default_value;
  };
  struct Pos {
    std::string name, help;
    bool required;
  };
  std::string command_, usage_;
  std::vector<Spec> specs_;
  std::vector<Pos> pos_specs_;
  std::map<std::string, std::string> aliases_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_values_;
  bool help_ = false;
};

}  // namespace ffnjit::cli
