#include "helm/plugins/plugin_routes.hpp"

#include <cctype>
#include <map>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <regex>

#include "helm/api/access_routes.hpp"
#include "helm/api/openapi.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/http/router.hpp"
#include "helm/plugins/plugin_manager.hpp"
#include "helm/storage/db_pool.hpp"

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
          {"state", r.state},
          {"enabled", r.enabled},
          {"description", r.description}};
}

json health(const PluginRecord& r) {
  return {{"state", r.state},
          {"healthy", r.state == "running"},
          {"last_error", r.last_error},
          {"loaded_at", r.loaded_at.empty() ? json(nullptr) : json(r.loaded_at)},
          {"calls", r.calls},
          {"calls_failed", r.calls_failed},
          {"violations", r.violations}};
}

json operator_view(const PluginRecord& r) {
  json out = summary(r);
  out["signer"] = r.signer;
  out["last_error"] = r.last_error;
  out["config"] = r.config;
  out["config_version"] = r.config_version;
  return out;
}

std::string etag(std::int64_t version) {
  return "\"" + std::to_string(version) + "\"";
}

/// Parses If-Match: "*" or absent → nullopt; "\"N\"" or N → N; anything else → -1 (never
/// matches, so the write is refused as stale).
std::optional<std::int64_t> if_match(const http::Request& req) {
  auto header = req.header("if-match");
  if (!header || *header == "*") return std::nullopt;
  std::string text(*header);
  if (text.rfind("W/", 0) == 0) text = text.substr(2);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
    text = text.substr(1, text.size() - 2);
  try {
    std::size_t used = 0;
    const std::int64_t value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (...) {
  }
  return -1;
}

std::vector<http::FieldError> field_errors(
    const std::vector<std::pair<std::string, std::string>>& errors, const std::string& prefix) {
  std::vector<http::FieldError> out;
  for (const auto& [path, message] : errors)
    out.push_back({prefix + (path == "/" ? std::string() : path), message});
  return out;
}

/// Maps a manager outcome that failed to its problem.
http::Response outcome_problem(const ManagerOutcome& outcome, const std::string& field_prefix) {
  switch (outcome.status) {
    case HELM_STATUS_NOT_FOUND:
      return http::not_found(outcome.message);
    case HELM_STATUS_INVALID_INPUT:
      if (!outcome.errors.empty()) {
        return http::problem(422, "validation-failed", "Validation Failed", outcome.message,
                             field_errors(outcome.errors, field_prefix));
      }
      return http::problem(422, "plugin-refused", "Plugin Refused", outcome.message);
    case HELM_STATUS_CONFLICT:
      return http::problem(409, "conflict", "Conflict", outcome.message);
    case HELM_STATUS_UNAVAILABLE:
      return http::problem(503, "unavailable", "Service Unavailable", outcome.message);
    default:
      return http::problem(500, "plugin-error", "Plugin Error", outcome.message);
  }
}

/// Maps an operation's result to the REST answer. Vendor failures get their own problem types.
http::Response operation_response(const OperationResult& result) {
  switch (result.status) {
    case HELM_STATUS_OK: {
      http::Response r = http::Response::json(200, result.output);
      return r;
    }
    case HELM_STATUS_INVALID_INPUT:
      return http::problem(422, "validation-failed", "Validation Failed",
                           result.output.empty() ? "The input is invalid." : result.output,
                           field_errors(result.errors, ""));
    case HELM_STATUS_NOT_FOUND:
      return http::problem(404, "not-found", "Not Found", result.output);
    case HELM_STATUS_UNAUTHORIZED:
      return http::problem(401, "unauthorized", "Unauthorized", result.output);
    case HELM_STATUS_FORBIDDEN:
      return http::problem(403, "forbidden", "Forbidden", result.output);
    case HELM_STATUS_CONFLICT:
      return http::problem(409, "conflict", "Conflict", result.output);
    case HELM_STATUS_UPSTREAM_UNAUTHORIZED:
      return http::problem(502, "upstream-unauthorized", "Vendor Refused the Credentials",
                           result.output);
    case HELM_STATUS_UPSTREAM_RATE_LIMITED: {
      // The plugin may say how long to wait: "... (retry after N s)".
      int retry_after = 30;
      static const std::regex kRetry(R"(retry after (\d{1,6}) ?s)", std::regex::icase);
      std::smatch match;
      if (std::regex_search(result.output, match, kRetry)) retry_after = std::stoi(match[1]);
      auto r = http::problem(429, "upstream-rate-limited", "Vendor Rate Limit", result.output);
      r.headers.emplace_back("Retry-After", std::to_string(retry_after));
      return r;
    }
    case HELM_STATUS_UPSTREAM_UNAVAILABLE:
      return http::problem(502, "upstream-unavailable", "Vendor Unavailable", result.output);
    case HELM_STATUS_UPSTREAM_ERROR:
      return http::problem(502, "upstream-error", "Vendor Error", result.output);
    case HELM_STATUS_TIMEOUT:
      return http::problem(504, "timeout", "Timeout", result.output);
    case HELM_STATUS_CANCELLED:
      return http::problem(503, "cancelled", "Cancelled", result.output);
    case HELM_STATUS_UNSUPPORTED:
      return http::problem(501, "unsupported", "Not Implemented", result.output);
    case HELM_STATUS_UNAVAILABLE:
      return http::problem(503, "unavailable", "Service Unavailable", result.output);
    case HELM_STATUS_RESOURCE_EXHAUSTED:
      return http::problem(503, "resource-exhausted", "Resource Exhausted", result.output);
    default:
      return http::problem(500, "plugin-error", "Plugin Error", result.output);
  }
}

std::string name_param(const http::Request& req) {
  auto it = req.path_params.find("name");
  return it == req.path_params.end() ? std::string() : it->second;
}

/// The bound manager and the record of the plugin named in the path; answers 404 and returns
/// nullopt when there is no such plugin.
std::optional<std::pair<PluginManager*, PluginRecord>> plugin_or_404(
    const api::Services& services, const http::Request& req, const http::Responder& respond) {
  PluginManager* manager = bound(services);
  std::optional<PluginRecord> record;
  if (manager != nullptr) record = manager->find(name_param(req));
  if (!record) {
    respond(http::not_found("No plugin of that name."));
    return std::nullopt;
  }
  return std::make_pair(manager, std::move(*record));
}

/// Runs blocking manager work off the I/O thread.
void off_thread(api::Services& services, std::function<void()> work) {
  services.cpu.post(std::move(work));
}

/// The largest request body POST /api/v1/plugins reads: the manager's bundle limit (64 MiB of
/// file content) plus tar headers and padding.
constexpr std::uint64_t kMaxBundleUpload = 64u * 1024 * 1024 + 64u * 1024;

/// The content of the first part of a multipart/form-data body that carries a filename (or,
/// failing that, the first part); nullopt when the body is not well-formed multipart.
std::optional<std::string> first_multipart_file(const std::string& content_type,
                                                const std::string& body) {
  const auto at = content_type.find("boundary=");
  if (at == std::string::npos) return std::nullopt;
  std::string boundary = content_type.substr(at + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"') {
    boundary = boundary.substr(1, boundary.size() - 2);
  }
  if (boundary.empty() || boundary.size() > 200) return std::nullopt;
  const std::string delimiter = "--" + boundary;
  std::optional<std::string> first;
  std::size_t pos = body.find(delimiter);
  while (pos != std::string::npos) {
    pos += delimiter.size();
    if (body.compare(pos, 2, "--") == 0) break;  // the closing delimiter
    const auto head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) return first;
    const std::string head = body.substr(pos, head_end - pos);
    const auto next = body.find("\r\n" + delimiter, head_end + 4);
    if (next == std::string::npos) return first;
    std::string content = body.substr(head_end + 4, next - head_end - 4);
    std::string lower = head;
    for (char& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.find("filename=") != std::string::npos) return content;
    if (!first) first = std::move(content);
    pos = next + 2;
  }
  return first;
}

