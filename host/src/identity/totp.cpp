#include "helm/identity/totp.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <array>
#include <cstddef>
#include <limits>
#include <stdexcept>

namespace helm::identity {
namespace {

constexpr std::string_view kBase32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

void ensure_sodium_initialized() {
  // sodium_init() is idempotent and thread-safe; it only fails when no entropy source exists,
  // which leaves nothing sensible to do but stop.
  static const bool initialized = sodium_init() >= 0;
  if (!initialized) throw std::runtime_error("libsodium could not be initialized");
}

/// The 5-bit value of a base32 character (either case), or -1.
int base32_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

bool is_kept_in_uri(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~' || c == '@';
}

void append_percent_encoded(std::string& out, std::string_view text) {
  constexpr std::string_view kHex = "0123456789ABCDEF";
  for (const char c : text) {
    if (is_kept_in_uri(c)) {
      out.push_back(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    }
  }
}

std::uint32_t pow10(int digits) {
  std::uint32_t result = 1;
  for (int i = 0; i < digits; ++i)
    result *= 10;
  return result;
}

/// RFC 4226 section 5.3: HMAC-SHA1 of the big-endian counter, dynamically truncated to 31 bits.
std::uint32_t hotp_truncated(std::span<const std::uint8_t> secret, std::uint64_t counter) {
  std::array<unsigned char, 8> message{};
  for (std::size_t i = 0; i < message.size(); ++i) {
    message[message.size() - 1 - i] = static_cast<unsigned char>(counter >> (8 * i));
  }
  if (secret.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw std::invalid_argument("TOTP secret is too long");
  }
  // OpenSSL wants a non-null key pointer even for an empty key.
  static constexpr unsigned char kNoKey = 0;
  const unsigned char* key = secret.empty() ? &kNoKey : secret.data();
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_length = 0;
  if (HMAC(EVP_sha1(), key, static_cast<int>(secret.size()), message.data(), message.size(),
           mac.data(), &mac_length) == nullptr ||
      mac_length != 20) {
    throw std::runtime_error("OpenSSL could not compute HMAC-SHA1");
  }
  const std::size_t offset = mac[19] & 0x0f;
  return (static_cast<std::uint32_t>(mac[offset] & 0x7f) << 24) |
         (static_cast<std::uint32_t>(mac[offset + 1]) << 16) |
         (static_cast<std::uint32_t>(mac[offset + 2]) << 8) |
         static_cast<std::uint32_t>(mac[offset + 3]);
}

/// Writes `value` as exactly `digits` decimal digits into `out`.
void write_digits(std::uint32_t value, int digits, char* out) {
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

std::string generate_totp_secret() {
  ensure_sodium_initialized();
  std::array<std::uint8_t, kTotpSecretBytes> secret{};
  randombytes_buf(secret.data(), secret.size());
  std::string encoded = base32_encode(secret);
  sodium_memzero(secret.data(), secret.size());
  return encoded;
}

std::string base32_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const std::uint8_t byte : bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kBase32Alphabet[(buffer >> bits) & 0x1f]);
    }
  }
  if (bits > 0) out.push_back(kBase32Alphabet[(buffer << (5 - bits)) & 0x1f]);
  return out;
}

Expected<std::vector<std::uint8_t>> base32_decode(std::string_view text) {
  std::vector<std::uint8_t> out;
  out.reserve(text.size() * 5 / 8);
  std::uint32_t buffer = 0;
  int bits = 0;
  std::size_t symbols = 0;
  bool padding_seen = false;
  for (const char c : text) {
    if (c == ' ') continue;
    if (c == '=') {
      padding_seen = true;
      continue;
    }
    if (padding_seen) {
      return Error{"base32 text has characters after its '=' padding; padding may only end it"};
    }
    const int value = base32_value(c);
    if (value < 0) {
      const bool printable = c > ' ' && c < 0x7f;
      return Error{std::string("base32 text contains '") + (printable ? std::string(1, c) : "?") +
                   "', which is not a base32 character; use only the letters A-Z and digits 2-7"};
    }
    ++symbols;
    buffer = (buffer << 5) | static_cast<std::uint32_t>(value);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(buffer >> bits));
    }
  }
  switch (symbols % 8) {
    case 1:
    case 3:
    case 6:
      return Error{"base32 text is " + std::to_string(symbols) +
                   " characters long, which no encoder produces; it was probably cut short or "
                   "mistyped"};
    default:
      return out;
  }
}

std::string otpauth_uri(std::string_view issuer, std::string_view account,
                        std::string_view secret_base32) {
  std::string uri = "otpauth://totp/";
  append_percent_encoded(uri, issuer);
  uri += ':';
  append_percent_encoded(uri, account);
  uri += "?secret=";
  append_percent_encoded(uri, secret_base32);
  uri += "&issuer=";
  append_percent_encoded(uri, issuer);
  uri += "&algorithm=SHA1&digits=6&period=30";
  return uri;
}

std::string hotp_code(std::span<const std::uint8_t> secret, std::uint64_t counter, int digits) {
  if (digits < 6 || digits > 8) {
    throw std::invalid_argument("HOTP codes have 6, 7 or 8 digits, not " + std::to_string(digits));
  }
  std::string code(static_cast<std::size_t>(digits), '0');
  write_digits(hotp_truncated(secret, counter) % pow10(digits), digits, code.data());
  return code;
}

std::int64_t totp_step(std::int64_t unix_time) {
  std::int64_t step = unix_time / kTotpPeriodSeconds;
  if (unix_time % kTotpPeriodSeconds < 0) --step;  // floor, not truncation, before 1970
  return step;
}

std::string totp_code(std::span<const std::uint8_t> secret, std::int64_t unix_time) {
  return hotp_code(secret, static_cast<std::uint64_t>(totp_step(unix_time)), kTotpDigits);
}

std::optional<std::int64_t> verify_totp(std::span<const std::uint8_t> secret, std::string_view code,
                                        std::int64_t unix_time, std::int64_t last_accepted_step,
                                        int window) {
  if (window < 0) {
    throw std::invalid_argument("TOTP window must not be negative, got " + std::to_string(window));
  }
  if (code.size() != static_cast<std::size_t>(kTotpDigits)) return std::nullopt;
  for (const char c : code) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  const std::int64_t now = totp_step(unix_time);
  std::optional<std::int64_t> accepted;
  // Every candidate is computed and compared, so timing does not reveal which step matched.
  for (std::int64_t step = now - window; step <= now + window; ++step) {
    std::array<char, kTotpDigits> expected{};
    write_digits(hotp_truncated(secret, static_cast<std::uint64_t>(step)) % pow10(kTotpDigits),
                 kTotpDigits, expected.data());
    const bool matches = sodium_memcmp(expected.data(), code.data(), expected.size()) == 0;
    // The earliest unused matching step wins, so a rare collision burns as few steps as possible.
    if (matches && step > last_accepted_step && !accepted) accepted = step;
  }
  return accepted;
}

}  // namespace helm::identity
