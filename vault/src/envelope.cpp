#include "helm/vault/envelope.hpp"

#include <sodium.h>

#include <string>
#include <utility>

#include "helm/vault/canonical_encoding.hpp"
#include "helm/vault/names.hpp"

namespace helm::vault {

static_assert(kNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kAeadTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kMasterKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

namespace {

constexpr std::string_view kDataKeyLabel = "helm-vault/data-key";
constexpr std::string_view kSecretLabel = "helm-vault/secret";

VaultError invalid(std::string message) {
  return make_error(VaultErrorCode::kInvalidArgument, std::move(message));
}

Result<void> check_org(std::string_view org_id) {
  if (is_valid_org_id(org_id)) {
    return {};
  }
  return invalid("organization id '" + std::string(org_id.substr(0, kMaxOrgIdLength + 1)) +
                 "' is invalid; use 1-63 of [a-z0-9-], starting and ending with a letter or digit");
}

Result<void> check_name(std::string_view name) {
  if (is_valid_secret_name(name)) {
    return {};
  }
  return invalid("secret name '" + std::string(name.substr(0, kMaxSecretNameLength + 1)) +
                 "' is invalid; use 1-128 of [a-z0-9._/-], starting with a letter or digit, "
                 "with no empty, '.' or '..' segment and no trailing '/'");
}

Result<void> check_positive(std::string_view what, int value) {
  if (value >= 1) {
    return {};
  }
  return invalid(std::string(what) + " must be at least 1, got " + std::to_string(value));
}

std::string describe_secret(std::string_view org_id, std::string_view name, int version) {
  return "secret '" + std::string(name) + "' version " + std::to_string(version) +
         " of organization '" + std::string(org_id) + "'";
}

Bytes random_nonce() {
  Bytes nonce(kNonceBytes);
  randombytes_buf(nonce.data(), nonce.size());
  return nonce;
}

/// Encrypts `plaintext` under `key`; empty Bytes only if libsodium reports failure.
Bytes aead_encrypt(ByteView key, const Bytes& nonce, const Bytes& additional_data,
                   ByteView plaintext) {
  Bytes ciphertext(plaintext.size() + kAeadTagBytes);
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_encrypt(
          ciphertext.data(), &written, plaintext.data(), plaintext.size(), additional_data.data(),
          additional_data.size(), nullptr, nonce.data(), key.data()) != 0 ||
      written != ciphertext.size()) {
    return {};
  }
  return ciphertext;
}

/// Decrypts into `out` (sized ciphertext - tag); false if authentication fails.
bool aead_decrypt(ByteView key, const Bytes& nonce, const Bytes& additional_data,
                  const Bytes& ciphertext, SecureBuffer& out) {
  unsigned long long written = 0;
  return crypto_aead_xchacha20poly1305_ietf_decrypt(
             out.data(), &written, nullptr, ciphertext.data(), ciphertext.size(),
             additional_data.data(), additional_data.size(), nonce.data(), key.data()) == 0 &&
         written == out.size();
}

}  // namespace

Bytes data_key_additional_data(int format, std::string_view org_id, int key_version,
                               std::string_view master_key_id) {
  return CanonicalEncoder{}
      .add_string(kDataKeyLabel)
      .add_u32(static_cast<std::uint32_t>(format))
      .add_string(org_id)
      .add_u32(static_cast<std::uint32_t>(key_version))
      .add_string(master_key_id)
      .take();
}

Bytes secret_additional_data(int format, std::string_view org_id, std::string_view secret_name,
                             int secret_version, int data_key_version) {
  return CanonicalEncoder{}
      .add_string(kSecretLabel)
      .add_u32(static_cast<std::uint32_t>(format))
      .add_string(org_id)
      .add_string(secret_name)
      .add_u32(static_cast<std::uint32_t>(secret_version))
      .add_u32(static_cast<std::uint32_t>(data_key_version))
      .take();
}

Result<WrappedDataKey> wrap_data_key(const MasterKey& master_key, std::string_view org_id,
                                     const DataKey& data_key) {
  if (auto ok = check_org(org_id); !ok) {
    return std::move(ok).error();
  }
  WrappedDataKey wrapped;
  wrapped.format = kWrapFormatVersion;
  wrapped.key_version = data_key.version();
  wrapped.master_key_id = master_key.check_value();
  wrapped.nonce = random_nonce();
  const Bytes additional_data =
      data_key_additional_data(wrapped.format, org_id, wrapped.key_version, wrapped.master_key_id);
  wrapped.ciphertext =
      aead_encrypt(master_key.wrapping_key(), wrapped.nonce, additional_data, data_key.bytes());
  if (wrapped.ciphertext.empty()) {
    return make_error(VaultErrorCode::kInternal, "XChaCha20-Poly1305 refused to wrap a data key");
  }
  return wrapped;
}

Result<DataKey> unwrap_data_key(const MasterKey& master_key, std::string_view org_id,
                                const WrappedDataKey& wrapped) {
  if (auto ok = check_org(org_id); !ok) {
    return std::move(ok).error();
  }
  const auto what = [&] {
    return "data key version " + std::to_string(wrapped.key_version) + " of organization '" +
           std::string(org_id) + "'";
  };
  if (wrapped.format != kWrapFormatVersion) {
    return make_error(VaultErrorCode::kUnsupportedFormat,
                      what() + " has wrap format " + std::to_string(wrapped.format) +
                          ", which this build does not know; upgrade the hub");
  }
  if (auto ok = check_positive("data key version", wrapped.key_version); !ok) {
    return std::move(ok).error();
  }
  if (wrapped.master_key_id != master_key.check_value()) {
    return make_error(VaultErrorCode::kWrongMasterKey,
                      what() + " is wrapped by master key " +
                          wrapped.master_key_id.substr(0, kCheckValueHexChars) +
                          " but the loaded master key is " + master_key.check_value() +
                          "; load the right master key");
  }
  if (wrapped.nonce.size() != kNonceBytes ||
      wrapped.ciphertext.size() != kDataKeyBytes + kAeadTagBytes) {
    return make_error(VaultErrorCode::kMalformedCiphertext,
                      what() + " has a " + std::to_string(wrapped.nonce.size()) +
                          "-byte nonce and " + std::to_string(wrapped.ciphertext.size()) +
                          "-byte ciphertext; expected 24 and 48: the stored row is corrupt");
  }
  const Bytes additional_data =
      data_key_additional_data(wrapped.format, org_id, wrapped.key_version, wrapped.master_key_id);
  SecureBuffer key(kDataKeyBytes);
  if (!aead_decrypt(master_key.wrapping_key(), wrapped.nonce, additional_data, wrapped.ciphertext,
                    key)) {
    return make_error(VaultErrorCode::kAuthenticationFailed,
                      what() +
                          " failed authentication: the stored row was altered or belongs to "
                          "another organization or key version");
  }
  return DataKey::adopt(wrapped.key_version, std::move(key));
}

Result<SealedSecret> seal_secret(const DataKey& data_key, std::string_view org_id,
                                 std::string_view secret_name, int version, ByteView plaintext) {
  if (auto ok = check_org(org_id); !ok) {
    return std::move(ok).error();
  }
  if (auto ok = check_name(secret_name); !ok) {
    return std::move(ok).error();
  }
  if (auto ok = check_positive("secret version", version); !ok) {
    return std::move(ok).error();
  }
  if (plaintext.empty() || plaintext.size() > kMaxSecretBytes) {
    return invalid(describe_secret(org_id, secret_name, version) + " is " +
                   std::to_string(plaintext.size()) + " bytes long; a secret value must be 1 to " +
                   std::to_string(kMaxSecretBytes) + " bytes");
  }
  SealedSecret sealed;
  sealed.format = kSealFormatVersion;
  sealed.version = version;
  sealed.data_key_version = data_key.version();
  sealed.nonce = random_nonce();
  const Bytes additional_data = secret_additional_data(sealed.format, org_id, secret_name,
                                                       sealed.version, sealed.data_key_version);
  sealed.ciphertext = aead_encrypt(data_key.bytes(), sealed.nonce, additional_data, plaintext);
  if (sealed.ciphertext.empty()) {
    return make_error(VaultErrorCode::kInternal, "XChaCha20-Poly1305 refused to seal " +
                                                     describe_secret(org_id, secret_name, version));
  }
  return sealed;
}

Result<SecureBuffer> open_secret(const DataKey& data_key, std::string_view org_id,
                                 std::string_view secret_name, const SealedSecret& sealed) {
  if (auto ok = check_org(org_id); !ok) {
    return std::move(ok).error();
  }
  if (auto ok = check_name(secret_name); !ok) {
    return std::move(ok).error();
  }
  const auto what = [&] { return describe_secret(org_id, secret_name, sealed.version); };
  if (sealed.format != kSealFormatVersion) {
    return make_error(VaultErrorCode::kUnsupportedFormat,
                      what() + " has seal format " + std::to_string(sealed.format) +
                          ", which this build does not know; upgrade the hub");
  }
  if (auto ok = check_positive("secret version", sealed.version); !ok) {
    return std::move(ok).error();
  }
  if (sealed.data_key_version != data_key.version()) {
    return make_error(VaultErrorCode::kDataKeyVersionMismatch,
                      what() + " was sealed with data key version " +
                          std::to_string(sealed.data_key_version) + " but version " +
                          std::to_string(data_key.version()) +
                          " was supplied; unwrap that version");
  }
  if (sealed.nonce.size() != kNonceBytes || sealed.ciphertext.size() <= kAeadTagBytes ||
      sealed.ciphertext.size() > kMaxSecretBytes + kAeadTagBytes) {
    return make_error(VaultErrorCode::kMalformedCiphertext,
                      what() + " has a " + std::to_string(sealed.nonce.size()) +
                          "-byte nonce and " + std::to_string(sealed.ciphertext.size()) +
                          "-byte ciphertext, which no seal produces: the stored row is corrupt");
  }
  const Bytes additional_data = secret_additional_data(sealed.format, org_id, secret_name,
                                                       sealed.version, sealed.data_key_version);
  SecureBuffer plaintext(sealed.ciphertext.size() - kAeadTagBytes);
  if (!aead_decrypt(data_key.bytes(), sealed.nonce, additional_data, sealed.ciphertext,
                    plaintext)) {
    return make_error(VaultErrorCode::kAuthenticationFailed,
                      what() +
                          " failed authentication: it was altered, copied from another "
                          "organization, name or version, or sealed under another data key");
  }
  return plaintext;
}

Result<WrappedDataKey> rewrap_data_key(const MasterKey& old_key, const MasterKey& new_key,
                                       std::string_view org_id, const WrappedDataKey& wrapped) {
  auto data_key = unwrap_data_key(old_key, org_id, wrapped);
  if (!data_key) {
    return std::move(data_key).error();
  }
  return wrap_data_key(new_key, org_id, *data_key);
}

Result<SealedSecret> reseal_secret(const DataKey& old_key, const DataKey& new_key,
                                   std::string_view org_id, std::string_view secret_name,
                                   const SealedSecret& sealed) {
  if (new_key.version() == old_key.version()) {
    return invalid("re-sealing needs a new data key version, but both keys are version " +
                   std::to_string(old_key.version()));
  }
  auto plaintext = open_secret(old_key, org_id, secret_name, sealed);
  if (!plaintext) {
    return std::move(plaintext).error();
  }
  return seal_secret(new_key, org_id, secret_name, sealed.version, plaintext->view());
}

}  // namespace helm::vault
