#include "helm/api/access_routes.hpp"

#include <ctime>
#include <pqxx/pqxx>

#include "helm/auth/auth_service.hpp"
#include "helm/http/router.hpp"
#include "helm/identity/totp.hpp"

namespace helm::api {
namespace {

using nlohmann::json;

// Answers the policy's test questions from the organization's tenancy tables.
class DbTenancyResolver : public identity::TenancyResolver {
 public:
  DbTenancyResolver(pqxx::dbtransaction& tx, std::string org) : tx_(tx), org_(std::move(org)) {}

  std::optional<identity::Subject> find_technician(std::string_view who) const override {
    const std::string w(who);
    const auto rows = tx_.exec_params(
        "SELECT id::text, email FROM technicians WHERE org_id = $1 AND"
        " (lower(email) = lower($2) OR id::text = $2)",
        org_, w);
    if (rows.empty()) return std::nullopt;
    return identity::Subject{rows[0][0].c_str(), rows[0][1].c_str()};
  }

  std::optional<identity::Resource> find_resource(identity::Resource::Kind kind,
                                                  std::string_view id) const override {
    const std::string i(id);
    if (!is_uuid(i)) return std::nullopt;
    identity::Resource r{kind, i, "", ""};
    if (kind == identity::Resource::kClient) {
      if (tx_.exec_params("SELECT 1 FROM clients WHERE id = $1 AND org_id = $2", i, org_).empty()) {
        return std::nullopt;
      }
      r.client_id = i;
      return r;
    }
    const auto rows = tx_.exec_params(
        kind == identity::Resource::kSite
            ? "SELECT client_id::text, id::text FROM sites WHERE id = $1 AND org_id = $2"
            : "SELECT coalesce(g.client_id, s.client_id)::text, g.site_id::text"
              " FROM device_groups g LEFT JOIN sites s ON s.id = g.site_id"
              " WHERE g.id = $1 AND g.org_id = $2",
        i, org_);
    if (rows.empty()) return std::nullopt;
    r.client_id = rows[0][0].is_null() ? "" : rows[0][0].c_str();
    r.site_id = rows[0][1].is_null() ? "" : rows[0][1].c_str();
    return r;
  }

