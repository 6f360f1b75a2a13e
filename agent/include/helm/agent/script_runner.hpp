/// @brief Runs one script in its own process group with a timeout and capped output.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>

namespace helm::agent {

struct ScriptRun {
  std::string interpreter;  // absolute path, already checked against the policy
  std::string script;
  std::chrono::milliseconds timeout{30000};
  std::size_t output_cap_bytes = 64 * 1024;
  std::filesystem::path work_dir = "/tmp";  // where the script file is written
};

struct ScriptOutcome {
  enum class Status { kOk, kError, kTimeout };
  Status status = Status::kError;
  int exit_code = -1;  // -1 when killed by a signal or never started
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string error;  // why it could not run, for kError without an exit code
};

/// Blocks until the script and every process still holding its output pipes end, or the timeout
/// passes, in which case the whole process group gets SIGKILL.
ScriptOutcome run_script(const ScriptRun& run);

}  // namespace helm::agent
