#include "helm/agents/agent_routes.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <variant>

#include "helm/agents/agent_service.hpp"
#include "helm/api/access_routes.hpp"
#include "helm/api/openapi.hpp"
#include "helm/http/router.hpp"
#include "helm/secrets/audit_log.hpp"
#include "helm/storage/prepared.hpp"

namespace helm::agents {
namespace {

using nlohmann::json;

// An API timestamp (RFC 3339, UTC, seconds) of a column, as SQL.
std::string ts(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";
}

json text_or_null(const pqxx::field& f) {
  return f.is_null() ? json(nullptr) : json(f.c_str());
}

http::Response unprocessable(std::string_view detail, const std::vector<http::FieldError>& errors) {
  return http::problem(422, "unprocessable", "Unprocessable Content", detail, errors);
}

// An optional whole-number field in [min, max]; records a FieldError otherwise.
std::optional<long long> int_field(const json& body, const std::string& name, long long fallback,
                                   long long min, long long max,
                                   std::vector<http::FieldError>& errors) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<long long>() < min || it->get<long long>() > max) {
    errors.push_back({"/" + name, "must be a whole number from " + std::to_string(min) + " to " +
                                      std::to_string(max)});
    return std::nullopt;
  }
  return it->get<long long>();
}

// An optional id field: empty when absent, nullopt (with an error) when malformed.
std::optional<std::string> id_field(const json& body, const std::string& name, bool required,
                                    std::vector<http::FieldError>& errors) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) {
      errors.push_back({"/" + name, "is required"});
      return std::nullopt;
    }
    return std::string();
  }
  if (!it->is_string() || !api::is_uuid(it->get<std::string>())) {
    errors.push_back({"/" + name, "must be an id (a lower-case UUID)"});
    return std::nullopt;
  }
  return it->get<std::string>();
}

