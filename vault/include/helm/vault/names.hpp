/// @brief Validation of organization ids and secret names, and matching of manifest secret globs.
#pragma once

#include <cstddef>
#include <string_view>

namespace helm::vault {

inline constexpr std::size_t kMaxOrgIdLength = 63;
inline constexpr std::size_t kMaxSecretNameLength = 128;

/// An organization id is a DNS-label-like token: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, i.e. 1 to
/// 63 lower-case letters, digits and hyphens, starting and ending with a letter or digit. A
/// lower-case canonical UUID ("3f2a...-...") is valid. Upper case is rejected rather than folded,
/// so one organization never has two spellings.
bool is_valid_org_id(std::string_view org_id) noexcept;

/// A secret name matches `[a-z0-9][a-z0-9._/-]{0,127}` and, read as '/'-separated segments, has
/// no empty segment ("//" or a trailing "/") and no "." or ".." segment. Examples:
/// "halopsa/api-key", "cipp/tenant.a/refresh-token".
bool is_valid_secret_name(std::string_view name) noexcept;

/// A secret glob, as declared in a plugin manifest: 1..128 characters of `[a-z0-9._/-*?]`, with
/// no run of three or more '*'.
bool is_valid_secret_glob(std::string_view pattern) noexcept;

/// Whether `name` matches `pattern` in full. `?` matches one character other than '/', `*` any
/// run (possibly empty) of characters other than '/', `**` any run including '/'; every other
/// character matches itself. So "halopsa/*" matches "halopsa/api-key" but not "halopsa/a/b" or
/// "halopsa", and "halopsa/**" matches both "halopsa/api-key" and "halopsa/a/b". Returns false
/// for an invalid pattern or name.
bool glob_match(std::string_view pattern, std::string_view name);

}  // namespace helm::vault
