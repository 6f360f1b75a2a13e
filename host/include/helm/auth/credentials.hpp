/// @brief Bearer tokens (random, prefixed, stored only as hashes) and argon2id password hashes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace helm::auth {

/// Token prefixes: they tell a reader (and a secret scanner) what a leaked token is.
inline constexpr std::string_view kSessionTokenPrefix = "hhs_";
inline constexpr std::string_view kServiceTokenPrefix = "hhp_";

/// prefix + base64url of 32 random bytes (256 bits).
std::string new_token(std::string_view prefix);

/// BLAKE2b-256 of the token, as raw bytes: what the database stores and looks up.
std::string token_hash(std::string_view token);

/// Constant-time equality of two equally long byte strings.
bool constant_time_equal(std::string_view a, std::string_view b);

struct PasswordParams {
  uint64_t opslimit = 2;
  uint64_t memlimit_bytes = 64ull << 20;  ///< about 0.25 s per hash on a 2-core machine
};

std::string hash_password(std::string_view password, const PasswordParams& params);
/// True when `password` matches `stored`. Runs the full hash even for an unknown user when
/// given kDummyHash, so both paths take the same time.
bool verify_password(std::string_view stored, std::string_view password);
bool password_needs_rehash(std::string_view stored, const PasswordParams& params);
/// A valid hash of a random password, for equal-time handling of unknown accounts.
const std::string& dummy_password_hash(const PasswordParams& params);

}  // namespace helm::auth