// '{"a","b"}': a PostgreSQL text[] literal.
std::string text_array(const std::set<std::string, std::less<>>& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

bool device_visible(const std::optional<identity::Reach>& reach, const std::string& client_id,
                    const std::string& site_id, const std::string& group_id) {
  if (!reach) return true;
  return reach->clients.count(client_id) || reach->sites.count(site_id) ||
         (!group_id.empty() && reach->device_groups.count(group_id));
}

// ---- enrollment keys ----

const std::string kKeyColumns =
    "id::text, key_prefix, client_id::text, site_id::text, "
    "device_group_id::text, uses, uses_left, " +
    ts("expires_at") + ", " + ts("created_at") + ", " + ts("last_used_at") + ", " +
    ts("revoked_at") + ", expires_at <= now(), created_by";

json key_json(const pqxx::row& r) {
  const bool revoked = !r[10].is_null();
  const bool expired = r[11].as<bool>();
  const int uses_left = r[6].as<int>();
  return {{"id", r[0].c_str()},
          {"key_prefix", r[1].c_str()},
          {"client_id", r[2].c_str()},
          {"site_id", r[3].c_str()},
          {"device_group_id", text_or_null(r[4])},
          {"uses", r[5].as<int>()},
          {"uses_left", uses_left},
          {"expires_at", r[7].c_str()},
          {"created_at", r[8].c_str()},
          {"last_used_at", text_or_null(r[9])},
          {"revoked", revoked},
          {"revoked_at", text_or_null(r[10])},
          {"expired", expired},
          {"usable", !revoked && !expired && uses_left > 0},
          {"created_by", r[12].c_str()}};
}

// The client, site and group of a new key must be this organization's and fit together.
std::vector<http::FieldError> check_key_placement(pqxx::work& tx, const std::string& org,
                                                  const std::string& client,
                                                  const std::string& site,
                                                  const std::string& group) {
  std::vector<http::FieldError> errors;
  const bool client_ok =
      !tx.exec_params("SELECT 1 FROM clients WHERE id = $1 AND org_id = $2", client, org).empty();
  if (!client_ok) errors.push_back({"/client_id", "names no client in this organization"});
  const auto site_row =
      tx.exec_params("SELECT client_id::text FROM sites WHERE id = $1 AND org_id = $2", site, org);
  if (site_row.empty()) {
    errors.push_back({"/site_id", "names no site in this organization"});
  } else if (client_ok && site_row[0][0].c_str() != client) {
    errors.push_back({"/site_id", "is a site of another client than client_id"});
  }
  if (!group.empty()) {
    const auto g = tx.exec_params(
        "SELECT coalesce(client_id::text, ''), coalesce(site_id::text, '') FROM device_groups"
        " WHERE id = $1 AND org_id = $2",
        group, org);
    if (g.empty()) {
      errors.push_back({"/device_group_id", "names no device group in this organization"});
    } else if ((g[0][0].size() != 0 && g[0][0].c_str() != client) ||
               (g[0][1].size() != 0 && g[0][1].c_str() != site)) {
      errors.push_back({"/device_group_id", "is pinned to another client or site"});
    }
  }
  return errors;
}

void add_enrollment_key_routes(http::Router& router, api::Services& services,
                               AgentService& agents) {
  const std::string collection = "/api/v1/orgs/{org}/enrollment-keys";
  api::add_route(
      router, services, "POST", collection, api::Access::kAdmin,
      [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                           http::Responder respond) {
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto client = id_field(*body, "client_id", true, errors);
        auto site = id_field(*body, "site_id", true, errors);
        auto group = id_field(*body, "device_group_id", false, errors);
        auto uses = int_field(*body, "uses", 1, 1, 100'000, errors);
        auto expires_in = int_field(*body, "expires_in_s", 86'400, 1, 365LL * 86'400, errors);
        if (!errors.empty()) {
          return respond(http::bad_request("The enrollment key request is invalid.", errors));
        }
        const std::string key = auth::new_token(kEnrollmentKeyPrefix);
        const std::string hash = agents.secret_hash(key);
        api::db_respond(
            services, respond,
            [ctx, key, hash, client = *client, site = *site, group = *group, uses = *uses,
             expires_in = *expires_in](pqxx::connection_base& c) {
              pqxx::work tx(c);
              auto bad = check_key_placement(tx, ctx.org_id, client, site, group);
              if (!bad.empty()) {
                return unprocessable("The client, site or device group does not fit.", bad);
              }
              const auto rows = tx.exec_params(
                  "INSERT INTO enrollment_keys (org_id, client_id, site_id, device_group_id,"
                  " key_hash, key_prefix, uses, uses_left, expires_at, created_by)"
                  " VALUES ($1, $2, $3, nullif($4, '')::uuid, $5, $6, $7, $7,"
                  " now() + make_interval(secs => $8), $9) RETURNING " +
                      kKeyColumns,
                  ctx.org_id, client, site, group, pqxx::binarystring(hash), key.substr(0, 12),
                  uses, expires_in, ctx.principal_id);
              tx.commit();
              auto item = key_json(rows[0]);
              item["key"] = key;  // shown this once; only its hash is stored
              auto r = api::json_response(201, item);
              r.headers.emplace_back("Location", "./" + item["id"].get<std::string>());
              r.headers.emplace_back("Cache-Control", "no-store");
              return r;
            });
      });

  api::add_route(
      router, services, "GET", collection, api::Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto page = api::page_params(req, respond);
        if (!page) return;
        api::db_respond(services, respond, [ctx, page = *page](pqxx::connection_base& c) {
          pqxx::read_transaction tx(c);
          const auto rows =
              tx.exec_params("SELECT " + kKeyColumns +
                                 " FROM enrollment_keys WHERE org_id = $1"
                                 " AND ($2 = '' OR id > $2::uuid) ORDER BY id LIMIT $3",
                             ctx.org_id, page.after_id, page.limit + 1);
          json items = json::array();
          for (const auto& r : rows)
            items.push_back(key_json(r));
          return api::json_response(200, api::page_body(std::move(items), page));
        });
      });

  api::add_route(
      router, services, "DELETE", collection + "/{id}", api::Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const std::string id = req.path_params.at("id");
        if (!api::is_uuid(id)) return respond(http::not_found());
        api::db_respond(services, respond, [ctx, id](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto rows = tx.exec_params(
              "UPDATE enrollment_keys SET revoked_at = coalesce(revoked_at, now())"
              " WHERE id = $1 AND org_id = $2 RETURNING id",
              id, ctx.org_id);
          if (rows.empty()) return http::not_found();
          tx.commit();
          return http::Response::empty(204);
        });
      });
}

// ---- enrollment ----

