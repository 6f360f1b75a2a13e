#include "helm/vault/data_key.hpp"

#include <sodium.h>

#include <string>
#include <utility>

namespace helm::vault {

static_assert(kDataKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

namespace {

Result<void> check_version(int version) {
  if (version < 1) {
    return make_error(VaultErrorCode::kInvalidArgument,
                      "data key versions start at 1, got " + std::to_string(version));
  }
  return {};
}

}  // namespace

Result<DataKey> DataKey::generate(int version) {
  if (auto ok = check_version(version); !ok) {
    return std::move(ok).error();
  }
  SecureBuffer key(kDataKeyBytes);
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  return DataKey(version, std::move(key));
}

Result<DataKey> DataKey::from_bytes(int version, ByteView key) {
  if (auto ok = check_version(version); !ok) {
    return std::move(ok).error();
  }
  if (key.size() != kDataKeyBytes) {
    return make_error(VaultErrorCode::kInvalidArgument,
                      "a data key must be exactly 32 bytes, got " + std::to_string(key.size()));
  }
  return DataKey(version, SecureBuffer::copy_of(key));
}

Result<DataKey> DataKey::adopt(int version, SecureBuffer key) {
  if (auto ok = check_version(version); !ok) {
    return std::move(ok).error();
  }
  if (key.size() != kDataKeyBytes) {
    return make_error(VaultErrorCode::kInvalidArgument,
                      "a data key must be exactly 32 bytes, got " + std::to_string(key.size()));
  }
  return DataKey(version, std::move(key));
}

}  // namespace helm::vault
