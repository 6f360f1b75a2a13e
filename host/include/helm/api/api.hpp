/// @brief What REST routes share: authentication and scope checks around handlers, JSON body
/// parsing, database work with errors mapped to problems, and the services routes reach.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "helm/auth/credentials.hpp"
#include "helm/auth/session_context.hpp"
#include "helm/config/hub_config.hpp"
#include "helm/http/message.hpp"
#include "helm/http/problem.hpp"

namespace pqxx {
class connection_base;  // libpqxx 6: the base of every connection type
}

namespace helm {
class TaskPool;
}
namespace helm::storage {
class DbPool;
}
namespace helm::auth {
class AuthService;
}
namespace helm::http {
class Router;
}

namespace helm::api {

struct Services {
  storage::DbPool& pool;
  auth::AuthService& auth;
  TaskPool& cpu;
  auth::PasswordParams password;
};

/// Who may call a route.
enum class Access {
  kPublic,       ///< no credentials
  kAnySession,   ///< any valid session, even one that still has to enroll TOTP
  kReadonly,     ///< role readonly or higher
  kTechnician,   ///< technician or higher
  kAdmin,        ///< admin or owner of the organization in the path
  kOwner,        ///< owner only
  kHubOperator,  ///< owner or admin of the hub operators' organization
};

using AuthedHandler =
    std::function<void(http::Request&, const auth::SessionContext&, http::Responder)>;

/// How a mutation reaches the audit log.
enum class AuditMode {
  kAfterResponse,  ///< the route layer records caller, session, route and outcome
  kByHandler,      ///< the handler writes its own record inside its transaction
};

/// Registers a route that authenticates the bearer token (401), checks that an `{org}` path
/// parameter is the caller's own organization (404 otherwise, revealing nothing) and then the
/// access level (403). Mutations (every method but GET and HEAD) of authenticated callers, and
/// logins, are written to the audit log with their outcome.
void add_route(http::Router& router, Services& services, std::string method, std::string pattern,
               Access access, AuthedHandler handler, AuditMode audit = AuditMode::kAfterResponse);

/// The access level every registered route requires, for the RBAC tests and the OpenAPI check.
/// A gate for Router::set_body_limit: a body larger than the server-wide limit is read only
/// from a caller with a valid session whose role may use `access` routes; anyone else gets
/// the route's 401/403 before a byte of it is read.
http::BodyGate session_body_gate(Services& services, Access access);

const std::vector<std::tuple<std::string, std::string, Access>>& registered_access();

/// Parses the body as a JSON object; on failure answers 400 and returns nullopt.
std::optional<nlohmann::json> json_object_body(const http::Request& request,
                                               const http::Responder& respond);

/// A string field of 1..max_len characters; records a FieldError when missing (if required),
/// of the wrong type, empty or too long.
std::optional<std::string> string_field(const nlohmann::json& body, const std::string& name,
                                        std::vector<http::FieldError>& errors, bool required,
                                        size_t max_len = 200);

/// Runs `work` on a pool thread (it opens its own transaction) and answers with what it returns.
/// Database unavailability answers 503; a unique violation answers 409; anything else 500.
void db_respond(Services& services, http::Responder respond,
                std::function<http::Response(pqxx::connection_base&)> work);

http::Response json_response(int status, const nlohmann::json& body);

/// Lists: `limit` (default 50, max 500) and an opaque cursor (the last id seen). Queries fetch
/// limit + 1 rows ordered by id; page_body drops the extra one and sets next_cursor from it.
struct Page {
  int limit = 50;
  std::string after_id;  ///< empty: from the start
};
std::optional<Page> page_params(const http::Request& request, const http::Responder& respond);
nlohmann::json page_body(nlohmann::json items, const Page& page);

bool is_uuid(std::string_view text);

}  // namespace helm::api