 private:
  pqxx::dbtransaction& tx_;
  std::string org_;
};

void add_totp_routes(http::Router& router, Services& services) {
  add_route(router, services, "POST", "/api/v1/me/totp", Access::kAnySession,
            [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
              if (ctx.kind != auth::PrincipalKind::kTechnician) {
                return respond(http::problem(400, "not-a-technician", "Bad Request",
                                             "Only technicians enroll a second factor."));
              }
              db_respond(services, respond, [ctx](pqxx::connection_base& c) {
                pqxx::work tx(c);
                const auto enabled = tx.exec_params1(
                    "SELECT totp_enabled FROM technicians WHERE id = $1", ctx.principal_id);
                if (enabled[0].as<bool>()) {
                  return http::problem(409, "totp-already-enabled", "Conflict",
                                       "TOTP is already enabled for this account.");
                }
                const auto secret = identity::generate_totp_secret();
                tx.exec_params("UPDATE technicians SET totp_secret = $2 WHERE id = $1",
                               ctx.principal_id, secret);
                tx.commit();
                return json_response(
                    200, {{"secret", secret},
                          {"otpauth_uri", identity::otpauth_uri("Helm Hub", ctx.email, secret)},
                          {"next", "POST /api/v1/me/totp/confirm {\"code\"} with a current code"}});
              });
            });

  add_route(
      router, services, "POST", "/api/v1/me/totp/confirm", Access::kAnySession,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto code = string_field(*body, "code", errors, true, 16);
        if (!errors.empty()) return respond(http::bad_request("No code.", errors));
        db_respond(services, respond, [ctx, code = *code, &services](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto row = tx.exec_params1(
              "SELECT coalesce(totp_secret, ''), totp_last_step FROM technicians"
              " WHERE id = $1 FOR UPDATE",
              ctx.principal_id);
          const auto secret = identity::base32_decode(row[0].c_str());
          if (std::string(row[0].c_str()).empty() || !secret) {
            return http::problem(409, "totp-not-started", "Conflict",
                                 "Start with POST /api/v1/me/totp.");
          }
          const auto step =
              identity::verify_totp(secret.value(), code, std::time(nullptr), row[1].as<int64_t>());
          if (!step) {
            return http::bad_request("The code is wrong or already used.",
                                     {{"/code", "does not match the current time window"}});
          }
          tx.exec_params(
              "UPDATE technicians SET totp_enabled = true, totp_last_step = $2 WHERE id = $1",
              ctx.principal_id, *step);
          tx.exec_params("UPDATE sessions SET totp_pending = false WHERE technician_id = $1",
                         ctx.principal_id);
          tx.commit();
          services.auth.invalidate_cache();
          return http::Response::empty(204);
        });
      });
}

void add_acl_routes(http::Router& router, Services& services) {
  const std::string path = "/api/v1/orgs/{org}/acl-policy";
  add_route(router, services, "GET", path, Access::kAdmin,
            [&services](http::Request&, const auth::SessionContext& ctx, http::Responder respond) {
              db_respond(services, respond, [ctx](pqxx::connection_base& c) {
                pqxx::work tx(c);
                const auto rows = tx.exec_params(
                    "SELECT policy::text, revision FROM acl_policies WHERE org_id = $1",
                    ctx.org_id);
                if (rows.empty()) {
                  auto r = json_response(200, json::object());
                  r.headers.emplace_back("ETag", "\"0\"");
                  return r;
                }
                auto r = json_response(200, json::parse(rows[0][0].c_str()));
                r.headers.emplace_back("ETag", "\"" + std::string(rows[0][1].c_str()) + "\"");
                return r;
              });
            });

  add_route(
      router, services, "PUT", path, Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto body = json_object_body(req, respond);
        if (!body) return;
        const auto problems = identity::AclPolicy::validate(*body);
        if (!problems.empty()) {
          std::vector<http::FieldError> errors;
          for (const auto& p : problems)
            errors.push_back({p.pointer, p.message});
          return respond(http::bad_request("The ACL policy is invalid.", errors));
        }
        std::optional<std::string> if_match;
        if (auto h = req.header("if-match")) if_match = std::string(*h);
        db_respond(services, respond, [ctx, body = *body, if_match](pqxx::connection_base& c) {
          pqxx::work tx(c);
          auto policy = identity::AclPolicy::parse(body);
          if (!policy) return http::bad_request(policy.error().message);
          const auto failures = policy->run_tests(DbTenancyResolver(tx, ctx.org_id));
          if (!failures.empty()) {
            std::vector<http::FieldError> errors;
            for (const auto& f : failures)
              errors.push_back({f.pointer, f.message});
            return http::problem(422, "policy-tests-failed", "Unprocessable Content",
                                 failures.front().message, errors);
          }
          const auto current = tx.exec_params(
              "SELECT revision FROM acl_policies WHERE org_id = $1 FOR UPDATE", ctx.org_id);
          const std::string etag =
              "\"" + std::string(current.empty() ? "0" : current[0][0].c_str()) + "\"";
          if (if_match && *if_match != "*" && *if_match != etag) {
            return http::problem(412, "stale-etag", "Precondition Failed",
                                 "The policy changed since you read it; read it again.");
          }
          const auto rev = tx.exec_params1(
              "INSERT INTO acl_policies (org_id, policy, updated_by) VALUES ($1, $2::jsonb, $3)"
              " ON CONFLICT (org_id) DO UPDATE SET policy = excluded.policy,"
              " revision = acl_policies.revision + 1, updated_by = excluded.updated_by,"
              " updated_at = now() RETURNING revision",
              ctx.org_id, body.dump(), ctx.principal_id);
          tx.commit();
          auto r = json_response(200, body);
          r.headers.emplace_back("ETag", "\"" + std::string(rev[0].c_str()) + "\"");
          return r;
        });
      });
}

}  // namespace

std::optional<identity::Reach> acl_reach(pqxx::transaction_base& tx,
                                         const auth::SessionContext& ctx) {
  if (ctx.at_least(auth::Role::kAdmin)) return std::nullopt;
  const auto rows =
      tx.exec_params("SELECT policy::text FROM acl_policies WHERE org_id = $1", ctx.org_id);
  if (rows.empty()) return identity::Reach{};
  auto policy = identity::AclPolicy::parse(json::parse(rows[0][0].c_str()));
  if (!policy) return identity::Reach{};  // a stored policy was valid when saved; deny if not
  const std::string email = ctx.kind == auth::PrincipalKind::kTechnician ? ctx.email : "";
  return policy->reach(identity::Subject{ctx.principal_id, email});
}

bool acl_visible(pqxx::dbtransaction& tx, const identity::Reach& reach, const std::string& org_id,
                 identity::Resource::Kind kind, const std::string& id) {
  if (kind != identity::Resource::kClient) {
    const auto resource = DbTenancyResolver(tx, org_id).find_resource(kind, id);
    return resource && reach.covers(*resource);
  }
  const std::string& client_id = id;
  if (reach.clients.count(client_id)) return true;
  for (const auto& site : reach.sites) {
    if (!tx.exec_params("SELECT 1 FROM sites WHERE id::text = $1 AND client_id = $2", site,
                        client_id)
             .empty()) {
      return true;
    }
  }
  for (const auto& group : reach.device_groups) {
    if (!tx.exec_params("SELECT 1 FROM device_groups g LEFT JOIN sites s ON s.id = g.site_id"
                        " WHERE g.id::text = $1 AND coalesce(g.client_id, s.client_id) = $2",
                        group, client_id)
             .empty()) {
      return true;
    }
  }
  return false;
}

void add_access_routes(http::Router& router, Services& services) {
  add_totp_routes(router, services);
  add_acl_routes(router, services);
}

}  // namespace helm::api
