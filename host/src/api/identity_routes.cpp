// Login, logout, me, sessions, the organization's settings, technicians and service principals.
#include <pqxx/pqxx>

#include <chrono>
#include <ctime>
#include <mutex>
#include <unordered_map>

#include "helm/api/identity_routes.hpp"
#include "helm/auth/auth_service.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/http/router.hpp"
#include "helm/identity/totp.hpp"
#include "helm/log/logger.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kTimestamp = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

std::string ts(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', " + kTimestamp + ")";
}

json nullable(const pqxx::field& f) {
  return f.is_null() ? json(nullptr) : json(f.c_str());
}

// Backoff per source address after failed logins: in memory, per hub node.
class LoginThrottle {
 public:
  // Seconds until this address may try again; 0 when it may now.
  int64_t wait_seconds(const std::string& address) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(address);
    if (it == entries_.end()) return 0;
    const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.until - Clock::now());
    return left.count() > 0 ? left.count() : 0;
  }
  void failed(const std::string& address) {
    std::lock_guard lock(mutex_);
    if (entries_.size() > 100'000) entries_.clear();
    auto& e = entries_[address];
    ++e.failures;
    // Free tries first, then 1 s, 2 s, 4 s … capped at 5 minutes.
    if (e.failures >= 5) {
      const int shift = std::min(e.failures - 5, 8);
      e.until =
          Clock::now() + std::min(std::chrono::seconds(1 << shift), std::chrono::seconds(300));
    }
  }
  void succeeded(const std::string& address) {
    std::lock_guard lock(mutex_);
    entries_.erase(address);
  }

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point until{};
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

http::Response login_failed() {
  auto r = http::problem(401, "invalid-credentials", "Unauthorized",
                         "The email, password or one-time code is wrong.");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

struct LoginState {
  std::string email;
  std::string password;
  std::optional<std::string> totp;
  std::string address;
  std::string user_agent;
  // From the database.
  bool found = false;
  std::string technician_id, org_id, role, password_hash, totp_secret;
  bool disabled = false, locked = false, totp_enabled = false, require_totp = false;
  int64_t totp_last_step = 0;
  // From the password check.
  bool password_ok = false;
  std::string new_hash;
};

json technician_json(const pqxx::row& r) {
  // Columns: id, email, display_name, role, disabled, totp_enabled, created_at, org_id
  return {{"id", r[0].c_str()},           {"email", r[1].c_str()},
          {"display_name", r[2].c_str()}, {"role", r[3].c_str()},
          {"disabled", r[4].as<bool>()},  {"totp_enabled", r[5].as<bool>()},
          {"created_at", r[6].c_str()},   {"org_id", r[7].c_str()}};
}

std::string technician_columns() {
  return "id::text, email, display_name, role, disabled, totp_enabled, " + ts("created_at") +
         ", org_id::text";
}

// Owners are managed only by owners; nobody hands out a role above their own.
std::optional<http::Response> check_role_change(const auth::SessionContext& ctx,
                                                const std::string& target_role,
                                                const std::string& new_role) {
  const bool touches_owner = target_role == "owner" || new_role == "owner";
  if (touches_owner && !ctx.at_least(auth::Role::kOwner)) {
    return http::problem(403, "forbidden", "Forbidden", "Only an owner may manage owners.");
  }
  return std::nullopt;
}

bool valid_email(const std::string& e) {
  const auto at = e.find('@');
  return at != std::string::npos && at > 0 && at + 1 < e.size() &&
         e.find(' ') == std::string::npos && e.size() <= 254;
}

void end_sessions_of(pqxx::work& tx, const std::string& technician_id, const std::string& reason) {
  tx.exec_params(
      "UPDATE sessions SET ended_at = now(), end_reason = $2"
      " WHERE technician_id = $1 AND ended_at IS NULL",
      technician_id, reason);
}

int count_active_owners(pqxx::work& tx, const std::string& org) {
  return tx
      .exec_params1(
          "SELECT count(*) FROM technicians WHERE org_id = $1 AND role = 'owner'"
          " AND NOT disabled",
          org)[0]
      .as<int>();
}

void add_login(http::Router& router, Services& services) {
  static LoginThrottle throttle;
  add_route(router, services, "POST", "/api/v1/auth/login", Access::kPublic,
            [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
              if (const auto wait = throttle.wait_seconds(req.remote_address); wait > 0) {
                auto r = http::problem(429, "too-many-attempts", "Too Many Requests",
                                       "Too many failed logins from this address; wait and retry.");
                r.headers.emplace_back("Retry-After", std::to_string(wait));
                return respond(std::move(r));
              }
              auto body = json_object_body(req, respond);
              if (!body) return;
              std::vector<http::FieldError> errors;
              auto email = string_field(*body, "email", errors, true, 254);
              auto password = string_field(*body, "password", errors, true, 1024);
              auto totp = string_field(*body, "totp", errors, false, 16);
              if (!errors.empty()) return respond(http::bad_request("Cannot log in.", errors));

              auto st = std::make_shared<LoginState>();
              st->email = *email;
              st->password = *password;
              st->totp = totp;
              st->address = req.remote_address;
              st->user_agent = std::string(req.header("user-agent").value_or("")).substr(0, 200);

              auto finish = [&services, st, respond]() {
                db_respond(services, respond, [st, &services](pqxx::connection_base& c) {
                  pqxx::work tx(c);
                  if (!st->found || !st->password_ok || st->disabled || st->locked) {
                    if (st->found && !st->password_ok) {
                      tx.exec_params(
                          "UPDATE technicians SET failed_logins = failed_logins + 1,"
                          " locked_until = CASE WHEN failed_logins + 1 >= 5 THEN now() +"
                          " least(interval '1 second' * power(2, failed_logins + 1 - 5),"
                          " interval '15 minutes') ELSE locked_until END WHERE id = $1",
                          st->technician_id);
                      tx.commit();
                    }
                    throttle.failed(st->address);
                    return login_failed();
                  }
                  if (st->totp_enabled) {
                    const auto secret = identity::base32_decode(st->totp_secret);
                    const auto step =
                        st->totp && secret
                            ? identity::verify_totp(secret.value(), *st->totp, std::time(nullptr),
                                                    st->totp_last_step)
                            : std::nullopt;
                    // The conditional update makes a code count once even across racing logins.
                    if (!step || tx.exec_params("UPDATE technicians SET totp_last_step = $2"
                                                " WHERE id = $1 AND totp_last_step < $2",
                                                st->technician_id, *step)
                                         .affected_rows() == 0) {
                      throttle.failed(st->address);
                      return login_failed();
                    }
                  }
                  if (!st->new_hash.empty()) {
                    tx.exec_params("UPDATE technicians SET password_hash = $2 WHERE id = $1",
                                   st->technician_id, st->new_hash);
                  }
                  tx.exec_params(
                      "UPDATE technicians SET failed_logins = 0, locked_until = NULL WHERE id = $1",
                      st->technician_id);
                  const std::string token = auth::new_token(auth::kSessionTokenPrefix);
                  const bool pending = st->require_totp && !st->totp_enabled &&
                                       (st->role == "owner" || st->role == "admin");
                  const auto absolute = services.auth.options().absolute_timeout.count();
                  const auto row = tx.exec_params1(
                      "INSERT INTO sessions (token_hash, org_id, technician_id, totp_pending,"
                      " absolute_expires_at, source_address, user_agent)"
                      " VALUES ($1, $2, $3, $4, now() + $5 * interval '1 second', $6, $7)"
                      " RETURNING id::text, " +
                          ts("least(absolute_expires_at, now() + $8 * interval '1 second')"),
                      pqxx::binarystring(auth::token_hash(token)), st->org_id, st->technician_id,
                      pending, absolute, st->address, st->user_agent,
                      services.auth.options().idle_timeout.count());
                  tx.commit();
                  throttle.succeeded(st->address);
                  log::info("login", {{"technician_id", st->technician_id},
                                      {"session_id", row[0].c_str()},
                                      {"source", st->address}});
                  json out = {{"token", token},
                              {"expires_at", row[1].c_str()},
                              {"session_id", row[0].c_str()},
                              {"totp_enrollment_required", pending},
                              {"technician",
                               {{"id", st->technician_id},
                                {"email", st->email},
                                {"org_id", st->org_id},
                                {"role", st->role}}}};
                  return json_response(200, out);
                });
              };

              auto check_password = [&services, st, finish]() {
                services.cpu.post([st, finish, &services] {
                  const auto& stored =
                      st->found ? st->password_hash : auth::dummy_password_hash(services.password);
                  st->password_ok = auth::verify_password(stored, st->password) && st->found;
                  if (st->password_ok && auth::password_needs_rehash(stored, services.password)) {
                    st->new_hash = auth::hash_password(st->password, services.password);
                  }
                  finish();
                });
              };

              services.pool.submit(
                  [st](pqxx::connection_base& c) {
                    pqxx::work tx(c);
                    const auto rows = tx.exec_params(
                        "SELECT t.id::text, t.org_id::text, t.role, t.password_hash, t.disabled,"
                        " coalesce(t.locked_until > now(), false), t.totp_enabled,"
                        " coalesce(t.totp_secret, ''), t.totp_last_step,"
                        " o.require_totp_for_admins, t.email"
                        " FROM technicians t JOIN organizations o ON o.id = t.org_id"
                        " WHERE lower(t.email) = lower($1)",
                        st->email);
                    if (rows.empty()) return;
                    const auto& r = rows[0];
                    st->found = true;
                    st->technician_id = r[0].c_str();
                    st->org_id = r[1].c_str();
                    st->role = r[2].c_str();
                    st->password_hash = r[3].c_str();
                    st->disabled = r[4].as<bool>();
                    st->locked = r[5].as<bool>();
                    st->totp_enabled = r[6].as<bool>();
                    st->totp_secret = r[7].c_str();
                    st->totp_last_step = r[8].as<int64_t>();
                    st->require_totp = r[9].as<bool>();
                    st->email = r[10].c_str();
                  },
                  [respond, check_password](std::optional<storage::DbError> err) {
                    if (err) return respond(http::database_unavailable());
                    check_password();
                  });
            });
}

void add_session_routes(http::Router& router, Services& services) {
  add_route(router, services, "POST", "/api/v1/auth/logout", Access::kAnySession,
            [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
              if (ctx.kind != auth::PrincipalKind::kTechnician) {
                return respond(http::problem(400, "not-a-session", "Bad Request",
                                             "API tokens are revoked by deleting the service "
                                             "principal, not by logging out."));
              }
              db_respond(services, respond, [ctx, &services](pqxx::connection_base& c) {
                pqxx::work tx(c);
                tx.exec_params(
                    "UPDATE sessions SET ended_at = now(), end_reason = 'logout'"
                    " WHERE id = $1 AND ended_at IS NULL",
                    ctx.session_id);
                tx.commit();
                services.auth.invalidate_cache();
                return http::Response::empty(204);
              });
            });

  add_route(router, services, "GET", "/api/v1/me", Access::kAnySession,
            [](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
              respond(json_response(200, {{"id", ctx.principal_id},
                                          {"email", ctx.email},
                                          {"org_id", ctx.org_id},
                                          {"role", auth::role_name(ctx.role)},
                                          {"kind", ctx.kind == auth::PrincipalKind::kTechnician
                                                       ? "technician"
                                                       : "service_principal"},
                                          {"session_id", ctx.session_id},
                                          {"hub_operator", ctx.org_is_operator},
                                          {"totp_enrollment_required", ctx.totp_pending}}));
            });

  // Sessions of one technician of `org`; 404 when there is no such technician there.
  auto list_sessions = [&services](const std::string& technician_id, const std::string& org,
                                   const std::string& current_session, http::Responder respond) {
    db_respond(services, respond, [technician_id, org, current_session](pqxx::connection_base& c) {
      pqxx::work tx(c);
      if (tx.exec_params("SELECT 1 FROM technicians WHERE id = $1 AND org_id = $2", technician_id,
                         org)
              .empty()) {
        return http::not_found();
      }
      const auto rows = tx.exec_params(
          "SELECT id::text, " + ts("created_at") + ", " + ts("last_used_at") + ", " +
              ts("absolute_expires_at") +
              ", source_address, user_agent FROM sessions WHERE technician_id = $1"
              " AND ended_at IS NULL AND absolute_expires_at > now() ORDER BY created_at",
          technician_id);
      json items = json::array();
      for (const auto& r : rows) {
        items.push_back({{"id", r[0].c_str()},
                         {"created_at", r[1].c_str()},
                         {"last_used_at", r[2].c_str()},
                         {"absolute_expires_at", r[3].c_str()},
                         {"source_address", r[4].c_str()},
                         {"user_agent", r[5].c_str()},
                         {"current", current_session == r[0].c_str()}});
      }
      return json_response(200, {{"items", items}, {"next_cursor", nullptr}});
    });
  };

  add_route(
      router, services, "GET", "/api/v1/me/sessions", Access::kAnySession,
      [list_sessions](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
        if (ctx.kind != auth::PrincipalKind::kTechnician) {
          return respond(json_response(200, {{"items", json::array()}, {"next_cursor", nullptr}}));
        }
        list_sessions(ctx.principal_id, ctx.org_id, ctx.session_id, std::move(respond));
      });

  add_route(
      router, services, "DELETE", "/api/v1/me/sessions/{session}", Access::kAnySession,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto id = req.path_params.at("session");
        if (!is_uuid(id)) return respond(http::not_found());
        db_respond(services, respond, [ctx, id, &services](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto rows = tx.exec_params(
              "UPDATE sessions SET ended_at = now(), end_reason = 'revoked'"
              " WHERE id = $1 AND technician_id = $2 AND ended_at IS NULL RETURNING id",
              id, ctx.principal_id);
          if (rows.empty()) return http::not_found();
          tx.commit();
          services.auth.invalidate_cache();
          return http::Response::empty(204);
        });
      });

  add_route(router, services, "GET", "/api/v1/orgs/{org}/technicians/{technician}/sessions",
            Access::kAdmin,
            [list_sessions](http::Request& req, const auth::SessionContext& ctx,
                            http::Responder respond) {
              const auto id = req.path_params.at("technician");
              if (!is_uuid(id)) return respond(http::not_found());
              list_sessions(id, ctx.org_id, ctx.session_id, std::move(respond));
            });

  add_route(
      router, services, "DELETE", "/api/v1/orgs/{org}/technicians/{technician}/sessions",
      Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto id = req.path_params.at("technician");
        if (!is_uuid(id)) return respond(http::not_found());
        db_respond(services, respond, [ctx, id, &services](pqxx::connection_base& c) {
          pqxx::work tx(c);
          if (tx.exec_params("SELECT 1 FROM technicians WHERE id = $1 AND org_id = $2", id,
                             ctx.org_id)
                  .empty()) {
            return http::not_found();
          }
          end_sessions_of(tx, id, "revoked");
          tx.commit();
          services.auth.invalidate_cache();
          return http::Response::empty(204);
        });
      });
}

