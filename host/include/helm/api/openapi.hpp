/// @brief The OpenAPI 3.1 document of the hub, generated from the routes actually registered, with
/// a summary per route kept here; and the registration of every REST route in one place.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "helm/api/api.hpp"

namespace helm::http {
class Router;
}

namespace helm::api {

/// Registers every /api/v1 route (identity, tenancy, …) and GET /api/v1/openapi.json.
void add_api_routes(http::Router& router, Services& services);

/// Adds summaries ("METHOD pattern" -> one line) for routes a feature registers in its own files.
/// Call before serving (not thread-safe against concurrent document builds).
void add_summaries(const std::vector<std::pair<std::string, std::string>>& lines);

/// Builds the document from the router's routes.
nlohmann::json build_openapi(const http::Router& router);

/// "METHOD pattern" of registered routes that have no summary (the OpenAPI test wants none).
std::vector<std::string> undocumented_routes(const http::Router& router);

/// "METHOD pattern" of summaries that name no registered route.
std::vector<std::string> documented_but_not_served(const http::Router& router);

}  // namespace helm::api
