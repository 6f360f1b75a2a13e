#include "helm/api/openapi.hpp"

#include <map>

#include "helm/api/access_routes.hpp"
#include "helm/api/identity_routes.hpp"
#include "helm/http/router.hpp"
#include "helm/hub/build_info.hpp"
#include "helm/plugins/plugin_routes.hpp"
#include "helm/secrets/secret_routes.hpp"

namespace helm::api {
namespace {

using nlohmann::json;

// One line per route: what it does. A new route without a line here (or one registered with
// add_summaries by the feature that owns the route) fails the OpenAPI test.
std::map<std::string, std::string>& summaries() {
  static std::map<std::string, std::string> table = {
      {"GET /healthz", "200 while the process serves"},
      {"GET /readyz", "200 when storage is ready, else 503"},
      {"GET /metrics", "Prometheus metrics (loopback only unless configured)"},
      {"GET /api/v1/openapi.json", "This document"},
      {"POST /api/v1/auth/login", "Log in with email, password and (if enrolled) a TOTP code"},
      {"POST /api/v1/auth/logout", "End this session now"},
      {"GET /api/v1/me", "Who the caller is"},
      {"GET /api/v1/me/sessions", "My live sessions"},
      {"DELETE /api/v1/me/sessions/{session}", "Revoke one of my sessions"},
      {"GET /api/v1/orgs", "List organizations (hub operators)"},
      {"POST /api/v1/orgs", "Create an organization with its first owner (hub operators)"},
      {"GET /api/v1/orgs/{org}", "The organization and its settings"},
      {"PATCH /api/v1/orgs/{org}", "Change the organization's name or settings (owner)"},
      {"GET /api/v1/orgs/{org}/clients", "List clients"},
      {"POST /api/v1/orgs/{org}/clients", "Create a client"},
      {"GET /api/v1/orgs/{org}/clients/{client}", "One client"},
      {"PATCH /api/v1/orgs/{org}/clients/{client}", "Rename a client"},
      {"DELETE /api/v1/orgs/{org}/clients/{client}", "Delete a client with its sites"},
      {"GET /api/v1/orgs/{org}/clients/{client}/sites", "List a client's sites"},
      {"POST /api/v1/orgs/{org}/clients/{client}/sites", "Create a site"},
      {"GET /api/v1/orgs/{org}/clients/{client}/sites/{site}", "One site"},
      {"PATCH /api/v1/orgs/{org}/clients/{client}/sites/{site}", "Rename a site"},
      {"DELETE /api/v1/orgs/{org}/clients/{client}/sites/{site}", "Delete a site"},
      {"GET /api/v1/orgs/{org}/device-groups", "List device groups"},
      {"POST /api/v1/orgs/{org}/device-groups", "Create a device group (optionally pinned)"},
      {"GET /api/v1/orgs/{org}/device-groups/{group}", "One device group"},
      {"PATCH /api/v1/orgs/{org}/device-groups/{group}", "Rename a device group"},
      {"DELETE /api/v1/orgs/{org}/device-groups/{group}", "Delete a device group"},
      {"GET /api/v1/orgs/{org}/technicians", "List technicians"},
      {"POST /api/v1/orgs/{org}/technicians", "Create a technician"},
      {"GET /api/v1/orgs/{org}/technicians/{technician}", "One technician"},
      {"PATCH /api/v1/orgs/{org}/technicians/{technician}", "Change role or display name"},
      {"DELETE /api/v1/orgs/{org}/technicians/{technician}", "Delete a technician"},
      {"POST /api/v1/orgs/{org}/technicians/{technician}/disable",
       "Disable an account: every session and token of it stops at once"},
      {"POST /api/v1/orgs/{org}/technicians/{technician}/enable", "Enable an account again"},
      {"GET /api/v1/orgs/{org}/technicians/{technician}/sessions", "A technician's live sessions"},
      {"DELETE /api/v1/orgs/{org}/technicians/{technician}/sessions",
       "Revoke every session of a technician"},
      {"GET /api/v1/orgs/{org}/service-principals", "List service principals (API tokens)"},
      {"POST /api/v1/orgs/{org}/service-principals",
       "Create a service principal; its token is shown once"},
      {"DELETE /api/v1/orgs/{org}/service-principals/{principal}",
       "Delete a service principal and its token"},
      {"POST /api/v1/me/totp", "Start TOTP enrollment: a new secret and its otpauth URI"},
      {"POST /api/v1/me/totp/confirm", "Finish TOTP enrollment with a current code"},
      {"GET /api/v1/orgs/{org}/acl-policy", "The organization's ACL policy (with ETag)"},
      {"PUT /api/v1/orgs/{org}/acl-policy",
       "Replace the ACL policy; its tests must pass (If-Match for safe updates)"},
      {"PUT /api/v1/orgs/{org}/secrets/{name...}",
       "Store a new version of a secret {\"value\"}; the value is never returned"},
      {"GET /api/v1/orgs/{org}/secrets", "List secrets: names, versions, timestamps (no values)"},
      {"DELETE /api/v1/orgs/{org}/secrets/{name...}", "Delete every version of a secret"},
  };
  return table;
}

std::string key(const std::string& method, const std::string& pattern) {
  return method + " " + pattern;
}

std::string openapi_path(const std::string& pattern) {
  std::string out = pattern;
  for (size_t pos; (pos = out.find("...}")) != std::string::npos;)
    out.erase(pos, 3);
  return out;
}

Access access_of(const std::string& method, const std::string& pattern) {
  for (const auto& [m, p, a] : registered_access()) {
    if (m == method && p == pattern) return a;
  }
  return Access::kPublic;
}

std::string_view access_slug(Access a) {
  switch (a) {
    case Access::kPublic:
      return "public";
    case Access::kAnySession:
      return "session";
    case Access::kReadonly:
      return "readonly";
    case Access::kTechnician:
      return "technician";
    case Access::kAdmin:
      return "admin";
    case Access::kOwner:
      return "owner";
    case Access::kHubOperator:
      return "hub-operator";
  }
  return "";
}

std::string_view access_text(Access a) {
  switch (a) {
    case Access::kPublic:
      return "anyone";
    case Access::kAnySession:
      return "any session";
    case Access::kReadonly:
      return "readonly or higher";
    case Access::kTechnician:
      return "technician or higher";
    case Access::kAdmin:
      return "admin or owner";
    case Access::kOwner:
      return "owner";
    case Access::kHubOperator:
      return "hub operator (owner or admin of the operators' organization)";
  }
  return "";
}

}  // namespace

json build_openapi(const http::Router& router) {
  json paths = json::object();
  for (const auto& route : router.routes()) {
    std::string method = route.method;
    for (auto& c : method)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto it = summaries().find(key(route.method, route.pattern));
    const Access access = access_of(route.method, route.pattern);
    json op = {
        {"summary", it == summaries().end() ? "" : it->second},
        {"description", "Who may call it: " + std::string(access_text(access)) + "."},
        {"x-helm-access", access_slug(access)},
        {"responses",
         {{"default", {{"description", "A result, or an application/problem+json error"}}}}}};
    json params = json::array();
    size_t pos = 0;
    const std::string path = openapi_path(route.pattern);
    while ((pos = path.find('{', pos)) != std::string::npos) {
      const auto end = path.find('}', pos);
      params.push_back({{"name", path.substr(pos + 1, end - pos - 1)},
                        {"in", "path"},
                        {"required", true},
                        {"schema", {{"type", "string"}}}});
      pos = end;
    }
    if (!params.empty()) op["parameters"] = params;
    if (access == Access::kPublic) op["security"] = json::array();
    if (method == "post" || method == "put" || method == "patch") {
      op["requestBody"] = {{"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
    }
    paths[path][method] = op;
  }
  return {
      {"openapi", "3.1.0"},
      {"info",
       {{"title", "Helm Hub REST API"},
        {"version", hub::kVersion},
        {"description",
         "Errors are application/problem+json. Authenticate with "
         "'Authorization: Bearer <token>' from POST /api/v1/auth/login or a "
         "service principal."}}},
      {"components", {{"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
      {"security", json::array({{{"bearer", json::array()}}})},
      {"paths", paths}};
}

std::vector<std::string> undocumented_routes(const http::Router& router) {
  std::vector<std::string> out;
  for (const auto& r : router.routes()) {
    if (!summaries().count(key(r.method, r.pattern))) out.push_back(key(r.method, r.pattern));
  }
  return out;
}

std::vector<std::string> documented_but_not_served(const http::Router& router) {
  std::vector<std::string> out;
  const auto routes = router.routes();
  for (const auto& [k, summary] : summaries()) {
    const bool served = std::any_of(routes.begin(), routes.end(), [&](const http::RouteInfo& r) {
      return key(r.method, r.pattern) == k;
    });
    if (!served) out.push_back(k);
  }
  return out;
}

void add_summaries(const std::vector<std::pair<std::string, std::string>>& lines) {
  for (const auto& [route, summary] : lines)
    summaries()[route] = summary;
}

void add_api_routes(http::Router& router, Services& services) {
  add_identity_routes(router, services);
  add_tenancy_routes(router, services);
  add_access_routes(router, services);
  secrets::add_secret_routes(router, services);
  plugins::add_plugin_routes(router, services);
  add_route(router, services, "GET", "/api/v1/openapi.json", Access::kPublic,
            [&router](http::Request&, const auth::SessionContext&, http::Responder respond) {
              respond(json_response(200, build_openapi(router)));
            });
}

}  // namespace helm::api