void add_organization_routes(http::Router& router, Services& services) {
  add_route(router, services, "GET", "/api/v1/orgs/{org}", Access::kReadonly,
            [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
              db_respond(services, respond, [ctx](pqxx::connection_base& c) {
                pqxx::work tx(c);
                const auto r = tx.exec_params1(
                    "SELECT id::text, name, is_operator, require_totp_for_admins, " +
                        ts("created_at") + " FROM organizations WHERE id = $1",
                    ctx.org_id);
                return json_response(200, {{"id", r[0].c_str()},
                                           {"name", r[1].c_str()},
                                           {"hub_operator", r[2].as<bool>()},
                                           {"require_totp_for_admins", r[3].as<bool>()},
                                           {"created_at", r[4].c_str()}});
              });
            });

  add_route(
      router, services, "PATCH", "/api/v1/orgs/{org}", Access::kOwner,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        for (const auto& [key, value] : body->items()) {
          if (key != "require_totp_for_admins" && key != "name") {
            return respond(http::bad_request("Unknown setting.",
                                             {{"/" + key, "is not a setting of an organization"}}));
          }
        }
        std::vector<http::FieldError> errors;
        auto name = string_field(*body, "name", errors, false);
        std::optional<bool> totp;
        if (body->contains("require_totp_for_admins")) {
          if (!(*body)["require_totp_for_admins"].is_boolean()) {
            errors.push_back({"/require_totp_for_admins", "must be true or false"});
          } else {
            totp = (*body)["require_totp_for_admins"].get<bool>();
          }
        }
        if (!errors.empty()) return respond(http::bad_request("Invalid settings.", errors));
        db_respond(services, respond, [ctx, name, totp](pqxx::connection_base& c) {
          pqxx::work tx(c);
          if (name)
            tx.exec_params("UPDATE organizations SET name = $2 WHERE id = $1", ctx.org_id, *name);
          if (totp) {
            tx.exec_params("UPDATE organizations SET require_totp_for_admins = $2 WHERE id = $1",
                           ctx.org_id, *totp);
          }
          tx.commit();
          return http::Response::empty(204);
        });
      });
}

