/// @brief The helm-hub process: wires configuration, storage, the API listener and routes, runs
/// until SIGTERM/SIGINT, then drains and stops in order.
#pragma once

#include "helm/config/hub_config.hpp"

namespace helm::hub {

/// Runs the hub in the foreground. Returns the process exit code.
int serve(const config::HubConfig& config);

}  // namespace helm::hub
