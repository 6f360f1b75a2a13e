#include "helm/auth/credentials.hpp"

#include <sodium.h>

#include <mutex>
#include <stdexcept>

namespace helm::auth {
namespace {
void init_sodium() {
  static const int rc = sodium_init();
  if (rc < 0) throw std::runtime_error("libsodium failed to initialize");
}
}  // namespace

std::string new_token(std::string_view prefix) {
  init_sodium();
  unsigned char raw[32];
  randombytes_buf(raw, sizeof raw);
  char encoded[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(encoded, sizeof encoded, raw, sizeof raw,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  return std::string(prefix) + encoded;
}

std::string token_hash(std::string_view token) {
  init_sodium();
  std::string out(32, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(token.data()), token.size(), nullptr,
                     0);
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hash_password(std::string_view password, const PasswordParams& params) {
  init_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.opslimit,
                            params.memlimit_bytes, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("password hashing ran out of memory");
  }
  return out;
}

bool verify_password(std::string_view stored, std::string_view password) {
  init_sodium();
  const std::string s(stored);
  return crypto_pwhash_str_verify(s.c_str(), password.data(), password.size()) == 0;
}

bool password_needs_rehash(std::string_view stored, const PasswordParams& params) {
  init_sodium();
  const std::string s(stored);
  return crypto_pwhash_str_needs_rehash(s.c_str(), params.opslimit, params.memlimit_bytes) != 0;
}

const std::string& dummy_password_hash(const PasswordParams& params) {
  static std::once_flag once;
  static std::string hash;
  std::call_once(once, [&] { hash = hash_password(new_token(""), params); });
  return hash;
}

}  // namespace helm::auth
