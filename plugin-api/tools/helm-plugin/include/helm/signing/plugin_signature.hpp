/// @brief Ed25519 publisher keys and detached plugin signatures over manifest.json and the
/// plugin library; shared by the `helm-plugin` tool and the hub's plugin loader.
///
/// What is signed (domain-separated, every field length-prefixed with a 64-bit big-endian
/// length):
///
///     len || "helm-plugin-signature-v1" || len || SHA-256(manifest.json bytes)
///                                       || len || SHA-256(library bytes)
///
/// Files:
///   - public key   PREFIX.pub  "helm-ed25519:" + base64(32-byte public key) + "\n"
///   - secret key   PREFIX.key  "helm-ed25519-secret:" + base64(32-byte seed) + "\n", mode 0600
///   - signature    signature   JSON {"format", "key_id", "public_key", "manifest_sha256",
///                              "library_sha256", "signature"}; the hashes are informational
///                              (they let a failure say which file changed), the signature is
///                              always checked against hashes of the files as they are now.
///
/// A key id is the first 8 bytes of SHA-256(public key) in lower-case hex (16 characters).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace helm::signing {

inline constexpr std::string_view kSignatureDomain = "helm-plugin-signature-v1";
inline constexpr std::string_view kPublicKeyPrefix = "helm-ed25519:";
inline constexpr std::string_view kSecretKeyPrefix = "helm-ed25519-secret:";

/// What went wrong, for callers to branch on.
enum class SigningErrorCode {
  kIoError,             // a file is missing or unreadable, or could not be written
  kMalformedKey,        // a key file or key text is not in the expected format
  kKeyFileUnsafe,       // a secret key file is readable or writable by group or others
  kKeyFileExists,       // refusing to overwrite an existing key file
  kMalformedSignature,  // the signature file is not in the expected format
  kBadSignature,        // the signature does not match the manifest and library as they are
  kUntrustedSigner,     // the signature is valid but made with a key that is not trusted
  kCryptoFailure,       // libsodium failed to initialize or reported an error
  kMalformedBundle,     // a plugin bundle is not a tar archive of the expected shape
};

struct SigningError {
  SigningErrorCode code;
  /// A complete sentence saying what is wrong and what to do. Never contains key material.
  std::string message;
};

/// A value or a SigningError. value() on an error throws std::bad_variant_access.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}             // NOLINT
  Result(SigningError error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  const SigningError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, SigningError> state_;
};

using Sha256 = std::array<std::uint8_t, 32>;

/// SHA-256 of a byte string.
Sha256 sha256(std::string_view bytes);
/// SHA-256 of a file's contents, read in chunks.
Result<Sha256> sha256_file(const std::filesystem::path& file);
/// Lower-case hex.
std::string to_hex(const std::uint8_t* data, std::size_t size);

/// A publisher's Ed25519 public key.
class PublicKey {
 public:
  static constexpr std::size_t kSize = 32;

  /// Parses "helm-ed25519:<base64>" (surrounding whitespace ignored).
  static Result<PublicKey> parse(std::string_view text);
  /// Reads and parses a .pub file.
  static Result<PublicKey> load(const std::filesystem::path& file);

  explicit PublicKey(const std::array<std::uint8_t, kSize>& bytes) : bytes_(bytes) {}

  const std::array<std::uint8_t, kSize>& bytes() const noexcept { return bytes_; }
  /// "helm-ed25519:<base64>".
  std::string to_text() const;
  /// 16 lower-case hex characters identifying the key.
  std::string id() const;

  friend bool operator==(const PublicKey& a, const PublicKey& b) { return a.bytes_ == b.bytes_; }

 private:
  std::array<std::uint8_t, kSize> bytes_;
};

/// A publisher's Ed25519 secret key. Move-only; the key material is zeroed on destruction.
class SecretKey {
 public:
  /// A fresh random key.
  static Result<SecretKey> generate();
  /// Reads a .key file; refuses one that group or others may read or write.
  static Result<SecretKey> load(const std::filesystem::path& file);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  /// Writes the .key file with mode 0600. Refuses to replace an existing file unless
  /// `overwrite`.
  Result<bool> save(const std::filesystem::path& file, bool overwrite) const;

  PublicKey public_key() const;

  /// The 64-byte libsodium secret key (seed || public key).
  const std::uint8_t* data() const noexcept { return secret_.data(); }

 private:
  SecretKey() = default;

  std::array<std::uint8_t, 64> secret_{};
};

/// The hashes a signature covers.
struct PluginDigest {
  Sha256 manifest{};
  Sha256 library{};
};

/// Hashes manifest bytes already in memory and a library file.
Result<PluginDigest> digest_plugin(std::string_view manifest_bytes,
                                   const std::filesystem::path& library_file);

/// The exact bytes an Ed25519 signature is made over (see the file comment).
std::vector<std::uint8_t> signing_message(const PluginDigest& digest);

/// A detached signature as stored in a `signature` file.
struct Signature {
  static constexpr std::size_t kSize = 64;

  PublicKey key;
  std::array<std::uint8_t, kSize> bytes{};
  /// Hashes recorded when signing; informational only.
  std::optional<PluginDigest> signed_digest;

  /// Parses the JSON text of a signature file.
  static Result<Signature> parse(std::string_view text);
  static Result<Signature> load(const std::filesystem::path& file);

  /// The JSON text of a signature file.
  std::string to_text() const;
};

/// Signs a digest.
Signature sign(const SecretKey& key, const PluginDigest& digest);

/// Checks `signature` against `digest` (hashes of the files as they are now) and returns the
/// key that made it when that key is among `trusted`. Errors: kBadSignature (tampered files or
/// a corrupt signature; the message names the file that changed when it can tell),
/// kUntrustedSigner (valid, but by a key not in `trusted`; the message names the key id).
Result<PublicKey> verify(const Signature& signature, const PluginDigest& digest,
                         const std::vector<PublicKey>& trusted);

}  // namespace helm::signing