// Hub operators onboard MSP organizations, each with its first owner.
void add_operator_routes(http::Router& router, Services& services) {
  add_route(router, services, "GET", "/api/v1/orgs", Access::kHubOperator,
            [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
              auto page = page_params(req, respond);
              if (!page) return;
              db_respond(services, respond, [page = *page](pqxx::connection_base& c) {
                pqxx::work tx(c);
                const auto rows = tx.exec_params(
                    "SELECT id::text, name, is_operator, " + ts("created_at") +
                        " FROM organizations WHERE ($1 = '' OR id > $1::uuid) ORDER BY id LIMIT $2",
                    page.after_id, page.limit + 1);
                json items = json::array();
                for (const auto& r : rows) {
                  items.push_back({{"id", r[0].c_str()},
                                   {"name", r[1].c_str()},
                                   {"hub_operator", r[2].as<bool>()},
                                   {"created_at", r[3].c_str()}});
                }
                return json_response(200, page_body(std::move(items), page));
              });
            });

  add_route(
      router, services, "POST", "/api/v1/orgs", Access::kHubOperator,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto name = string_field(*body, "name", errors, true);
        auto email = string_field(*body, "owner_email", errors, true, 254);
        auto password = string_field(*body, "owner_password", errors, true, 1024);
        if (email && !valid_email(*email)) {
          errors.push_back({"/owner_email", "is not an email address"});
        }
        if (password && password->size() < 12) {
          errors.push_back({"/owner_password", "must be at least 12 characters"});
        }
        if (!errors.empty()) {
          return respond(http::bad_request("The organization is invalid.", errors));
        }
        services.cpu.post([&services, respond, name = *name, email = *email, password = *password] {
          auto hash = auth::hash_password(password, services.password);
          db_respond(services, respond, [name, email, hash](pqxx::connection_base& c) {
            pqxx::work tx(c);
            const auto org = tx.exec_params1(
                "INSERT INTO organizations (name) VALUES ($1) RETURNING id::text, " +
                    ts("created_at"),
                name);
            const auto owner = tx.exec_params1(
                "INSERT INTO technicians (org_id, email, role, password_hash)"
                " VALUES ($1, $2, 'owner', $3) RETURNING id::text",
                std::string(org[0].c_str()), email, hash);
            tx.commit();
            return json_response(201, {{"id", org[0].c_str()},
                                       {"name", name},
                                       {"hub_operator", false},
                                       {"created_at", org[1].c_str()},
                                       {"owner", {{"id", owner[0].c_str()}, {"email", email}}}});
          });
        });
      });
}

