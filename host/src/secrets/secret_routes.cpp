#include "helm/secrets/secret_routes.hpp"

#include <sodium.h>

#include <map>
#include <mutex>
#include <pqxx/pqxx>

#include "helm/http/router.hpp"
#include "helm/log/logger.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/vault/names.hpp"

namespace helm::secrets {
namespace {

using nlohmann::json;

std::mutex& bindings_mutex() {
  static std::mutex m;
  return m;
}
std::map<const api::Services*, SecretService*>& bindings() {
  static std::map<const api::Services*, SecretService*> b;
  return b;
}

SecretService* bound(const api::Services& services) {
  std::lock_guard lock(bindings_mutex());
  auto it = bindings().find(&services);
  return it == bindings().end() ? nullptr : it->second;
}

http::Response vault_unavailable() {
  return http::problem(503, "vault-unavailable", "Service Unavailable",
                       "The vault is not ready on this hub.");
}

// The secret name from the rest of the path, percent-decoded (so %2F works like '/') and
// validated before it is used anywhere.
std::optional<std::string> secret_name(const http::Request& req, const http::Responder& respond) {
  const auto raw = req.path_params.find("name");
  std::optional<std::string> name;
  if (raw != req.path_params.end()) name = http::percent_decode(raw->second);
  if (!name || !vault::is_valid_secret_name(*name)) {
    respond(http::bad_request(
        "Invalid secret name.",
        {{"name",
          "must be 1-128 characters of a-z, 0-9, '.', '_', '-' and '/', start with a letter or "
          "digit, and have no empty, '.' or '..' segment"}}));
    return std::nullopt;
  }
  return name;
}

// Wipes a string that held a secret value before its memory is freed.
void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

}  // namespace

SecretServiceBinding::SecretServiceBinding(api::Services& services, SecretService& service)
    : services_(services) {
  std::lock_guard lock(bindings_mutex());
  bindings()[&services] = &service;
}

SecretServiceBinding::~SecretServiceBinding() {
  std::lock_guard lock(bindings_mutex());
  bindings().erase(&services_);
}

void add_secret_routes(http::Router& router, api::Services& services) {
  api::add_route(
      router, services, "PUT", "/api/v1/orgs/{org}/secrets/{name...}", api::Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto* vault_service = bound(services);
        if (vault_service == nullptr) return respond(vault_unavailable());
        auto name = secret_name(req, respond);
        if (!name) return;
        auto body = nlohmann::json::parse(req.body, nullptr, false);
        wipe(req.body);
        if (body.is_discarded() || !body.is_object()) {
          return respond(http::bad_request("The request body must be a JSON object {\"value\"}."));
        }
        auto it = body.find("value");
        if (it == body.end() || !it->is_string()) {
          return respond(http::bad_request("Invalid secret.", {{"/value", "must be a string"}}));
        }
        auto& text = it->get_ref<std::string&>();
        if (text.empty() || text.size() > vault::kMaxSecretBytes) {
          wipe(text);
          return respond(http::bad_request(
              "Invalid secret.",
              {{"/value", "must be 1 to " + std::to_string(vault::kMaxSecretBytes) + " bytes"}}));
        }
        auto value = std::make_shared<vault::SecureBuffer>(vault::SecureBuffer::copy_of(
            vault::ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
        wipe(text);
        const std::string org = req.path_params.at("org");
        api::db_respond(
            services, respond,
            [vault_service, value, ctx, org, name = *name](pqxx::connection_base& c) {
              pqxx::work tx(c);
              auto version = vault_service->put(tx, ctx, org, name, value->view());
              if (!version) {
                log::error("storing a secret failed",
                           {{"org_id", org}, {"secret", name}, {"error", version.error().message}});
                return http::internal_error();
              }
              tx.commit();
              log::info("secret stored", {{"org_id", org},
                                          {"secret", name},
                                          {"version", *version},
                                          {"actor", ctx.principal_id}});
              return http::Response::empty(204);
            });
      },
      api::AuditMode::kByHandler);  // the handler records the change in its own transaction

  api::add_route(
      router, services, "GET", "/api/v1/orgs/{org}/secrets", api::Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext&, http::Responder respond) {
        auto* vault_service = bound(services);
        if (vault_service == nullptr) return respond(vault_unavailable());
        int limit = 50;
        if (auto l = req.query_param("limit")) {
          try {
            size_t used = 0;
            limit = std::stoi(*l, &used);
            if (used != l->size() || limit < 1 || limit > 500) throw std::out_of_range("limit");
          } catch (...) {
            return respond(http::bad_request("Invalid query parameter.",
                                             {{"limit", "must be a whole number from 1 to 500"}}));
          }
        }
        std::string after;
        if (auto cursor = req.query_param("cursor"); cursor && !cursor->empty()) {
          if (!vault::is_valid_secret_name(*cursor)) {
            return respond(http::bad_request("Invalid query parameter.",
                                             {{"cursor", "is not a cursor this API returned"}}));
          }
          after = *cursor;
        }
        const std::string org = req.path_params.at("org");
        api::db_respond(
            services, respond, [vault_service, org, after, limit](pqxx::connection_base& c) {
              pqxx::read_transaction tx(c);
              auto items = vault_service->list(tx, org, after, limit + 1);
              json next = nullptr;
              if (static_cast<int>(items.size()) > limit) {
                items.pop_back();
                next = items.back().name;
              }
              json out = json::array();
              for (const auto& s : items) {
                json versions = json::array();
                for (const auto& [v, at] : s.versions)
                  versions.push_back({{"version", v}, {"created_at", at}});
                out.push_back({{"name", s.name},
                               {"version", s.version},
                               {"versions", versions},
                               {"updated_at", s.updated_at}});
              }
              return api::json_response(200, {{"items", std::move(out)}, {"next_cursor", next}});
            });
      });

  api::add_route(
      router, services, "DELETE", "/api/v1/orgs/{org}/secrets/{name...}", api::Access::kAdmin,
      [&services](http::Request& req, const auth::SessionContext& ctx, http::Responder respond) {
        auto* vault_service = bound(services);
        if (vault_service == nullptr) return respond(vault_unavailable());
        auto name = secret_name(req, respond);
        if (!name) return;
        const std::string org = req.path_params.at("org");
        api::db_respond(
            services, respond, [vault_service, ctx, org, name = *name](pqxx::connection_base& c) {
              pqxx::work tx(c);
              auto deleted = vault_service->remove(tx, ctx, org, name);
              if (!deleted) {
                log::error("deleting a secret failed", {{"error", deleted.error().message}});
                return http::internal_error();
              }
              if (*deleted == 0) return http::not_found("No such secret.");
              tx.commit();
              log::info("secret deleted", {{"org_id", org},
                                           {"secret", name},
                                           {"versions", *deleted},
                                           {"actor", ctx.principal_id}});
              return http::Response::empty(204);
            });
      },
      api::AuditMode::kByHandler);  // the handler records the change in its own transaction
}

}  // namespace helm::secrets
