/// @brief `helm-agent run`: keep one connection to the hub, answer its commands, reconnect.
#pragma once

#include <filesystem>
#include <string>

namespace helm::agent {

struct RunOptions {
  std::filesystem::path state_dir;
  std::filesystem::path policy_file;  // empty: <state_dir>/policy.json if it exists
  std::string proxy;                  // --proxy; empty: environment
  /// Stop after this many connection attempts (0: never). For tests.
  int max_connection_attempts = 0;
};

/// Exit codes of run_agent.
inline constexpr int kExitStopped = 0;     // SIGTERM/SIGINT or max attempts reached
inline constexpr int kExitConfig = 2;      // missing or unreadable state, bad policy
inline constexpr int kExitRevoked = 3;     // the hub closed with 4001 or refused the token (401)
inline constexpr int kExitSuperseded = 4;  // 4009: another agent connected with this token

int run_agent(const RunOptions& options);

}  // namespace helm::agent
