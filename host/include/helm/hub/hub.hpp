/// @brief The helm-hub process: wires configuration, storage, the API listener and routes, runs
/// until SIGTERM/SIGINT, then drains and stops in order.
#pragma once

#include "helm/config/hub_config.hpp"

namespace helm::http {
class Router;
}
namespace helm::metrics {
class Registry;
}
namespace helm::storage {
class DbPool;
}

namespace helm::hub {

/// GET /healthz, /readyz and /metrics.
void add_health_routes(http::Router& router, storage::DbPool& pool, metrics::Registry& registry,
                       bool metrics_allow_remote);

/// Runs the hub in the foreground. Returns the process exit code.
int serve(const config::HubConfig& config);

}  // namespace helm::hub