http::Response enroll_refused() {
  // One answer for unknown, used-up, expired and revoked keys: no oracle telling which.
  auto r = http::problem(401, "enrollment-refused", "Unauthorized",
                         "The enrollment key is not valid. Ask an admin for a new one.");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

struct EnrollRequest {
  std::string key, hostname, os, os_version, arch, machine_id, agent_version;
};

void add_enroll_route(http::Router& router, api::Services& services, AgentService& agents) {
  api::add_route(
      router, services, "POST", "/api/v1/agent/enroll", api::Access::kPublic,
      [&services, &agents](http::Request& req, const auth::SessionContext&,
                           http::Responder respond) {
        int retry_after = 1;
        if (!agents.admit_enrollment(req.remote_address, retry_after)) {
          auto r = http::problem(429, "rate-limited", "Too Many Requests",
                                 "This address is enrolling too fast; retry after " +
                                     std::to_string(retry_after) + " s.");
          r.headers.emplace_back("Retry-After", std::to_string(retry_after));
          return respond(std::move(r));
        }
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto field = [&](const char* name, size_t max_len) {
          return api::string_field(*body, name, errors, true, max_len).value_or("");
        };
        EnrollRequest in{
            field("enrollment_key", 200), field("hostname", 255), field("os", 100),
            field("os_version", 100),     field("arch", 32),      field("machine_id", 200),
            field("agent_version", 64)};
        if (!errors.empty()) {
          return respond(http::bad_request("The enrollment request is invalid.", errors));
        }
        auto url = agents.transport_url_for(req.header("host").value_or(""));
        if (!url) {
          auto r = http::problem(503, "no-agent-transport", "Service Unavailable",
                                 "No agent transport is running on this hub, so an enrolled agent "
                                 "could not connect; an operator must enable the transport plugin. "
                                 "The key was not used.");
          r.headers.emplace_back("Retry-After", "30");
          return respond(std::move(r));
        }
        const std::string token = auth::new_token(kDeviceTokenPrefix);
        const std::string key_hash = agents.secret_hash(in.key);
        const std::string token_hash = agents.secret_hash(token);
        const std::string source = req.remote_address;
        const int heartbeat = agents.heartbeat_s();
        api::db_respond(
            services, respond,
            [&agents, in, token, key_hash, token_hash, source, heartbeat,
             url = *url](pqxx::connection_base& c) {
              std::string org, device_id, key_id;
              bool replaced = false;
              {
                pqxx::work tx(c);
                // FOR UPDATE: concurrent enrollments with one key take its uses one at a time.
                const auto key = tx.exec_params(
                    "SELECT id::text, org_id::text, client_id::text, site_id::text,"
                    " device_group_id::text,"
                    " revoked_at IS NULL AND uses_left > 0 AND expires_at > now()"
                    " FROM enrollment_keys WHERE key_hash = $1 FOR UPDATE",
                    pqxx::binarystring(key_hash));
                if (!key.empty()) {
                  key_id = key[0][0].c_str();
                  org = key[0][1].c_str();
                }
                if (!key.empty() && key[0][5].as<bool>()) {
                  const auto device = tx.exec_params(
                      "INSERT INTO devices (org_id, client_id, site_id, device_group_id,"
                      " machine_id, hostname, os, os_version, arch, agent_version, token_hash,"
                      " enrollment_key_id) VALUES ($1, $2, $3, nullif($4, '')::uuid, $5, $6, $7,"
                      " $8, $9, $10,"
                      " $11, $12)"
                      " ON CONFLICT (org_id, machine_id) DO UPDATE SET"
                      " client_id = excluded.client_id, site_id = excluded.site_id,"
                      " device_group_id = excluded.device_group_id, hostname = excluded.hostname,"
                      " os = excluded.os, os_version = excluded.os_version,"
                      " arch = excluded.arch, agent_version = excluded.agent_version,"
                      " token_hash = excluded.token_hash, token_issued_at = now(),"
                      " enrollment_key_id = excluded.enrollment_key_id"
                      " RETURNING id::text, xmax <> 0",
                      org, key[0][2].c_str(), key[0][3].c_str(),
                      key[0][4].is_null() ? "" : key[0][4].c_str(), in.machine_id, in.hostname,
                      in.os, in.os_version, in.arch, in.agent_version,
                      pqxx::binarystring(token_hash), key_id);
                  device_id = device[0][0].c_str();
                  replaced = device[0][1].as<bool>();
                  tx.exec_params(
                      "UPDATE enrollment_keys SET uses_left = uses_left - 1, last_used_at = now()"
                      " WHERE id = $1",
                      key_id);
                  auth::SessionContext nobody;
                  nobody.org_id = org;
                  auto record = secrets::audit_record(nobody, "agent.enroll");
                  record.actor = "agent";
                  record.extra = {{"device_id", device_id},
                                  {"enrollment_key_id", key_id},
                                  {"machine_id", in.machine_id.substr(0, 100)},
                                  {"hostname", in.hostname.substr(0, 100)},
                                  {"replaced", replaced},
                                  {"source", source}};
                  if (!secrets::append_audit(tx, record)) {
                    throw std::runtime_error("enrollment audit record refused");
                  }
                  tx.commit();
                }
              }
              if (device_id.empty()) {
                pqxx::work tx(c);
                auth::SessionContext nobody;
                nobody.org_id = org;
                auto record =
                    secrets::audit_record(nobody, "agent.enroll", vault::AuditOutcome::kDenied);
                record.actor = "anonymous";
                record.reason = "enrollment key unknown, used up, expired or revoked";
                record.extra = {{"enrollment_key_id", key_id}, {"source", source}};
                if (secrets::append_audit(tx, record)) tx.commit();
                return enroll_refused();
              }
              // The old token no longer exists; its connection, if any, must not outlive it.
              if (replaced) agents.revoke_connection(device_id, "re-enrolled: token replaced");
              return api::json_response(201, {{"device_id", device_id},
                                              {"device_token", token},
                                              {"transport_url", url},
                                              {"heartbeat_s", heartbeat}});
            });
      },
      api::AuditMode::kByHandler);
}

// ---- devices ----

const std::string kDeviceColumns =
    "d.id::text, d.hostname, d.os, d.os_version, d.arch, d.agent_version, d.machine_id,"
    " d.client_id::text, c.name, d.site_id::text, s.name, d.device_group_id::text, g.name, " +
    ts("d.last_seen") + ", " + ts("d.created_at") + ", " + ts("d.token_issued_at") +
    ", d.facts::text"
    " FROM devices d JOIN clients c ON c.id = d.client_id JOIN sites s ON s.id = d.site_id"
    " LEFT JOIN device_groups g ON g.id = d.device_group_id";

json device_json(const pqxx::row& r, const AgentService& agents, bool with_facts) {
  json item = {{"id", r[0].c_str()},
               {"hostname", r[1].c_str()},
               {"os", r[2].c_str()},
               {"os_version", r[3].c_str()},
               {"arch", r[4].c_str()},
               {"agent_version", r[5].c_str()},
               {"machine_id", r[6].c_str()},
               {"client_id", r[7].c_str()},
               {"client_name", r[8].c_str()},
               {"site_id", r[9].c_str()},
               {"site_name", r[10].c_str()},
               {"device_group_id", text_or_null(r[11])},
               {"device_group_name", text_or_null(r[12])},
               {"online", agents.is_online(r[0].c_str())},
               {"last_seen", text_or_null(r[13])},
               {"created_at", r[14].c_str()},
               {"enrolled_at", r[15].c_str()}};
  if (with_facts) item["facts"] = json::parse(r[16].c_str(), nullptr, false);
  return item;
}

// A device (or its command) in the caller's organization that the ACL does not let it reach:
// 403, as for any known caller who is not allowed (rest-api.md); other organizations' objects
// stay 404.
http::Response acl_forbidden() {
  return http::problem(403, "forbidden", "Forbidden",
                       "The organization's ACL policy does not let you reach this device.");
}

// The device in the path, if it exists in the caller's organization and the ACL lets the caller
// reach it; otherwise the response to give.
std::variant<pqxx::row, http::Response> find_device(pqxx::work& tx, const auth::SessionContext& ctx,
                                                    const std::string& id) {
  const auto rows = tx.exec_params(
      "SELECT " + kDeviceColumns + " WHERE d.id = $1 AND d.org_id = $2", id, ctx.org_id);
  if (rows.empty()) return http::not_found();
  const auto reach = api::acl_reach(tx, ctx);
  if (!device_visible(reach, rows[0][7].c_str(), rows[0][9].c_str(),
                      rows[0][11].is_null() ? "" : rows[0][11].c_str())) {
    return acl_forbidden();
  }
  return rows[0];
}

void add_device_routes(http::Router& router, api::Services& services, AgentService& agents) {
  const std::string collection = "/api/v1/orgs/{org}/devices";
  api::add_route(
      router, services, "GET", collection, api::Access::kTechnician,
      [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                           http::Responder respond) {
        auto page = api::page_params(req, respond);
        if (!page) return;
        api::db_respond(services, respond, [&agents, ctx, page = *page](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto reach = api::acl_reach(tx, ctx);
          const std::set<std::string, std::less<>> none;
          const auto rows = tx.exec_params(
              "SELECT " + kDeviceColumns +
                  " WHERE d.org_id = $1 AND ($2 = '' OR d.id > $2::uuid)"
                  " AND ($4 OR d.client_id::text = ANY($5::text[])"
                  " OR d.site_id::text = ANY($6::text[])"
                  " OR d.device_group_id::text = ANY($7::text[]))"
                  " ORDER BY d.id LIMIT $3",
              ctx.org_id, page.after_id, page.limit + 1, !reach.has_value(),
              text_array(reach ? reach->clients : none), text_array(reach ? reach->sites : none),
              text_array(reach ? reach->device_groups : none));
          json items = json::array();
          for (const auto& r : rows)
            items.push_back(device_json(r, agents, false));
          return api::json_response(200, api::page_body(std::move(items), page));
        });
      });

  api::add_route(router, services, "GET", collection + "/{id}", api::Access::kTechnician,
                 [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                                      http::Responder respond) {
                   const std::string id = req.path_params.at("id");
                   if (!api::is_uuid(id)) return respond(http::not_found());
                   api::db_respond(services, respond, [&agents, ctx, id](pqxx::connection_base& c) {
                     pqxx::work tx(c);
                     auto found = find_device(tx, ctx, id);
                     if (auto* r = std::get_if<http::Response>(&found)) return *r;
                     return api::json_response(
                         200, device_json(std::get<pqxx::row>(found), agents, true));
                   });
                 });

  api::add_route(router, services, "DELETE", collection + "/{id}", api::Access::kAdmin,
                 [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                                      http::Responder respond) {
                   const std::string id = req.path_params.at("id");
                   if (!api::is_uuid(id)) return respond(http::not_found());
                   api::db_respond(services, respond, [&agents, ctx, id](pqxx::connection_base& c) {
                     pqxx::work tx(c);
                     // The token is a column of the device: deleting the row revokes it, and
                     // the device's commands go with it.
                     const auto rows = tx.exec_params(
                         "DELETE FROM devices WHERE id = $1 AND org_id = $2 RETURNING id", id,
                         ctx.org_id);
                     if (rows.empty()) return http::not_found();
                     tx.commit();
                     agents.revoke_connection(id, "device deleted");
                     return http::Response::empty(204);
                   });
                 });
}

// ---- commands ----

const std::string kCommandColumns = "id::text, device_id::text, kind, args::text, state, " +
                                    ts("deadline") + ", " + ts("created_at") + ", " +
                                    ts("sent_at") + ", " + ts("acked_at") + ", " +
                                    ts("finished_at") + ", result::text, created_by, send_count";

json command_json(const pqxx::row& r) {
  json item = {{"id", r[0].c_str()},
               {"device_id", r[1].c_str()},
               {"kind", r[2].c_str()},
               {"args", json::parse(r[3].c_str(), nullptr, false)},
               {"state", r[4].c_str()},
               {"deadline", r[5].c_str()},
               {"created_at", r[6].c_str()},
               {"sent_at", text_or_null(r[7])},
               {"acked_at", text_or_null(r[8])},
               {"finished_at", text_or_null(r[9])},
               {"created_by", r[11].c_str()},
               {"send_count", r[12].as<int>()}};
  if (!r[10].is_null()) item["result"] = json::parse(r[10].c_str(), nullptr, false);
  return item;
}

// The overdue commands of one device become `expired` on read too, not only at the next sweep.
void expire_overdue(pqxx::work& tx, const std::string& device_id) {
  tx.exec_params(
      "UPDATE device_commands SET state = 'expired', finished_at = now()"
      " WHERE device_id = $1 AND state IN ('queued', 'sent') AND deadline <= now()",
      device_id);
}

// POST .../devices/{id}/commands in one statement: $1 id, $2 org, $3 device, $4 kind, $5 args,
// $6 deadline in seconds, $7 created_by, $8 true when the caller's reach is unlimited, else
// $9-$11 the clients, sites and device groups it reaches (as in the device list).
const std::string kInsertCommand =
    "INSERT INTO device_commands (id, org_id, device_id, kind, args, deadline, created_by)"
    " SELECT $1::uuid, d.org_id, d.id, $4::text, $5::jsonb,"
    " now() + make_interval(secs => $6::integer), $7::text"
    " FROM devices d WHERE d.id = $3::uuid AND d.org_id = $2::uuid"
    " AND ($8::boolean OR d.client_id::text = ANY($9::text[])"
    " OR d.site_id::text = ANY($10::text[]) OR d.device_group_id::text = ANY($11::text[]))"
    " RETURNING " +
    kCommandColumns + ", to_char(deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

// GET .../commands/{id} in one statement ($1 id, $2 org): the command (expired first if it is
// overdue, as the sweep would), then its device's client, site and group for the ACL check.
const std::string kReadCommand =
    "WITH e AS (UPDATE device_commands SET state = 'expired', finished_at = now()"
    " WHERE id = $1::uuid AND org_id = $2::uuid AND state IN ('queued', 'sent')"
    " AND deadline <= now() RETURNING id, state, finished_at)"
    " SELECT c.id::text, c.device_id::text, c.kind, c.args::text, coalesce(e.state, c.state), " +
    ts("c.deadline") + ", " + ts("c.created_at") + ", " + ts("c.sent_at") + ", " +
    ts("c.acked_at") + ", " + ts("coalesce(e.finished_at, c.finished_at)") +
    ", c.result::text, c.created_by, c.send_count,"
    " d.client_id::text, d.site_id::text, d.device_group_id::text"
    " FROM device_commands c JOIN devices d ON d.id = c.device_id LEFT JOIN e ON e.id = c.id"
    " WHERE c.id = $1::uuid AND c.org_id = $2::uuid";

constexpr std::string_view kCommandKinds[] = {"ping", "inventory", "run_script"};

// Checks kind and args the way the agent will read them; empty when the command is valid.
std::vector<http::FieldError> check_command(const std::string& kind, const json& args) {
  std::vector<http::FieldError> errors;
  if (std::find(std::begin(kCommandKinds), std::end(kCommandKinds), kind) ==
      std::end(kCommandKinds)) {
    errors.push_back({"/kind", "must be one of ping, inventory, run_script"});
    return errors;
  }
  if (kind != "run_script") return errors;
  auto interpreter = args.find("interpreter");
  if (interpreter == args.end() || !interpreter->is_string() ||
      interpreter->get<std::string>().empty() || interpreter->get<std::string>().size() > 64 ||
      !std::all_of(interpreter->get_ref<const std::string&>().begin(),
                   interpreter->get_ref<const std::string&>().end(), [](char c) {
                     return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                            c == '-' || c == '+' || c == '/';
                   })) {
    errors.push_back({"/args/interpreter",
                      "is required: the interpreter's name or path (letters, digits, . _ - + /, "
                      "at most 64), one the agent's policy allows"});
  }
  auto script = args.find("script");
  if (script == args.end() || !script->is_string() || script->get<std::string>().empty() ||
      script->get<std::string>().size() > 512 * 1024) {
    errors.push_back({"/args/script", "is required: the script text, 1 byte to 512 KiB"});
  }
  auto timeout = args.find("timeout_s");
  if (timeout == args.end() || !timeout->is_number_integer() || timeout->get<long long>() < 1 ||
      timeout->get<long long>() > 86'400) {
    errors.push_back({"/args/timeout_s", "is required: a whole number of seconds, 1 to 86400"});
  }
  return errors;
}

void add_command_routes(http::Router& router, api::Services& services, AgentService& agents) {
  api::add_route(
      router, services, "POST", "/api/v1/orgs/{org}/devices/{id}/commands",
      api::Access::kTechnician,
      [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                           http::Responder respond) {
        const std::string device_id = req.path_params.at("id");
        auto body = api::json_object_body(req, respond);
        if (!body) return;
        std::vector<http::FieldError> errors;
        auto kind = api::string_field(*body, "kind", errors, true, 64);
        json args = json::object();
        if (auto it = body->find("args"); it != body->end() && !it->is_null()) {
          if (it->is_object()) {
            args = *it;
          } else {
            errors.push_back({"/args", "must be a JSON object"});
          }
        }
        auto it = body->find("deadline_s");
        const bool deadline_ok = it == body->end() || it->is_null() || it->is_number_integer();
        if (!deadline_ok) errors.push_back({"/deadline_s", "must be a whole number of seconds"});
        if (!errors.empty()) return respond(http::bad_request("The command is invalid.", errors));
        auto deadline_s = int_field(*body, "deadline_s", 3600, 1, 7 * 86'400, errors);
        auto semantic = check_command(*kind, args);
        errors.insert(errors.end(), semantic.begin(), semantic.end());
        if (!errors.empty()) return respond(unprocessable("The command cannot be run.", errors));
        if (!api::is_uuid(device_id)) return respond(http::not_found());
        api::db_respond(
            services, respond,
            [&agents, ctx, device_id, kind = *kind, args, deadline_s = *deadline_s,
             org = req.path_params.at("org")](pqxx::connection_base& c) {
              OutboxCommand command{new_uuid_v7(), kind, args.dump(), ""};
              const std::set<std::string, std::less<>> none;
              pqxx::result rows;
              {
                // One statement, committed (durable) before anything is sent: the row is
                // inserted only if the device is in the organization and within the caller's
                // reach (admins: no query for it).
                pqxx::nontransaction tx(c);
                const auto reach = api::acl_reach(tx, ctx);
                rows = storage::exec_prepared(tx, "commands_insert", kInsertCommand, command.id,
                                              ctx.org_id, device_id, kind, command.args_json,
                                              deadline_s, ctx.principal_id, !reach.has_value(),
                                              text_array(reach ? reach->clients : none),
                                              text_array(reach ? reach->sites : none),
                                              text_array(reach ? reach->device_groups : none));
              }
              if (rows.empty()) {
                // Nothing inserted: say why (no such device, or the ACL does not reach it).
                pqxx::work tx(c);
                auto found = find_device(tx, ctx, device_id);
                if (auto* r = std::get_if<http::Response>(&found)) return *r;
                return http::not_found();  // it appeared in between: the caller may retry
              }
              command.deadline = rows[0][13].c_str();
              auto item = command_json(rows[0]);
              if (agents.deliver(c, device_id, {command}) > 0) item["state"] = "sent";
              auto r = api::json_response(202, item);
              r.headers.emplace_back("Location", "/api/v1/orgs/" + org + "/commands/" + command.id);
              return r;
            });
      });

  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/devices/{id}/commands", api::Access::kTechnician,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        const std::string device_id = req.path_params.at("id");
        if (!api::is_uuid(device_id)) return respond(http::not_found());
        auto page = api::page_params(req, respond);
        if (!page) return;
        api::db_respond(
            services, respond, [ctx, device_id, page = *page](pqxx::connection_base& c) {
              pqxx::work tx(c);
              auto found = find_device(tx, ctx, device_id);
              if (auto* r = std::get_if<http::Response>(&found)) return *r;
              expire_overdue(tx, device_id);
              const auto rows =
                  tx.exec_params("SELECT " + kCommandColumns +
                                     " FROM device_commands WHERE device_id = $1"
                                     " AND ($2 = '' OR id > $2::uuid) ORDER BY id LIMIT $3",
                                 device_id, page.after_id, page.limit + 1);
              tx.commit();
              json items = json::array();
              for (const auto& r : rows)
                items.push_back(command_json(r));
              return api::json_response(200, api::page_body(std::move(items), page));
            });
      });

  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/commands/{id}", api::Access::kTechnician,
      [&services, &agents](http::Request& req, const auth::SessionContext& ctx,
                           http::Responder respond) {
        const std::string id = req.path_params.at("id");
        // ?wait_s=N (0-30): answer as soon as the command is done or expired, or after N
        // seconds with its state then; no polling needed to see a result arrive.
        long long wait_s = 0;
        if (auto wait = req.query_param("wait_s")) {
          char* end = nullptr;
          wait_s = std::strtoll(wait->c_str(), &end, 10);
          if (wait->empty() || *end != '\0' || wait_s < 0 || wait_s > 30) {
            return respond(http::bad_request("The query is invalid.",
                                             {{"/wait_s", "must be a whole number from 0 to 30"}}));
          }
        }
        if (!api::is_uuid(id)) return respond(http::not_found());
        // Reads the command; sets `final_state` when there is nothing to wait for (done,
        // expired, or not the caller's to see).
        auto read = [ctx, id](pqxx::connection_base& c, bool& final_state) -> http::Response {
          final_state = true;
          std::optional<identity::Reach> reach;
          pqxx::result rows;
          {
            pqxx::nontransaction tx(c);
            reach = api::acl_reach(tx, ctx);
            rows = storage::exec_prepared(tx, "commands_read", kReadCommand, id, ctx.org_id);
          }
          if (rows.empty()) return http::not_found();
          if (!device_visible(reach, rows[0][13].c_str(), rows[0][14].c_str(),
                              rows[0][15].is_null() ? "" : rows[0][15].c_str())) {
            return acl_forbidden();
          }
          auto item = command_json(rows[0]);
          const auto state = item.value("state", std::string());
          final_state = state == "done" || state == "expired";
          return api::json_response(200, item);
        };
        if (wait_s == 0) {
          return api::db_respond(services, respond, [read](pqxx::connection_base& c) {
            bool final_state = false;
            return read(c, final_state);
          });
        }
        // Whoever answers first (the first read finding a final state, or the waiter on a
        // result, the deadline or shutdown) answers; the waiter is registered before the first
        // read so that a result landing in between is not missed.
        auto answered = std::make_shared<std::atomic<bool>>(false);
        auto answer_now = [&services, respond, read, answered] {
          if (answered->exchange(true)) return;
          api::db_respond(services, respond, [read](pqxx::connection_base& c) {
            bool final_state = false;
            return read(c, final_state);
          });
        };
        const std::uint64_t ticket = agents.wait_for_command(
            id, std::chrono::steady_clock::now() + std::chrono::seconds(wait_s), answer_now);
        auto first = std::make_shared<http::Response>();
        auto final_state = std::make_shared<bool>(false);
        services.pool.submit(
            [read, first, final_state](pqxx::connection_base& c) {
              *first = read(c, *final_state);
            },
            [&agents, id, respond, first, final_state, answered,
             ticket](std::optional<storage::DbError> err) {
              if (!err && !*final_state && ticket != 0) return;  // the waiter answers
              if (ticket != 0) agents.cancel_wait(id, ticket);
              if (answered->exchange(true)) return;
              if (!err) return respond(std::move(*first));
              respond(err->kind == storage::DbErrorKind::kQuery ? http::internal_error()
                                                                : http::database_unavailable());
            });
      });
}

}  // namespace

