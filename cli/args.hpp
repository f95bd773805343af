// Command-line parsing for the ffnjit subcommands: declared flags, one-line errors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/status.hpp"

namespace ffnjit::cli {

// A subcommand declares its flags; parse() rejects anything undeclared with a
// message that names the command's --help.
class Args {
 public:
  Args(std::string command, std::string usage) : command_(std::move(command)), usage_(std::move(usage)) {}

  Args& flag(const std::string& name, const std::string& help);              // --name
  Args& option(const std::string& name, const std::string& metavar, const std::string& help,
               std::optional<std::string> default_value = std::nullopt);     // --name VALUE
  Args& positional(const std::string& name, const std::string& help, bool required = true);
  Args& alias(const std::string& short_flag, const std::string& long_name);  // e.g. -o for --output

  Status parse(const std::vector<std::string>& argv);
  std::string help() const;
  bool help_requested() const { return help_; }

  bool has(const std::string& name) const;  // flag given, or option given/defaulted
  std::string get(const std::string& name) const;
  Expected<long long> get_int(const std::string& name, long long min, long long max) const;
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
