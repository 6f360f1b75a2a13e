#include "helm/plugins/plugin_routes.hpp"

#include <map>
#include <mutex>

#include "helm/http/router.hpp"
#include "helm/plugins/plugin_manager.hpp"

namespace helm::plugins {
namespace {

using nlohmann::json;

std::mutex& bindings_mutex() {
  static std::mutex m;
  return m;
}
std::map<const api::Services*, PluginManager*>& bindings() {
  static std::map<const api::Services*, PluginManager*> b;
  return b;
}

PluginManager* bound(const api::Services& services) {
  std::lock_guard lock(bindings_mutex());
  auto it = bindings().find(&services);
  return it == bindings().end() ? nullptr : it->second;
}

// Matches api::Access::kHubOperator: owner or admin of the hub operators' organization.
bool is_hub_operator(const auth::SessionContext& ctx) {
  return ctx.org_is_operator && ctx.at_least(auth::Role::kAdmin);
}

json summary(const PluginRecord& r) {
  return {{"name", r.name},
          {"version", r.version},
          {"kind", r.kind},
          {"abi", r.abi},
          {"state", r.state}};
}

json operator_view(const PluginRecord& r) {
  json out = summary(r);
  out["signer"] = r.signer;
  out["last_error"] = r.last_error;
  out["config"] = r.config;
  return out;
}

}  // namespace

PluginManagerBinding::PluginManagerBinding(api::Services& services, PluginManager& manager)
    : services_(services) {
  std::lock_guard lock(bindings_mutex());
  bindings()[&services] = &manager;
}

PluginManagerBinding::~PluginManagerBinding() {
  std::lock_guard lock(bindings_mutex());
  bindings().erase(&services_);
}

void add_plugin_routes(http::Router& router, api::Services& services) {
  api::add_route(
      router, services, "GET", "/api/v1/plugins", api::Access::kReadonly,
      [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
        json items = json::array();
        if (auto* manager = bound(services)) {
          const bool full = is_hub_operator(ctx);
          for (const auto& record : manager->list())
            items.push_back(full ? operator_view(record) : summary(record));
        }
        respond(api::json_response(200, json{{"items", std::move(items)}}));
      });
  api::add_route(
      router, services, "GET", "/api/v1/plugins/{name}", api::Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto* manager = bound(services);
        const auto param = req.path_params.find("name");
        std::optional<PluginRecord> record;
        if (manager != nullptr && param != req.path_params.end()) {
          record = manager->find(param->second);
        }
        if (!record) {
          return respond(http::problem(404, "not-found", "Not Found", "No plugin of that name."));
        }
        json body = operator_view(*record);
        body["directory"] = record->directory.string();
        body["manifest"] = record->manifest;
        respond(api::json_response(200, body));
      });
}

}  // namespace helm::plugins
