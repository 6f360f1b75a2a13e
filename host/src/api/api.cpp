#include "helm/api/api.hpp"

#include <pqxx/pqxx>

#include "helm/auth/auth_service.hpp"
#include "helm/http/router.hpp"
#include "helm/log/logger.hpp"
#include "helm/secrets/audit_log.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::api {
namespace {

std::vector<std::tuple<std::string, std::string, Access>>& access_table() {
  static std::vector<std::tuple<std::string, std::string, Access>> table;
  return table;
}

http::Response unauthorized(std::string_view detail) {
  auto r = http::problem(401, "unauthorized", "Unauthorized", detail);
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

http::Response forbidden(std::string_view detail) {
  return http::problem(403, "forbidden", "Forbidden", detail);
}

bool allowed(Access access, const auth::SessionContext& ctx) {
  switch (access) {
    case Access::kPublic:
    case Access::kAnySession:
      return true;
    case Access::kReadonly:
      return ctx.at_least(auth::Role::kReadonly);
    case Access::kTechnician:
      return ctx.at_least(auth::Role::kTechnician);
    case Access::kAdmin:
      return ctx.at_least(auth::Role::kAdmin);
    case Access::kOwner:
      return ctx.at_least(auth::Role::kOwner);
    case Access::kHubOperator:
      return ctx.org_is_operator && ctx.at_least(auth::Role::kAdmin);
  }
  return false;
}

std::string_view bearer(const http::Request& request) {
  auto header = request.header("authorization");
  if (!header) return {};
  std::string_view value = *header;
  constexpr std::string_view kScheme = "Bearer ";
  if (value.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(value[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return {};
    }
  }
  return value.substr(kScheme.size());
}

// Why a known caller may not use a route of this access level, or nullopt when it may.
std::optional<http::Response> refusal_for(Access access, const auth::SessionContext& ctx) {
  if (ctx.totp_pending && access != Access::kAnySession) {
    return http::problem(403, "totp-enrollment-required", "Forbidden",
                         "Your organization requires two-factor authentication: enroll with "
                         "POST /api/v1/me/totp, confirm with POST /api/v1/me/totp/confirm.");
  }
  if (!allowed(access, ctx)) {
    return forbidden(access == Access::kHubOperator ? "Only hub operators may do this."
                                                    : "Your role does not allow this.");
  }
  return std::nullopt;
}

}  // namespace

bool is_uuid(std::string_view t) {
  if (t.size() != 36) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

const std::vector<std::tuple<std::string, std::string, Access>>& registered_access() {
  return access_table();
}

// "POST /api/v1/orgs/{org}/clients" → "post.orgs.org.clients": the audit log's action names
// are [a-z0-9._-].
std::string audit_action(const std::string& method, const std::string& route) {
  std::string out;
  for (char c : method)
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  std::string_view r = route;
  if (r.starts_with("/api/v1")) r.remove_prefix(7);
  for (char c : r) {
    if (c == '/') {
      out.push_back('.');
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return out;
}

// Writes what a known (or anonymous) caller was told about a request to the audit log.
void audit_answer(Services& services, const auth::SessionContext& ctx, const std::string& method,
                  const std::string& route, const std::string& path, const std::string& source,
                  int status) {
  auto record = secrets::audit_record(ctx, audit_action(method, route),
                                      status < 400   ? vault::AuditOutcome::kAllowed
                                      : status < 500 ? vault::AuditOutcome::kDenied
                                                     : vault::AuditOutcome::kFailed);
  if (ctx.principal_id.empty()) record.actor = "anonymous";
  record.extra = {
      {"route", method + " " + route}, {"path", path}, {"status", status}, {"source", source}};
  secrets::audit(services.pool, std::move(record));
}

// Wraps `respond` so the answer is also written to the audit log (after it is sent: the record
// says what the caller was told).
http::Responder audited(Services& services, const http::Request& req,
                        const auth::SessionContext& ctx, http::Responder respond) {
  return [&services, respond = std::move(respond), route = req.route, method = req.method,
          path = req.path, source = req.remote_address, ctx](http::Response response) {
    const int status = response.status;
    respond(std::move(response));
    audit_answer(services, ctx, method, route, path, source, status);
  };
}

void add_route(http::Router& router, Services& services, std::string method, std::string pattern,
               Access access, AuthedHandler handler, AuditMode audit) {
  access_table().emplace_back(method, pattern, access);
  const bool audit_here = audit == AuditMode::kAfterResponse && method != "GET" && method != "HEAD";
  if (access == Access::kPublic) {
    router.add(std::move(method), std::move(pattern),
               [&services, audit_here, handler = std::move(handler)](http::Request& req,
                                                                     http::Responder respond) {
                 const auth::SessionContext nobody;
                 handler(req, nobody,
                         audit_here ? audited(services, req, nobody, std::move(respond))
                                    : std::move(respond));
               });
    return;
  }
  router.add(
      std::move(method), std::move(pattern),
      [&services, access, audit_here, handler = std::move(handler)](http::Request& req,
                                                                    http::Responder respond) {
        const auto token = bearer(req);
        if (token.empty()) {
          return respond(unauthorized("Send 'Authorization: Bearer <token>' (log in first)."));
        }
        services.auth.authenticate(token, [&services, &req, access, audit_here, handler,
                                           respond = std::move(respond)](
                                              auth::AuthResult result) mutable {
          if (auto* failure = std::get_if<auth::AuthFailure>(&result)) {
            if (*failure == auth::AuthFailure::kDatabaseUnavailable) {
              return respond(http::database_unavailable());
            }
            return respond(unauthorized("The token is unknown, expired or revoked; log in again."));
          }
          const auto& ctx = std::get<auth::SessionContext>(result);
          // From here on the caller is known: refusals are audited as well as what the handler
          // answers (unauthenticated noise is not, so it cannot flood the log).
          if (audit_here) respond = audited(services, req, ctx, std::move(respond));
          if (auto org = req.path_params.find("org"); org != req.path_params.end()) {
            if (org->second != ctx.org_id) return respond(http::not_found());
          }
          if (auto refusal = refusal_for(access, ctx)) return respond(std::move(*refusal));
          try {
            handler(req, ctx, respond);
          } catch (const std::exception& e) {
            log::error("route handler threw", {{"route", req.route}, {"error", e.what()}});
            respond(http::internal_error());
          }
        });
      });
}

http::BodyGate session_body_gate(Services& services, Access access) {
  return [&services, access](const http::Request& head, http::BodyDecision decide) {
    const auto token = bearer(head);
    if (token.empty()) {
      return decide(unauthorized("Send 'Authorization: Bearer <token>' (log in first)."));
    }
    services.auth.authenticate(
        token, [&services, access, decide, method = head.method, route = head.route,
                path = head.path, source = head.remote_address](auth::AuthResult result) {
          if (auto* failure = std::get_if<auth::AuthFailure>(&result)) {
            if (*failure == auth::AuthFailure::kDatabaseUnavailable) {
              return decide(http::database_unavailable());
            }
            return decide(unauthorized("The token is unknown, expired or revoked; log in again."));
          }
          const auto& ctx = std::get<auth::SessionContext>(result);
          auto refusal = refusal_for(access, ctx);
          // A known caller refused: audited, as the route itself would.
          if (refusal) audit_answer(services, ctx, method, route, path, source, refusal->status);
          decide(std::move(refusal));
        });
  };
}

std::optional<nlohmann::json> json_object_body(const http::Request& request,
                                               const http::Responder& respond) {
  auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    respond(http::bad_request("The request body is not valid JSON."));
    return std::nullopt;
  }
  if (!body.is_object()) {
    respond(http::bad_request("The request body must be a JSON object."));
    return std::nullopt;
  }
  return body;
}

std::optional<std::string> string_field(const nlohmann::json& body, const std::string& name,
                                        std::vector<http::FieldError>& errors, bool required,
                                        size_t max_len) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) errors.push_back({"/" + name, "is required"});
    return std::nullopt;
  }
  if (!it->is_string()) {
    errors.push_back({"/" + name, "must be a string"});
    return std::nullopt;
  }
  auto value = it->get<std::string>();
  if (value.empty()) {
    errors.push_back({"/" + name, "must not be empty"});
    return std::nullopt;
  }
  if (value.size() > max_len) {
    errors.push_back({"/" + name, "must be at most " + std::to_string(max_len) + " characters"});
    return std::nullopt;
  }
  return value;
}

http::Response json_response(int status, const nlohmann::json& body) {
  return http::Response::json(status,
                              body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void db_respond(Services& services, http::Responder respond,
                std::function<http::Response(pqxx::connection_base&)> work) {
  auto response = std::make_shared<http::Response>();
  services.pool.submit(
      [response, work = std::move(work)](pqxx::connection_base& c) {
        try {
          *response = work(c);
        } catch (const pqxx::unique_violation&) {
          *response = http::problem(409, "conflict", "Conflict",
                                    "Something with that name already exists.");
        } catch (const pqxx::foreign_key_violation&) {
          *response = http::problem(409, "conflict", "Conflict",
                                    "It is still referenced, or it refers to something missing.");
        }
      },
      [response, respond](std::optional<storage::DbError> err) {
        if (!err) return respond(std::move(*response));
        if (err->kind == storage::DbErrorKind::kQuery) {
          log::error("database query failed", {{"error", err->message}});
          return respond(http::internal_error());
        }
        respond(http::database_unavailable());
      });
}

std::optional<Page> page_params(const http::Request& request, const http::Responder& respond) {
  Page page;
  if (auto limit = request.query_param("limit")) {
    try {
      size_t used = 0;
      page.limit = std::stoi(*limit, &used);
      if (used != limit->size() || page.limit < 1 || page.limit > 500) throw std::out_of_range("");
    } catch (...) {
      respond(http::bad_request("Invalid query parameter.",
                                {{"limit", "must be a whole number from 1 to 500"}}));
      return std::nullopt;
    }
  }
  if (auto cursor = request.query_param("cursor"); cursor && !cursor->empty()) {
    if (!is_uuid(*cursor)) {
      respond(http::bad_request("Invalid query parameter.",
                                {{"cursor", "is not a cursor this API returned"}}));
      return std::nullopt;
    }
    page.after_id = *cursor;
  }
  return page;
}

nlohmann::json page_body(nlohmann::json items, const Page& page) {
  const bool more = static_cast<int>(items.size()) > page.limit;
  if (more) items.erase(items.end() - 1);
  nlohmann::json next = more ? items.back().at("id") : nlohmann::json(nullptr);
  return {{"items", std::move(items)}, {"next_cursor", std::move(next)}};
}

}  // namespace helm::api
