// The ffnjit subcommands: each takes its arguments (after the command name) and
// returns the process exit code (0 ok, 1 failure, 2 usage error).
#pragma once

#include <string>
#include <vector>

namespace ffnjit::cli {

using Argv = std::vector<std::string>;

int cmd_inspect(const Argv& args);
int cmd_doctor(const Argv& args);
int cmd_bench(const Argv& args);
int cmd_cache(const Argv& args);
int cmd_profile(const Argv& args);
int cmd_demo_checkpoint(const Argv& args);
int cmd_tune(const Argv& args);

// Shared reporting: one line "ffnjit <cmd>: error: <message>" on stderr.
int report_error(const std::string& command, const std::string& message, int exit_code = 1);

}  // namespace ffnjit::cli
