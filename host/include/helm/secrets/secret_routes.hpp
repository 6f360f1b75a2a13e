/// @brief REST routes of organization secrets: PUT (write-only), GET (names and versions, never
/// values) and DELETE under /api/v1/orgs/{org}/secrets.
#pragma once

#include "helm/api/api.hpp"

namespace helm::secrets {

class SecretService;

/// Registers the secret routes. They serve through the SecretService bound to `services` (see
/// SecretServiceBinding) and answer 503 while none is.
void add_secret_routes(http::Router& router, api::Services& services);

/// Binds `service` to the routes registered with `services` for the binding's lifetime. The
/// route table is built where no vault exists (the OpenAPI document, tests), so the service is
/// attached by the hub after it has loaded the master key.
class SecretServiceBinding {
 public:
  SecretServiceBinding(api::Services& services, SecretService& service);
  ~SecretServiceBinding();
  SecretServiceBinding(const SecretServiceBinding&) = delete;
  SecretServiceBinding& operator=(const SecretServiceBinding&) = delete;

 private:
  api::Services& services_;
};

}  // namespace helm::secrets