void add_technician_routes(http::Router& router, Services& services) {
  const std::string base = "/api/v1/orgs/{org}/technicians";
  add_route(
      router, services, "GET", base, Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto page = page_params(req, respond);
        if (!page) return;
        db_respond(services, respond, [ctx, page = *page](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto rows = tx.exec_params(
              "SELECT " + technician_columns() +
                  " FROM technicians WHERE org_id = $1 AND ($2 = '' OR id > $2::uuid)"
                  " ORDER BY id LIMIT $3",
              ctx.org_id, page.after_id, page.limit + 1);
          json items = json::array();
          for (const auto& r : rows)
            items.push_back(technician_json(r));
          return json_response(200, page_body(std::move(items), page));
        });
      });

  add_route(
      router, services, "POST", base, Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto email = string_field(*body, "email", errors, true, 254);
        auto password = string_field(*body, "password", errors, true, 1024);
        auto role = string_field(*body, "role", errors, true, 20);
        auto display = string_field(*body, "display_name", errors, false);
        if (email && !valid_email(*email)) errors.push_back({"/email", "is not an email address"});
        if (password && password->size() < 12) {
          errors.push_back({"/password", "must be at least 12 characters"});
        }
        if (role && !auth::parse_role(*role)) {
          errors.push_back({"/role", "must be one of owner, admin, technician, readonly"});
        }
        if (!errors.empty())
          return respond(http::bad_request("The technician is invalid.", errors));
        if (auto denied = check_role_change(ctx, "", *role)) return respond(std::move(*denied));
        auto hash = std::make_shared<std::string>();
        services.cpu.post([&services, ctx, hash, email = *email, password = *password, role = *role,
                           display = display.value_or(""), respond] {
          *hash = auth::hash_password(password, services.password);
          db_respond(
              services, respond, [ctx, hash, email, role, display](pqxx::connection_base& c) {
                pqxx::work tx(c);
                const auto rows = tx.exec_params(
                    "INSERT INTO technicians (org_id, email, display_name, role, password_hash)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING " +
                        technician_columns(),
                    ctx.org_id, email, display, role, *hash);
                tx.commit();
                return json_response(201, technician_json(rows[0]));
              });
        });
      });

  add_route(
      router, services, "GET", base + "/{technician}", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto id = req.path_params.at("technician");
        if (!is_uuid(id)) return respond(http::not_found());
        db_respond(services, respond, [ctx, id](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto rows = tx.exec_params(
              "SELECT " + technician_columns() + " FROM technicians WHERE id = $1 AND org_id = $2",
              id, ctx.org_id);
          if (rows.empty()) return http::not_found();
          return json_response(200, technician_json(rows[0]));
        });
      });

  add_route(
      router, services, "PATCH", base + "/{technician}", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto id = req.path_params.at("technician");
        if (!is_uuid(id)) return respond(http::not_found());
        auto body = json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        for (const auto& [key, value] : body->items()) {
          if (key != "role" && key != "display_name") {
            errors.push_back({"/" + key, "cannot be changed here"});
          }
        }
        auto role = string_field(*body, "role", errors, false, 20);
        auto display = string_field(*body, "display_name", errors, false);
        if (role && !auth::parse_role(*role)) {
          errors.push_back({"/role", "must be one of owner, admin, technician, readonly"});
        }
        if (!errors.empty()) return respond(http::bad_request("Invalid change.", errors));
        db_respond(
            services, respond, [ctx, id, role, display, &services](pqxx::connection_base& c) {
              pqxx::work tx(c);
              const auto cur = tx.exec_params(
                  "SELECT role FROM technicians WHERE id = $1 AND org_id = $2 FOR UPDATE", id,
                  ctx.org_id);
              if (cur.empty()) return http::not_found();
              const std::string current_role = cur[0][0].c_str();
              if (role) {
                if (auto denied = check_role_change(ctx, current_role, *role)) return *denied;
                if (current_role == "owner" && *role != "owner" &&
                    count_active_owners(tx, ctx.org_id) <= 1) {
                  return http::problem(409, "last-owner", "Conflict",
                                       "An organization keeps at least one active owner.");
                }
                tx.exec_params("UPDATE technicians SET role = $2, updated_at = now() WHERE id = $1",
                               id, *role);
              }
              if (display) {
                tx.exec_params(
                    "UPDATE technicians SET display_name = $2, updated_at = now() WHERE id = $1",
                    id, *display);
              }
              const auto rows = tx.exec_params(
                  "SELECT " + technician_columns() + " FROM technicians WHERE id = $1", id);
              tx.commit();
              services.auth.invalidate_cache();
              return json_response(200, technician_json(rows[0]));
            });
      });

  // Disable, enable and delete share the lookup and the owner rules.
  auto account_action = [&services](const std::string& action) {
    return [&services, action](http::Request& req, const auth::SessionContext& ctx,
                               http::Responder respond) {
      const auto id = req.path_params.at("technician");
      if (!is_uuid(id)) return respond(http::not_found());
      db_respond(services, respond, [ctx, id, action, &services](pqxx::connection_base& c) {
        pqxx::work tx(c);
        const auto cur = tx.exec_params(
            "SELECT role, disabled FROM technicians WHERE id = $1 AND org_id = $2 FOR UPDATE", id,
            ctx.org_id);
        if (cur.empty()) return http::not_found();
        const std::string role = cur[0][0].c_str();
        if (auto denied = check_role_change(ctx, role, role)) return *denied;
        if (action != "enable" && role == "owner" && !cur[0][1].as<bool>() &&
            count_active_owners(tx, ctx.org_id) <= 1) {
          return http::problem(409, "last-owner", "Conflict",
                               "An organization keeps at least one active owner.");
        }
        if (action == "disable") {
          tx.exec_params("UPDATE technicians SET disabled = true, updated_at = now() WHERE id = $1",
                         id);
          end_sessions_of(tx, id, "account_disabled");
        } else if (action == "enable") {
          tx.exec_params(
              "UPDATE technicians SET disabled = false, failed_logins = 0, locked_until = NULL,"
              " updated_at = now() WHERE id = $1",
              id);
        } else {
          end_sessions_of(tx, id, "account_deleted");
          tx.exec_params("DELETE FROM technicians WHERE id = $1", id);
        }
        tx.commit();
        services.auth.invalidate_cache();
        return http::Response::empty(204);
      });
    };
  };
  add_route(router, services, "POST", base + "/{technician}/disable", Access::kAdmin,
            account_action("disable"));
  add_route(router, services, "POST", base + "/{technician}/enable", Access::kAdmin,
            account_action("enable"));
  add_route(router, services, "DELETE", base + "/{technician}", Access::kAdmin,
            account_action("delete"));
}

