/// @brief REST routes of identity and tenancy: login/logout/me, sessions, TOTP, organizations,
/// clients, sites, device groups, technicians, service principals and the ACL policy.
#pragma once

#include "helm/api/api.hpp"

namespace helm::api {

void add_identity_routes(http::Router& router, Services& services);
void add_tenancy_routes(http::Router& router, Services& services);

}  // namespace helm::api
