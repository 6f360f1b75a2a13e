/// @brief Time-based one-time passwords for technician sign-in: RFC 6238 TOTP over RFC 4226 HOTP
/// with HMAC-SHA1, 6 digits and a 30 s step, as every authenticator app understands them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "helm/core/expected.hpp"

namespace helm::identity {

inline constexpr int kTotpDigits = 6;
inline constexpr std::int64_t kTotpPeriodSeconds = 30;
inline constexpr std::size_t kTotpSecretBytes = 20;

/// A fresh secret: 20 bytes from libsodium's CSPRNG, base32-encoded (32 characters, upper case,
/// no padding) as authenticator apps expect it. Store it encrypted; it is as sensitive as a
/// password.
std::string generate_totp_secret();

/// RFC 4648 base32, upper case, without padding.
std::string base32_encode(std::span<const std::uint8_t> bytes);

/// Decodes RFC 4648 base32 as people type it: lower case, spaces and trailing '=' padding are
/// accepted. Fails on any other character, on padding before the end, and on a length no encoder
/// produces (1, 3 or 6 characters past a multiple of 8). Bits left over in the last character are
/// ignored, as authenticator apps do.
Expected<std::vector<std::uint8_t>> base32_decode(std::string_view text);

/// The provisioning URI shown as a QR code:
/// `otpauth://totp/<issuer>:<account>?secret=<secret>&issuer=<issuer>&algorithm=SHA1&digits=6&period=30`
/// with issuer and account percent-encoded (everything but RFC 3986 unreserved characters and '@',
/// so a ':' in either cannot split the label).
std::string otpauth_uri(std::string_view issuer, std::string_view account,
                        std::string_view secret_base32);

/// The RFC 4226 HOTP value for `counter`, zero-padded to `digits` characters. `digits` must be 6,
/// 7 or 8 (throws std::invalid_argument otherwise: that is a programming error).
std::string hotp_code(std::span<const std::uint8_t> secret, std::uint64_t counter,
                      int digits = kTotpDigits);

/// The RFC 6238 time step containing `unix_time`: floor(unix_time / 30).
std::int64_t totp_step(std::int64_t unix_time);

/// The 6-digit code an authenticator shows at `unix_time`.
std::string totp_code(std::span<const std::uint8_t> secret, std::int64_t unix_time);

/// Checks a code typed by the user against the steps totp_step(unix_time) - window through
/// totp_step(unix_time) + window (clock drift either way). Returns the matched step only if it is
/// greater than `last_accepted_step`; the caller must store that step as the new
/// `last_accepted_step`, so each code signs in once (RFC 6238 section 5.2). Codes that are not
/// exactly six ASCII digits are refused; every candidate is compared in constant time. Pass
/// INT64_MIN as `last_accepted_step` when no code was accepted yet. `window` must be >= 0 (throws
/// std::invalid_argument otherwise).
std::optional<std::int64_t> verify_totp(std::span<const std::uint8_t> secret, std::string_view code,
                                        std::int64_t unix_time, std::int64_t last_accepted_step,
                                        int window = 1);

}  // namespace helm::identity
