// Small string helpers shared by the libraries and the CLI.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ffnjit {

std::vector<std::string> split(std::string_view s, char sep);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
bool starts_with(std::string_view s, std::string_view prefix);
std::string trim(std::string_view s);
// Read a whole regular file; false if it cannot be opened or read, or is not a regular
// file. Readers of untrusted files use read_input_file (support/files.hpp), which says why
// and caps the size.
bool read_file(const std::string& path, std::string* out);
// Shell-style glob with * and ? (no character classes), for name filters.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace ffnjit
