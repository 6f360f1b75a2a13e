/// @brief MasterKey: the key-encryption key, loaded from a 0600 key file or the environment.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "helm/vault/bytes.hpp"
#include "helm/vault/result.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace helm::vault {

inline constexpr std::size_t kMasterKeyBytes = 32;
inline constexpr std::string_view kMasterKeyEnvVar = "HELM_MASTER_KEY";
/// Length of check_value(): 16 bytes as lower-case hex.
inline constexpr std::size_t kCheckValueHexChars = 32;

/// The master key (KEK). It wraps the per-organization data keys and never touches the database.
///
/// The raw 32 bytes are used only to derive, with keyed BLAKE2b over fixed context strings:
///  - the wrapping key, BLAKE2b-256(key = KEK, "helm-vault/master-key/wrap/v1"), which is the
///    XChaCha20-Poly1305 key that wraps data keys; and
///  - the key check value, the first 16 bytes of
///    BLAKE2b-256(key = KEK, "helm-vault/master-key/check-value/v1"), as hex.
/// Keeping the two uses apart means the published check value is unrelated to the AEAD key. The
/// check value is a PRF output on a fixed input, so it reveals nothing about the key beyond
/// letting a 256-bit guess be confirmed; store it beside the wrapped keys and compare it on
/// start-up, so a wrong master key is reported before any decryption is attempted.
class MasterKey {
 public:
  /// Loads a key file holding exactly 32 raw bytes, or 64 hex characters optionally followed by
  /// "\n" or "\r\n". Refuses a file that is not a regular file or whose mode grants anything to
  /// group or others (`st_mode & 077`); the error names the file and the `chmod 600` fix.
  static Result<MasterKey> from_file(const std::filesystem::path& path);

  /// Loads the key from an environment variable holding 64 hex characters or the standard base64
  /// (with or without padding) of 32 bytes. The variable's value stays in the process
  /// environment; callers that care should unset it after loading.
  static Result<MasterKey> from_env(std::string_view variable = kMasterKeyEnvVar);

  /// Creates `path` with O_CREAT|O_EXCL and mode 0600, writes a fresh random key as 64 hex
  /// characters and a newline, fsyncs the file and its directory, and returns the key. Never
  /// overwrites an existing file (or follows a symlink). For development only: the caller must
  /// log a loud warning that a generated key is in use and where it lives.
  static Result<MasterKey> generate_dev_key(const std::filesystem::path& path);

  /// A fresh random key held only in memory (tests, benchmarks, rotation tooling).
  static MasterKey generate();

  /// A key from exactly 32 bytes, which must not be all zeros.
  static Result<MasterKey> from_bytes(ByteView key);

  /// 32 lower-case hex characters identifying this key; safe to store and log.
  const std::string& check_value() const noexcept { return check_value_; }

  /// Succeeds if `expected` (a stored check value) names this key; otherwise kWrongMasterKey with
  /// both check values in the message.
  Result<void> verify_check_value(std::string_view expected) const;

  /// The derived AEAD key used to wrap data keys. For the envelope functions only.
  ByteView wrapping_key() const noexcept { return wrapping_key_.view(); }

 private:
  explicit MasterKey(const SecureBuffer& raw_key);

  SecureBuffer wrapping_key_;
  std::string check_value_;
};

}  // namespace helm::vault