void add_agent_routes(http::Router& router, api::Services& services, AgentService& agents) {
  add_enrollment_key_routes(router, services, agents);
  add_enroll_route(router, services, agents);
  add_device_routes(router, services, agents);
  add_command_routes(router, services, agents);
  api::add_summaries({
      {"POST /api/v1/orgs/{org}/enrollment-keys",
       "Create an enrollment key pinned to a client and site (the key is shown once)"},
      {"GET /api/v1/orgs/{org}/enrollment-keys",
       "List enrollment keys: uses left, expiry, last use, revoked (never the key)"},
      {"DELETE /api/v1/orgs/{org}/enrollment-keys/{id}", "Revoke an enrollment key"},
      {"POST /api/v1/agent/enroll",
       "An agent exchanges an enrollment key for its device id, device token and transport URL"},
      {"GET /api/v1/orgs/{org}/devices",
       "List enrolled devices the caller may reach, with online state and last_seen"},
      {"GET /api/v1/orgs/{org}/devices/{id}", "One device, with its latest inventory facts"},
      {"DELETE /api/v1/orgs/{org}/devices/{id}",
       "Delete a device: its token stops working and its connection is closed (4001)"},
      {"POST /api/v1/orgs/{org}/devices/{id}/commands",
       "Queue a command (ping, inventory, run_script) in the durable outbox and send it"},
      {"GET /api/v1/orgs/{org}/devices/{id}/commands", "A device's commands, oldest first"},
      {"GET /api/v1/orgs/{org}/commands/{id}",
       "One command: state queued/sent/acked/done/expired and its result; ?wait_s=N (up to 30) "
       "answers as soon as it is done or expired"},
  });
}

}  // namespace helm::agents
