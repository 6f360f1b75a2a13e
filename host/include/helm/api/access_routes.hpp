/// @brief Routes for the second factor (TOTP enrollment) and the organization's ACL policy, and
/// the ACL view that list and get routes use to hide what a technician may not reach.
#pragma once

#include <optional>

#include "helm/api/api.hpp"
#include "helm/identity/acl_policy.hpp"

namespace pqxx {
class dbtransaction;
class transaction_base;
}

namespace helm::api {

void add_access_routes(http::Router& router, Services& services);

/// What the caller may reach: nullopt when unrestricted (owners and admins), otherwise the
/// organization's ACL policy's reach for this technician (nothing when there is no policy).
std::optional<identity::Reach> acl_reach(pqxx::transaction_base& tx,
                                         const auth::SessionContext& ctx);

/// Whether `reach` lets the caller see a tenancy object: a client directly or through a site or
/// group under it; a site or group when the policy covers it.
bool acl_visible(pqxx::dbtransaction& tx, const identity::Reach& reach, const std::string& org_id,
                 identity::Resource::Kind kind, const std::string& id);

}  // namespace helm::api
