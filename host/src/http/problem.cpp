#include "helm/http/problem.hpp"

#include <nlohmann/json.hpp>

namespace helm::http {

Response problem(int status, std::string_view type, std::string_view title, std::string_view detail,
                 const std::vector<FieldError>& errors) {
  nlohmann::json body = {{"type", "urn:helm:problem:" + std::string(type)},
                         {"title", title},
                         {"status", status},
                         {"detail", detail}};
  if (!errors.empty()) {
    auto& list = body["errors"] = nlohmann::json::array();
    for (const auto& e : errors)
      list.push_back({{"field", e.field}, {"message", e.message}});
  }
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Response not_found(std::string_view detail) {
  return problem(404, "not-found", "Not Found", detail);
}

Response method_not_allowed(const std::vector<std::string>& allowed) {
  std::string list;
  for (const auto& m : allowed)
    list += (list.empty() ? "" : ", ") + m;
  auto r = problem(405, "method-not-allowed", "Method Not Allowed",
                   "This resource accepts: " + list + ".");
  r.headers.emplace_back("Allow", list);
  return r;
}

Response payload_too_large(uint64_t limit) {
  return problem(
      413, "payload-too-large", "Payload Too Large",
      "The request body is larger than the limit of " + std::to_string(limit) + " bytes.");
}

Response bad_request(std::string_view detail, const std::vector<FieldError>& errors) {
  return problem(400, errors.empty() ? "bad-request" : "validation-failed", "Bad Request", detail,
                 errors);
}

Response database_unavailable() {
  auto r = problem(503, "database-unavailable", "Service Unavailable",
                   "The database is unreachable right now; retry shortly.");
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

Response internal_error() {
  return problem(500, "internal-error", "Internal Server Error",
                 "The hub failed to handle this request; the hub's log has the details.");
}

}  // namespace helm::http
