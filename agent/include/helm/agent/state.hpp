/// @brief The agent's state directory: its state file (credentials from enrollment), written
/// atomically with mode 0600, and the machine id fallback.
#pragma once

#include "helm/agent/result.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace helm::agent {

inline constexpr std::string_view kDefaultStateDir = "/var/lib/helm-agent";

/// What enrollment leaves behind. Exactly one of ca_pin / ca_file may be set; neither means the
/// system trust store.
struct AgentState {
  std::string server;
  std::string device_id;
  std::string device_token;
  std::string transport_url;
  int heartbeat_s = 30;
  std::string ca_pin;   // lower-case hex SHA-256 of the hub certificate's DER
  std::string ca_file;  // absolute path of a CA bundle
  /// Set when the hub closed with 4001 (token revoked or device deleted): `run` refuses to
  /// connect until the agent is enrolled again.
  std::string revoked_reason;
};

std::filesystem::path state_file_path(const std::filesystem::path& state_dir);

/// Writes `contents` to `path` atomically: temp file in the same directory with `mode`, fsync,
/// rename over `path`, fsync the directory.
Status write_file_atomic(const std::filesystem::path& path, std::string_view contents,
                         unsigned mode = 0600);

Status save_state(const std::filesystem::path& state_dir, const AgentState& state);

/// Refuses a state file that group or others may read (it holds the device token).
Expected<AgentState> load_state(const std::filesystem::path& state_dir);

/// /etc/machine-id, or an id generated once and kept in the state directory.
Expected<std::string> machine_id(const std::filesystem::path& state_dir,
                                 const std::filesystem::path& system_file = "/etc/machine-id");

/// Creates the directory with mode 0700 if it does not exist.
Status ensure_state_dir(const std::filesystem::path& state_dir);

}  // namespace helm::agent
