/// @brief Runs one hub command (ping, inventory, run_script) and builds its result frame.
#pragma once

#include "helm/agent/frames.hpp"
#include "helm/agent/policy.hpp"

#include <filesystem>
#include <optional>

namespace helm::agent {

struct CommandContext {
  /// run_script is refused without a policy.
  std::optional<ScriptPolicy> policy;
  std::filesystem::path work_dir = "/tmp";
};

/// Blocking (run_script may take up to the policy's timeout): call it off the I/O thread.
nlohmann::json execute_command(const CmdFrame& cmd, const CommandContext& context);

}  // namespace helm::agent
