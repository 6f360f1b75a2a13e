/// @brief DataKey: one organization's versioned data-encryption key, held in secure memory.
#pragma once

#include <cstddef>
#include <utility>

#include "helm/vault/bytes.hpp"
#include "helm/vault/result.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace helm::vault {

inline constexpr std::size_t kDataKeyBytes = 32;

/// A 32-byte XChaCha20-Poly1305 key that seals one organization's secrets. It is stored only
/// wrapped by the master key (see envelope.hpp). `version` starts at 1 and grows by one on each
/// data-key rotation; it is bound into every wrap and every sealed secret.
class DataKey {
 public:
  /// A fresh random key; kInvalidArgument if `version` < 1.
  static Result<DataKey> generate(int version);
  /// A key from exactly 32 bytes; kInvalidArgument on a bad version or length.
  static Result<DataKey> from_bytes(int version, ByteView key);
  /// Takes ownership of `key` (exactly 32 bytes) without copying it.
  static Result<DataKey> adopt(int version, SecureBuffer key);

  int version() const noexcept { return version_; }
  /// The key bytes, for the envelope functions only.
  ByteView bytes() const noexcept { return key_.view(); }

 private:
  DataKey(int version, SecureBuffer key) noexcept : version_(version), key_(std::move(key)) {}

  int version_;
  SecureBuffer key_;
};

}  // namespace helm::vault
