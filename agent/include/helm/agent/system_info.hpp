/// @brief What the agent reports about its machine: identity for enrollment/hello, and the
/// inventory command's data.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace helm::agent {

inline constexpr const char* kAgentVersion = HELM_AGENT_VERSION;

struct HostIdentity {
  std::string hostname;
  std::string os;          // "linux"
  std::string os_version;  // PRETTY_NAME from /etc/os-release
  std::string arch;        // uname machine
  std::string boot_id;     // /proc/sys/kernel/random/boot_id
};

HostIdentity host_identity();

/// hostname, os, kernel, cpu, memory, disks, network interfaces, agent version, uptime.
nlohmann::json collect_inventory();

}  // namespace helm::agent