bool valid_plugin_name(const std::string& name) {
  static const std::regex kName("^[a-z][a-z0-9-]{1,62}$");
  return std::regex_match(name, kName);
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
  using api::Access;
  api::add_summaries({
      {"GET /api/v1/plugins",
       "Installed plugins and their state (hub operators also see signer, config, last error)"},
      {"POST /api/v1/plugins",
       "Install a signed plugin bundle (helm-plugin pack; body application/x-tar); it is "
       "listed disabled"},
      {"DELETE /api/v1/plugins/{name}",
       "Uninstall a plugin: stop it, remove its directory, settings, grants and stored data"},
      {"GET /api/v1/plugins/{name}", "One plugin: manifest, state, signer, config (ETag), health"},
      {"PATCH /api/v1/plugins/{name}",
       "Enable or disable a plugin hub-wide and/or replace its configuration (If-Match)"},
      {"POST /api/v1/plugins/{name}/reload", "Reload a plugin from disk without a hub restart"},
      {"GET /api/v1/plugins/{name}/schema", "The plugin's configuration and operation schemas"},
      {"POST /api/v1/plugins/{name}/config/validate",
       "Dry run: validate a hub-wide configuration without applying it"},
      {"GET /api/v1/plugins/{name}/health", "State, last error, call counters"},
      {"GET /api/v1/orgs/{org}/plugins", "Plugins and whether this organization has them on"},
      {"GET /api/v1/orgs/{org}/plugins/{name}", "This organization's view of one plugin"},
      {"PATCH /api/v1/orgs/{org}/plugins/{name}", "Turn a plugin on or off for this organization"},
      {"GET /api/v1/orgs/{org}/plugins/{name}/config",
       "This organization's settings for the plugin (ETag)"},
      {"PUT /api/v1/orgs/{org}/plugins/{name}/config",
       "Replace this organization's settings for the plugin (If-Match)"},
      {"POST /api/v1/orgs/{org}/plugins/{name}/config/validate",
       "Dry run: validate this organization's settings without saving them"},
      {"GET /api/v1/orgs/{org}/plugins/{name}/grants",
       "Which declared secrets the plugin may use in this organization"},
      {"PUT /api/v1/orgs/{org}/plugins/{name}/grants",
       "Replace the plugin's secret grants in this organization"},
      {"POST /api/v1/orgs/{org}/plugins/{name}/ops/{op}",
       "Invoke a plugin operation inside the caller's session"},
  });

  // ---- hub-wide ----
  api::add_route(
      router, services, "GET", "/api/v1/plugins", Access::kReadonly,
      [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
        json items = json::array();
        if (auto* manager = bound(services)) {
          const bool full = is_hub_operator(ctx);
          for (const auto& record : manager->list())
            items.push_back(full ? operator_view(record) : summary(record));
        }
        respond(
            api::json_response(200, json{{"items", std::move(items)}, {"next_cursor", nullptr}}));
      });

  api::add_route(
      router, services, "POST", "/api/v1/plugins", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto* manager = bound(services);
        if (manager == nullptr) {
          return respond(http::problem(503, "unavailable", "Service Unavailable",
                                       "Plugins are not available in this hub."));
        }
        const std::string content_type(req.header("content-type").value_or(""));
        std::string type = content_type.substr(0, content_type.find(';'));
        while (!type.empty() && type.back() == ' ')
          type.pop_back();
        for (char& c : type)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string bundle;
        if (type == "application/x-tar" || type == "application/octet-stream") {
          bundle = std::move(req.body);
        } else if (type == "multipart/form-data") {
          // A browser or a generic client uploading a file form field.
          auto file = first_multipart_file(content_type, req.body);
          if (!file) {
            return respond(http::problem(422, "invalid-bundle", "Invalid Plugin Bundle",
                                         "The multipart/form-data body holds no file part."));
          }
          bundle = std::move(*file);
        } else {
          return respond(http::problem(
              415, "unsupported-media-type", "Unsupported Media Type",
              "Send the bundle made by `helm-plugin pack` as the body, with Content-Type: "
              "application/x-tar (or as the file of a multipart/form-data upload)."));
        }
        off_thread(services, [manager, body = std::move(bundle), respond] {
          PluginRecord installed;
          auto outcome = manager->install(body, &installed);
          if (!outcome.ok()) {
            if (outcome.status == HELM_STATUS_INVALID_INPUT) {
              return respond(
                  http::problem(422, "invalid-bundle", "Invalid Plugin Bundle", outcome.message));
            }
            return respond(outcome_problem(outcome, ""));
          }
          json view = operator_view(installed);
          view["directory"] = installed.directory.string();
          auto r = api::json_response(201, view);
          r.headers.emplace_back("Location", "/api/v1/plugins/" + installed.name);
          r.headers.emplace_back("ETag", etag(installed.config_version));
          respond(std::move(r));
        });
      });
  router.set_body_limit("POST", "/api/v1/plugins", kMaxBundleUpload,
                        api::session_body_gate(services, Access::kHubOperator));

  api::add_route(
      router, services, "DELETE", "/api/v1/plugins/{name}", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        off_thread(services, [manager, name, respond] {
          auto outcome = manager->uninstall(name);
          if (!outcome.ok()) return respond(outcome_problem(outcome, ""));
          respond(http::Response::empty(204));
        });
      });

  api::add_route(
      router, services, "GET", "/api/v1/plugins/{name}", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        const std::optional<PluginRecord> record = found->second;
        json body = operator_view(*record);
        body["directory"] = record->directory.string();
        body["manifest"] = record->manifest;
        body["health"] = health(*record);
        auto r = api::json_response(200, body);
        r.headers.emplace_back("ETag", etag(record->config_version));
        respond(std::move(r));
      });

  api::add_route(
      router, services, "PATCH", "/api/v1/plugins/{name}", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        if (body->contains("enabled") && !(*body)["enabled"].is_boolean())
          errors.push_back({"/enabled", "must be true or false"});
        if (body->contains("config") && !(*body)["config"].is_object())
          errors.push_back({"/config", "must be a JSON object"});
        for (const auto& [key, value] : body->items()) {
          if (key != "enabled" && key != "config")
            errors.push_back({"/" + key, "unknown member; only enabled and config can be changed"});
        }
        if (!body->contains("enabled") && !body->contains("config"))
          errors.push_back({"/", "give enabled and/or config"});
        if (!errors.empty()) {
          return respond(http::problem(422, "validation-failed", "Validation Failed",
                                       "The change is invalid.", errors));
        }
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        const auto match = if_match(req);
        off_thread(services, [manager, name, body = *body, match, respond] {
          if (body.contains("config")) {
            auto outcome = manager->set_config(name, body["config"], match, false);
            if (!outcome.ok()) {
              if (outcome.status == HELM_STATUS_CONFLICT && match &&
                  outcome.message.find("changed since") != std::string::npos) {
                return respond(
                    http::problem(412, "stale-etag", "Precondition Failed", outcome.message));
              }
              return respond(outcome_problem(outcome, "/config"));
            }
          }
          if (body.contains("enabled")) {
            auto outcome = manager->set_enabled(name, body["enabled"].get<bool>());
            if (!outcome.ok()) return respond(outcome_problem(outcome, ""));
          }
          auto record = manager->find(name);
          if (!record) return respond(http::not_found("No plugin of that name."));
          auto r = api::json_response(200, operator_view(*record));
          r.headers.emplace_back("ETag", etag(record->config_version));
          respond(std::move(r));
        });
      });

  api::add_route(
      router, services, "POST", "/api/v1/plugins/{name}/reload", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        off_thread(services, [manager, name, respond] {
          auto outcome = manager->reload(name);
          if (!outcome.ok()) return respond(outcome_problem(outcome, ""));
          auto record = manager->find(name);
          respond(api::json_response(200, record ? operator_view(*record) : json::object()));
        });
      });

  api::add_route(
      router, services, "GET", "/api/v1/plugins/{name}/schema", Access::kReadonly,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        const PluginRecord& record = found->second;
        const json m = record.manifest.is_object() ? record.manifest : json::object();
        json ops = json::object();
        if (m.contains("operations") && m["operations"].is_object()) {
          for (const auto& [op, spec] : m["operations"].items()) {
            ops[op] = {{"description", spec.value("description", "")},
                       {"input_schema", spec.value("input_schema", json::object())},
                       {"output_schema", spec.value("output_schema", json::object())},
                       {"timeout_ms", spec.value("timeout_ms", json(nullptr))}};
          }
        }
        respond(api::json_response(
            200, {{"name", record.name},
                  {"version", record.version},
                  {"config_schema", m.value("config_schema", json::object())},
                  {"org_config_schema", m.value("org_config_schema", json::object())},
                  {"operations", ops},
                  {"capabilities", m.value("capabilities", json::object())}}));
      });

  api::add_route(
      router, services, "POST", "/api/v1/plugins/{name}/config/validate", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        // Accepts the configuration itself or {"config": {...}}, as PATCH takes it.
        json config = body->contains("config") && body->size() == 1 ? (*body)["config"] : *body;
        const std::string prefix = body->contains("config") && body->size() == 1 ? "/config" : "";
        off_thread(services, [manager, name, config, prefix, respond] {
          auto outcome = manager->set_config(name, config, std::nullopt, true);
          if (!outcome.ok()) return respond(outcome_problem(outcome, prefix));
          respond(api::json_response(200, {{"valid", true}}));
        });
      });

  api::add_route(
      router, services, "GET", "/api/v1/plugins/{name}/health", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        const std::optional<PluginRecord> record = found->second;
        json body = health(*record);
        body["name"] = record->name;
        respond(api::json_response(record->state == "running" ? 200 : 503, body));
      });

  // ---- per organization ----
  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/plugins", Access::kReadonly,
      [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
        auto* manager = bound(services);
        if (manager == nullptr) {
          return respond(
              api::json_response(200, {{"items", json::array()}, {"next_cursor", nullptr}}));
        }
        off_thread(services, [manager, ctx, respond] {
          json items = json::array();
          for (const auto& record : manager->list()) {
            auto settings = manager->org_settings(ctx.org_id, record.name);
            if (!settings) return respond(http::database_unavailable());
            json item = summary(record);
            item["enabled_for_org"] = settings->enabled;
            items.push_back(std::move(item));
          }
          respond(api::json_response(200, {{"items", items}, {"next_cursor", nullptr}}));
        });
      });

  auto org_view = [&services](http::Request& req, const auth::SessionContext& ctx,
                              http::Responder respond) {
    const auto found = plugin_or_404(services, req, respond);
    if (!found) return;
    PluginManager* manager = found->first;
    off_thread(services, [manager, ctx, record = found->second, respond] {
      auto settings = manager->org_settings(ctx.org_id, record.name);
      if (!settings) return respond(http::database_unavailable());
      json body = summary(record);
      body["enabled_for_org"] = settings->enabled;
      body["config"] = settings->config;
      body["config_version"] = settings->version;
      body["grants"] = {{"secrets", settings->granted_secrets}};
      respond(api::json_response(200, body));
    });
  };
  api::add_route(router, services, "GET", "/api/v1/orgs/{org}/plugins/{name}", Access::kAdmin,
                 org_view);

  api::add_route(router, services, "PATCH", "/api/v1/orgs/{org}/plugins/{name}", Access::kAdmin,
                 [&services, org_view](http::Request& req, const auth::SessionContext& ctx,
                                       http::Responder respond) {
                   auto body = api::json_object_body(req, respond);
                   if (!body) return;
                   if (!body->contains("enabled") || !(*body)["enabled"].is_boolean()) {
                     return respond(http::problem(422, "validation-failed", "Validation Failed",
                                                  "Give {\"enabled\": true|false}.",
                                                  {{"/enabled", "required, true or false"}}));
                   }
                   const auto found = plugin_or_404(services, req, respond);
                   if (!found) return;
                   PluginManager* manager = found->first;
                   const std::string name = found->second.name;
                   const bool enabled = (*body)["enabled"].get<bool>();
                   off_thread(services,
                              [manager, ctx, name, enabled, respond, org_view, req]() mutable {
                                auto outcome = manager->set_org_enabled(ctx.org_id, name, enabled);
                                if (!outcome.ok()) return respond(outcome_problem(outcome, ""));
                                org_view(req, ctx, respond);
                              });
                 });

  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/plugins/{name}/config", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        off_thread(services, [manager, ctx, name, respond] {
          auto settings = manager->org_settings(ctx.org_id, name);
          if (!settings) return respond(http::database_unavailable());
          auto r = api::json_response(200, settings->config);
          r.headers.emplace_back("ETag", etag(settings->version));
          respond(std::move(r));
        });
      });

  auto put_org_config = [&services](bool dry_run) {
    return [&services, dry_run](http::Request& req, const auth::SessionContext& ctx,
                                http::Responder respond) {
      auto body = api::json_object_body(req, respond);
      if (!body) return;
      const auto found = plugin_or_404(services, req, respond);
      if (!found) return;
      PluginManager* manager = found->first;
      const std::string name = found->second.name;
      const auto match = if_match(req);
      off_thread(services, [manager, ctx, name, config = *body, match, dry_run, respond] {
        auto outcome = manager->set_org_config(ctx.org_id, name, config, match, dry_run);
        if (!outcome.ok()) {
          if (outcome.status == HELM_STATUS_CONFLICT) {
            return respond(
                http::problem(412, "stale-etag", "Precondition Failed", outcome.message));
          }
          return respond(outcome_problem(outcome, ""));
        }
        if (dry_run) return respond(api::json_response(200, {{"valid", true}}));
        auto settings = manager->org_settings(ctx.org_id, name);
        if (!settings) return respond(http::database_unavailable());
        auto r = api::json_response(200, settings->config);
        r.headers.emplace_back("ETag", etag(settings->version));
        respond(std::move(r));
      });
    };
  };
  api::add_route(router, services, "PUT", "/api/v1/orgs/{org}/plugins/{name}/config",
                 Access::kAdmin, put_org_config(false));
  api::add_route(router, services, "POST", "/api/v1/orgs/{org}/plugins/{name}/config/validate",
                 Access::kAdmin, put_org_config(true));

  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/plugins/{name}/grants", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        off_thread(services, [manager, ctx, name, respond] {
          auto settings = manager->org_settings(ctx.org_id, name);
          if (!settings) return respond(http::database_unavailable());
          respond(api::json_response(200, {{"secrets", settings->granted_secrets}}));
        });
      });

  api::add_route(
      router, services, "PUT", "/api/v1/orgs/{org}/plugins/{name}/grants", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        std::vector<std::string> secrets;
        if (!body->contains("secrets") || !(*body)["secrets"].is_array()) {
          return respond(http::problem(422, "validation-failed", "Validation Failed",
                                       "Give {\"secrets\": [\"name\", ...]}.",
                                       {{"/secrets", "required, an array of secret names"}}));
        }
        std::vector<http::FieldError> errors;
        for (std::size_t i = 0; i < (*body)["secrets"].size(); ++i) {
          const json& item = (*body)["secrets"][i];
          if (!item.is_string()) {
            errors.push_back({"/secrets/" + std::to_string(i), "must be a string"});
          } else {
            secrets.push_back(item.get<std::string>());
          }
        }
        if (!errors.empty()) {
          return respond(http::problem(422, "validation-failed", "Validation Failed",
                                       "Every grant is a secret name.", errors));
        }
        const auto found = plugin_or_404(services, req, respond);
        if (!found) return;
        PluginManager* manager = found->first;
        const std::string name = found->second.name;
        off_thread(services, [manager, ctx, name, secrets, respond] {
          auto outcome = manager->set_grants(ctx.org_id, name, secrets);
          if (!outcome.ok()) return respond(outcome_problem(outcome, ""));
          auto settings = manager->org_settings(ctx.org_id, name);
          if (!settings) return respond(http::database_unavailable());
          respond(api::json_response(200, {{"secrets", settings->granted_secrets}}));
        });
      });

  api::add_route(
      router, services, "POST", "/api/v1/orgs/{org}/plugins/{name}/ops/{op}", Access::kTechnician,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        json input = json::object();
        if (!req.body.empty()) {
          input = json::parse(req.body, nullptr, false);
          if (input.is_discarded()) {
            return respond(http::bad_request("The body is not valid JSON."));
          }
        }
        auto* manager = bound(services);
        const std::string name = name_param(req);
        const std::string op = req.path_params.count("op") ? req.path_params.at("op") : "";
        const auto record =
            manager != nullptr && valid_plugin_name(name) ? manager->find(name) : std::nullopt;
        if (!record) return respond(http::not_found("No plugin of that name."));
        // An operation whose input can name a client reaches every client when it names none:
        // a technician (whose ACL limits the clients it reaches) must name one.
        const bool takes_client = [&] {
          const json& manifest = record->manifest;
          if (!manifest.is_object() || !manifest.contains("operations")) return false;
          const json& ops = manifest["operations"];
          if (!ops.is_object() || !ops.contains(op) || !ops[op].is_object()) return false;
          const json& schema = ops[op].value("input_schema", json::object());
          return schema.is_object() && schema.contains("properties") &&
                 schema["properties"].is_object() && schema["properties"].contains("client_id");
        }();
        auto run = [manager, ctx, name, op, input, respond] {
          manager->invoke(name, ctx, op, input, [respond](OperationResult result) {
            respond(operation_response(result));
          });
        };
        // ACL: an operation that names a client, site or device group runs only when the caller
        // may reach it.
        std::vector<std::pair<identity::Resource::Kind, std::string>> touched;
        if (input.is_object()) {
          if (input.contains("client_id") && input["client_id"].is_string())
            touched.emplace_back(identity::Resource::kClient, input["client_id"]);
          if (input.contains("site_id") && input["site_id"].is_string())
            touched.emplace_back(identity::Resource::kSite, input["site_id"]);
        }
        if (ctx.at_least(auth::Role::kAdmin)) return off_thread(services, run);
        const bool names_client =
            input.is_object() && input.contains("client_id") && input["client_id"].is_string();
        if (takes_client && !names_client) {
          return respond(http::problem(
              403, "forbidden", "Forbidden",
              "Your ACL policy limits the clients you reach: name one in client_id."));
        }
        if (touched.empty()) return off_thread(services, run);
        off_thread(services, [&services, ctx, touched, run, respond] {
          bool allowed = true;
          const auto failed = services.pool.run([&](pqxx::connection_base& c) {
            pqxx::work tx(c);
            const auto reach = api::acl_reach(tx, ctx);
            for (const auto& [kind, id] : touched) {
              if (!api::is_uuid(id) ||
                  (reach && !api::acl_visible(tx, *reach, ctx.org_id, kind, id))) {
                allowed = false;
              }
            }
            tx.commit();
          });
          if (failed) return respond(http::database_unavailable());
          if (!allowed) {
            return respond(http::problem(
                403, "forbidden", "Forbidden",
                "The operation touches a client or site outside your reach (ACL policy)."));
          }
          run();
        });
      });
}

}  // namespace helm::plugins
