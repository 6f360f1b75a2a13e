/// @brief `helm-agent enroll`: trade an enrollment key for device credentials and save them.
#pragma once

#include "helm/agent/net.hpp"
#include "helm/agent/result.hpp"
#include "helm/agent/state.hpp"
#include "helm/agent/system_info.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>

namespace helm::agent {

struct EnrollRequest {
  std::string server;  // https://host[:port]
  std::string enrollment_key;
  TlsTrust trust;
  std::optional<ProxyConfig> proxy;
  std::string machine_id;
  HostIdentity host;
  std::chrono::seconds timeout{30};
};

/// Why an enrollment failed; `retry_after_s` > 0 for 429.
struct EnrollFailure {
  int http_status = 0;  // 0: never got an HTTP answer
  int retry_after_s = 0;
  std::string message;
};

/// POSTs /api/v1/agent/enroll after the hub has been verified. Does not write anything.
std::variant<AgentState, EnrollFailure> enroll(const EnrollRequest& request);

}  // namespace helm::agent
