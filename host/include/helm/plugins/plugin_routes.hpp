/// @brief REST routes of the hub-side plugin manager: GET /api/v1/plugins (every session with at
/// least readonly; hub operators also see signer, hub-wide config and last error) and
/// GET /api/v1/plugins/{name} (hub operators: manifest, state, signer, last error).
#pragma once

#include "helm/api/api.hpp"

namespace helm::plugins {

class PluginManager;

/// Registers the plugin routes. They serve from the PluginManager bound to `services` (see
/// PluginManagerBinding); while none is bound the list is empty and every name is unknown.
void add_plugin_routes(http::Router& router, api::Services& services);

/// Binds `manager` to the routes registered with `services` for the binding's lifetime.
class PluginManagerBinding {
 public:
  PluginManagerBinding(api::Services& services, PluginManager& manager);
  ~PluginManagerBinding();
  PluginManagerBinding(const PluginManagerBinding&) = delete;
  PluginManagerBinding& operator=(const PluginManagerBinding&) = delete;

 private:
  api::Services& services_;
};

}  // namespace helm::plugins
