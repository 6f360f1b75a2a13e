/// @brief Who is calling: the context every request, plugin call and vault release carries.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace helm::auth {

/// Ordered: a higher role may do everything a lower one may.
enum class Role { kReadonly = 0, kTechnician = 1, kAdmin = 2, kOwner = 3 };

std::optional<Role> parse_role(std::string_view text);
std::string_view role_name(Role role);

enum class PrincipalKind { kTechnician, kServicePrincipal };

struct SessionContext {
  std::string session_id;  ///< sessions.id, or the service principal's id
  PrincipalKind kind = PrincipalKind::kTechnician;
  std::string principal_id;  ///< technician id or service principal id
  std::string email;         ///< technician email, or the service principal's name
  std::string org_id;
  Role role = Role::kReadonly;
  bool org_is_operator = false;  ///< the hub operators' organization
  bool totp_pending = false;     ///< must enroll TOTP before doing anything else
  std::chrono::system_clock::time_point expires_at;

  bool at_least(Role r) const { return static_cast<int>(role) >= static_cast<int>(r); }
};

}  // namespace helm::auth
