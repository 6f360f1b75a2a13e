// Clients, sites and device groups: named resources inside an organization, one CRUD shape.
#include <pqxx/pqxx>

#include "helm/api/access_routes.hpp"
#include "helm/api/identity_routes.hpp"
#include "helm/http/router.hpp"

namespace helm::api {
namespace {

using nlohmann::json;

struct NamedResource {
  std::string table;
  std::string collection;    ///< route of the list, e.g. /api/v1/orgs/{org}/clients
  std::string id_param;      ///< path parameter of one item
  std::string parent_param;  ///< path parameter of the parent ("" when the org is the parent)
  std::string parent_table;
  std::string parent_column;
  bool optional_placement = false;  ///< device groups: optional client_id / site_id in the body
  std::string noun;
  identity::Resource::Kind kind = identity::Resource::kClient;
};

json row_json(const pqxx::row& r, bool placement) {
  json item = {{"id", r[0].c_str()}, {"name", r[1].c_str()}, {"created_at", r[2].c_str()}};
  if (r.size() > 3) item[r[3].name()] = r[3].is_null() ? json(nullptr) : json(r[3].c_str());
  if (placement && r.size() > 4) {
    item[r[4].name()] = r[4].is_null() ? json(nullptr) : json(r[4].c_str());
  }
  return item;
}

std::string columns(const NamedResource& res) {
  std::string cols =
      "id::text AS id, name, to_char(created_at AT TIME ZONE 'UTC', "
      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at";
  if (!res.parent_column.empty())
    cols += ", " + res.parent_column + "::text AS " + res.parent_column;
  if (res.optional_placement) cols += ", client_id::text AS client_id, site_id::text AS site_id";
  return cols;
}

// The parent named in the path must exist in the caller's organization (404 otherwise).
bool parent_exists(pqxx::work& tx, const NamedResource& res, const std::string& org,
                   const std::string& parent) {
  if (res.parent_param.empty()) return true;
  if (!is_uuid(parent)) return false;
  return !tx.exec_params("SELECT 1 FROM " + res.parent_table + " WHERE id = $1 AND org_id = $2",
                         parent, org)
              .empty();
}

// Validates optional client_id/site_id of a device group against the organization.
std::optional<http::Response> check_placement(pqxx::work& tx, const std::string& org,
                                              const json& body, std::string& client_id,
                                              std::string& site_id) {
  std::vector<http::FieldError> errors;
  for (const auto& [field, table, out] :
       {std::tuple{"client_id", "clients", &client_id}, std::tuple{"site_id", "sites", &site_id}}) {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) continue;
    if (!it->is_string() || !is_uuid(it->get<std::string>())) {
      errors.push_back({std::string("/") + field, "must be an id"});
      continue;
    }
    *out = it->get<std::string>();
    if (tx.exec_params(std::string("SELECT 1 FROM ") + table + " WHERE id = $1 AND org_id = $2",
                       *out, org)
            .empty()) {
      errors.push_back({std::string("/") + field, "names nothing in this organization"});
    }
  }
  if (!client_id.empty() && !site_id.empty() &&
      tx.exec_params("SELECT 1 FROM sites WHERE id = $1 AND client_id = $2", site_id, client_id)
          .empty()) {
    errors.push_back({"/site_id", "does not belong to client_id"});
  }
  if (!errors.empty()) return http::bad_request("The device group's placement is invalid.", errors);
  return std::nullopt;
}

// Runs `work` on the item named in the path, after the checks every item route makes: the id is
// well-formed and the parent in the path belongs to the caller's organization.
void with_item(Services& services, const NamedResource& res, const http::Request& req,
               const auth::SessionContext& ctx, http::Responder respond,
               std::function<http::Response(pqxx::work&, const std::string& id)> work) {
  const std::string id = req.path_params.at(res.id_param);
  const std::string parent = res.parent_param.empty() ? "" : req.path_params.at(res.parent_param);
  if (!is_uuid(id)) return respond(http::not_found());
  db_respond(services, std::move(respond),
             [res, ctx, id, parent, work = std::move(work)](pqxx::connection_base& c) {
               pqxx::work tx(c);
               if (!parent_exists(tx, res, ctx.org_id, parent)) return http::not_found();
               return work(tx, id);
             });
}

void add_resource(http::Router& router, Services& services, const NamedResource& res) {
  const std::string item_route = res.collection + "/{" + res.id_param + "}";

  add_route(
      router, services, "GET", res.collection, Access::kReadonly,
      [&services, res](http::Request& req, const auth::SessionContext& ctx,
                       http::Responder respond) {
        auto page = page_params(req, respond);
        if (!page) return;
        const std::string parent =
            res.parent_param.empty() ? "" : req.path_params.at(res.parent_param);
        db_respond(services, respond, [res, ctx, parent, page = *page](pqxx::connection_base& c) {
          pqxx::work tx(c);
          if (!parent_exists(tx, res, ctx.org_id, parent)) return http::not_found();
          std::string sql = "SELECT " + columns(res) + " FROM " + res.table +
                            " WHERE org_id = $1 AND ($2 = '' OR id > $2::uuid)";
          if (!res.parent_column.empty()) sql += " AND " + res.parent_column + " = $4::uuid";
          sql += " ORDER BY id LIMIT $3";
          const auto rows =
              res.parent_column.empty()
                  ? tx.exec_params(sql, ctx.org_id, page.after_id, page.limit + 1)
                  : tx.exec_params(sql, ctx.org_id, page.after_id, page.limit + 1, parent);
          // Only the page's own rows are filtered by the ACL; the look-ahead row (limit + 1)
          // just says whether there is another page, which starts after the last row read.
          const auto reach = acl_reach(tx, ctx);
          const size_t take = std::min(rows.size(), static_cast<size_t>(page.limit));
          json items = json::array();
          for (size_t i = 0; i < take; ++i) {
            if (reach && !acl_visible(tx, *reach, ctx.org_id, res.kind, rows[i][0].c_str())) {
              continue;
            }
            items.push_back(row_json(rows[i], res.optional_placement));
          }
          json next = rows.size() > take ? json(rows[take - 1][0].c_str()) : json(nullptr);
          return json_response(200, {{"items", std::move(items)}, {"next_cursor", next}});
        });
      });

  add_route(router, services, "POST", res.collection, Access::kAdmin,
            [&services, res](http::Request& req, const auth::SessionContext& ctx,
                             http::Responder respond) {
              auto body = json_object_body(req, respond);
              if (!body) return;
              std::vector<http::FieldError> errors;
              auto name = string_field(*body, "name", errors, true);
              if (!errors.empty()) {
                return respond(http::bad_request("The " + res.noun + " is invalid.", errors));
              }
              const std::string parent =
                  res.parent_param.empty() ? "" : req.path_params.at(res.parent_param);
              db_respond(
                  services, respond,
                  [res, ctx, parent, name = *name, body = *body](pqxx::connection_base& c) {
                    pqxx::work tx(c);
                    if (!parent_exists(tx, res, ctx.org_id, parent)) return http::not_found();
                    pqxx::result rows;
                    if (res.optional_placement) {
                      std::string client_id;
                      std::string site_id;
                      if (auto bad = check_placement(tx, ctx.org_id, body, client_id, site_id)) {
                        return *bad;
                      }
                      rows =
                          tx.exec_params("INSERT INTO " + res.table +
                                             " (org_id, name, client_id, site_id) VALUES ($1, $2,"
                                             " nullif($3, '')::uuid, nullif($4, '')::uuid)"
                                             " RETURNING " +
                                             columns(res),
                                         ctx.org_id, name, client_id, site_id);
                    } else if (!res.parent_column.empty()) {
                      rows = tx.exec_params("INSERT INTO " + res.table + " (org_id, name, " +
                                                res.parent_column +
                                                ") VALUES ($1, $2, $3) RETURNING " + columns(res),
                                            ctx.org_id, name, parent);
                    } else {
                      rows = tx.exec_params("INSERT INTO " + res.table +
                                                " (org_id, name) VALUES ($1, $2) RETURNING " +
                                                columns(res),
                                            ctx.org_id, name);
                    }
                    tx.commit();
                    auto r = json_response(201, row_json(rows[0], res.optional_placement));
                    r.headers.emplace_back("Location", "./" + std::string(rows[0][0].c_str()));
                    return r;
                  });
            });

  add_route(router, services, "GET", item_route, Access::kReadonly,
            [&services, res](http::Request& req, const auth::SessionContext& ctx,
                             http::Responder respond) {
              with_item(services, res, req, ctx, std::move(respond),
                        [res, ctx](pqxx::work& tx, const std::string& id) {
                          const auto rows =
                              tx.exec_params("SELECT " + columns(res) + " FROM " + res.table +
                                                 " WHERE id = $1 AND org_id = $2",
                                             id, ctx.org_id);
                          if (rows.empty()) return http::not_found();
                          // Known but not reachable under the ACL: 403 (rest-api.md); another
                          // organization's object was a 404 above.
                          if (const auto reach = acl_reach(tx, ctx);
                              reach && !acl_visible(tx, *reach, ctx.org_id, res.kind, id)) {
                            return http::problem(403, "forbidden", "Forbidden",
                                                 "The organization's ACL policy does not let you "
                                                 "reach this " +
                                                     res.noun + ".");
                          }
                          return json_response(200, row_json(rows[0], res.optional_placement));
                        });
            });

  add_route(router, services, "PATCH", item_route, Access::kAdmin,
            [&services, res](http::Request& req, const auth::SessionContext& ctx,
                             http::Responder respond) {
              auto body = json_object_body(req, respond);
              if (!body) return;
              std::vector<http::FieldError> errors;
              auto name = string_field(*body, "name", errors, true);
              if (!errors.empty()) {
                return respond(http::bad_request("The " + res.noun + " is invalid.", errors));
              }
              with_item(services, res, req, ctx, std::move(respond),
                        [res, ctx, name = *name](pqxx::work& tx, const std::string& id) {
                          const auto rows = tx.exec_params(
                              "UPDATE " + res.table +
                                  " SET name = $3 WHERE id = $1 AND org_id = $2 RETURNING " +
                                  columns(res),
                              id, ctx.org_id, name);
                          if (rows.empty()) return http::not_found();
                          tx.commit();
                          return json_response(200, row_json(rows[0], res.optional_placement));
                        });
            });

  add_route(router, services, "DELETE", item_route, Access::kAdmin,
            [&services, res](http::Request& req, const auth::SessionContext& ctx,
                             http::Responder respond) {
              with_item(services, res, req, ctx, std::move(respond),
                        [res, ctx](pqxx::work& tx, const std::string& id) {
                          const auto rows = tx.exec_params("DELETE FROM " + res.table +
                                                               " WHERE id = $1 AND org_id = $2"
                                                               " RETURNING id",
                                                           id, ctx.org_id);
                          if (rows.empty()) return http::not_found();
                          tx.commit();
                          return http::Response::empty(204);
                        });
            });
}

}  // namespace

void add_tenancy_routes(http::Router& router, Services& services) {
  add_resource(router, services,
               {.table = "clients",
                .collection = "/api/v1/orgs/{org}/clients",
                .id_param = "client",
                .noun = "client"});
  add_resource(router, services,
               {.table = "sites",
                .collection = "/api/v1/orgs/{org}/clients/{client}/sites",
                .id_param = "site",
                .parent_param = "client",
                .parent_table = "clients",
                .parent_column = "client_id",
                .noun = "site",
                .kind = identity::Resource::kSite});
  add_resource(router, services,
               {.table = "device_groups",
                .collection = "/api/v1/orgs/{org}/device-groups",
                .id_param = "group",
                .optional_placement = true,
                .noun = "device group",
                .kind = identity::Resource::kDeviceGroup});
}

}  // namespace helm::api
