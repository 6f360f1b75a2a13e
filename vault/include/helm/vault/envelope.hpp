/// @brief Envelope encryption: data keys wrapped by the master key, secrets sealed by data keys.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "helm/vault/bytes.hpp"
#include "helm/vault/data_key.hpp"
#include "helm/vault/master_key.hpp"
#include "helm/vault/result.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace helm::vault {

/// Current format of WrappedDataKey and SealedSecret; bound into the additional data.
inline constexpr int kWrapFormatVersion = 1;
inline constexpr int kSealFormatVersion = 1;
/// XChaCha20-Poly1305-IETF nonce and tag sizes.
inline constexpr std::size_t kNonceBytes = 24;
inline constexpr std::size_t kAeadTagBytes = 16;
/// Largest secret value accepted by seal_secret (PEM chains and long tokens fit comfortably).
inline constexpr std::size_t kMaxSecretBytes = std::size_t{64} * 1024;

/// One organization's data key, encrypted under the master key's wrapping key. Every field is
/// safe to store as-is; the organization id is stored beside it (it is bound, not embedded).
struct WrappedDataKey {
  int format = kWrapFormatVersion;
  int key_version = 0;        // the DataKey's version
  std::string master_key_id;  // MasterKey::check_value() of the wrapping key
  Bytes nonce;                // kNonceBytes random bytes
  Bytes ciphertext;           // kDataKeyBytes + kAeadTagBytes
};

/// One version of one secret, encrypted under its organization's data key. The organization id
/// and secret name are stored beside it and bound through the additional data.
struct SealedSecret {
  int format = kSealFormatVersion;
  int version = 0;           // the secret's version number, from 1
  int data_key_version = 0;  // which data key sealed it
  Bytes nonce;               // kNonceBytes random bytes
  Bytes ciphertext;          // plaintext length + kAeadTagBytes
};

/// Additional data of a wrapped data key: CanonicalEncoder fields
/// ("helm-vault/data-key", u32 format, org_id, u32 key_version, master_key_id).
Bytes data_key_additional_data(int format, std::string_view org_id, int key_version,
                               std::string_view master_key_id);

/// Additional data of a sealed secret: CanonicalEncoder fields
/// ("helm-vault/secret", u32 format, org_id, secret_name, u32 secret_version,
///  u32 data_key_version). A ciphertext moved to another organization, name, version or data-key
/// version therefore fails to open.
Bytes secret_additional_data(int format, std::string_view org_id, std::string_view secret_name,
                             int secret_version, int data_key_version);

/// Wraps `data_key` for organization `org_id` under `master_key`, with a fresh random nonce.
Result<WrappedDataKey> wrap_data_key(const MasterKey& master_key, std::string_view org_id,
                                     const DataKey& data_key);

/// Unwraps a data key. kWrongMasterKey (before any decryption) if `wrapped.master_key_id` names
/// another key; kAuthenticationFailed if anything stored, or the organization, was altered.
Result<DataKey> unwrap_data_key(const MasterKey& master_key, std::string_view org_id,
                                const WrappedDataKey& wrapped);

/// Seals one version (>= 1) of secret `secret_name` of `org_id` under `data_key`, with a fresh
/// random nonce. `plaintext` must hold 1..kMaxSecretBytes bytes.
Result<SealedSecret> seal_secret(const DataKey& data_key, std::string_view org_id,
                                 std::string_view secret_name, int version, ByteView plaintext);

/// Opens a sealed secret into secure memory. kDataKeyVersionMismatch if `data_key` is not the
/// version recorded in `sealed`; kAuthenticationFailed if the ciphertext, nonce or any bound
/// field (organization, name, version, data-key version) differs from when it was sealed.
Result<SecureBuffer> open_secret(const DataKey& data_key, std::string_view org_id,
                                 std::string_view secret_name, const SealedSecret& sealed);

/// Master-key rotation: unwraps with `old_key` and wraps the same data key (same version) under
/// `new_key` with a fresh nonce. Secrets are untouched.
Result<WrappedDataKey> rewrap_data_key(const MasterKey& old_key, const MasterKey& new_key,
                                       std::string_view org_id, const WrappedDataKey& wrapped);

/// Data-key rotation: opens with `old_key` and seals the same value and secret version under
/// `new_key` (whose version must differ) with a fresh nonce.
Result<SealedSecret> reseal_secret(const DataKey& old_key, const DataKey& new_key,
                                   std::string_view org_id, std::string_view secret_name,
                                   const SealedSecret& sealed);

}  // namespace helm::vault