void add_service_principal_routes(http::Router& router, Services& services) {
  const std::string base = "/api/v1/orgs/{org}/service-principals";
  const auto columns = "id::text, name, role, " + ts("expires_at") + ", " + ts("last_used_at") +
                       ", " + ts("created_at") + ", disabled";
  auto sp_json = [](const pqxx::row& r) {
    return json{{"id", r[0].c_str()},
                {"name", r[1].c_str()},
                {"role", r[2].c_str()},
                {"expires_at", nullable(r[3])},
                {"last_used_at", nullable(r[4])},
                {"created_at", r[5].c_str()},
                {"disabled", r[6].as<bool>()}};
  };
  add_route(
      router, services, "GET", base, Access::kAdmin,
      [&services, columns, sp_json](http::Request& req, const auth::SessionContext& ctx,
                                    http::Responder respond) {
        auto page = page_params(req, respond);
        if (!page) return;
        db_respond(
            services, respond, [ctx, columns, sp_json, page = *page](pqxx::connection_base& c) {
              pqxx::work tx(c);
              const auto rows = tx.exec_params(
                  "SELECT " + columns +
                      " FROM service_principals WHERE org_id = $1 AND ($2 = '' OR id > $2::uuid)"
                      " ORDER BY id LIMIT $3",
                  ctx.org_id, page.after_id, page.limit + 1);
              json items = json::array();
              for (const auto& r : rows)
                items.push_back(sp_json(r));
              return json_response(200, page_body(std::move(items), page));
            });
      });

  add_route(
      router, services, "POST", base, Access::kAdmin,
      [&services, columns, sp_json](http::Request& req, const auth::SessionContext& ctx,
                                    http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto name = string_field(*body, "name", errors, true, 100);
        auto role = string_field(*body, "role", errors, true, 20);
        if (role && (!auth::parse_role(*role) || *role == "owner")) {
          errors.push_back({"/role", "must be one of admin, technician, readonly"});
        }
        int64_t expires_in = 0;
        if (body->contains("expires_in_s")) {
          const auto& v = (*body)["expires_in_s"];
          if (!v.is_number_unsigned() || v.get<int64_t>() < 60) {
            errors.push_back({"/expires_in_s", "must be a whole number of seconds, at least 60"});
          } else {
            expires_in = v.get<int64_t>();
          }
        }
        if (!errors.empty())
          return respond(http::bad_request("The service principal is invalid.", errors));
        db_respond(
            services, respond,
            [ctx, columns, sp_json, name = *name, role = *role,
             expires_in](pqxx::connection_base& c) {
              pqxx::work tx(c);
              const std::string token = auth::new_token(auth::kServiceTokenPrefix);
              const auto rows = tx.exec_params(
                  "INSERT INTO service_principals (org_id, name, role, token_hash, expires_at,"
                  " created_by) VALUES ($1, $2, $3, $4, CASE WHEN $5 > 0 THEN now() + $5 *"
                  " interval '1 second' END, $6) RETURNING " +
                      columns,
                  ctx.org_id, name, role, pqxx::binarystring(auth::token_hash(token)), expires_in,
                  ctx.principal_id);
              tx.commit();
              auto out = sp_json(rows[0]);
              out["token"] = token;  // shown once; only its hash is stored
              return json_response(201, out);
            });
      });

  add_route(
      router, services, "DELETE", base + "/{principal}", Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const auto id = req.path_params.at("principal");
        if (!is_uuid(id)) return respond(http::not_found());
        db_respond(services, respond, [ctx, id, &services](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto rows = tx.exec_params(
              "DELETE FROM service_principals WHERE id = $1 AND org_id = $2 RETURNING id", id,
              ctx.org_id);
          if (rows.empty()) return http::not_found();
          tx.commit();
          services.auth.invalidate_cache();
          return http::Response::empty(204);
        });
      });
}

}  // namespace

void add_identity_routes(http::Router& router, Services& services) {
  add_login(router, services);
  add_session_routes(router, services);
  add_operator_routes(router, services);
  add_organization_routes(router, services);
  add_technician_routes(router, services);
  add_service_principal_routes(router, services);
}

}  // namespace helm::api
