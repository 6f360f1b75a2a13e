#include "helm/signing/plugin_signature.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

namespace helm::signing {
namespace {

// Signature and key files are tiny; anything larger is not one of ours.
constexpr std::size_t kMaxSmallFileBytes = 64 * 1024;

SigningError io_error(const std::filesystem::path& file, const char* action, int error) {
  return {SigningErrorCode::kIoError,
          std::string("cannot ") + action + " " + file.string() + ": " + std::strerror(error)};
}

bool sodium_ready() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

SigningError crypto_failure() {
  return {SigningErrorCode::kCryptoFailure, "libsodium could not be initialized"};
}

/// Closes a file descriptor on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

/// Reads a small file; when `secret`, refuses files that group or others may access.
Result<std::string> read_small_file(const std::filesystem::path& file, bool secret) {
  const FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return io_error(file, "open", errno);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return io_error(file, "stat", errno);
  if (!S_ISREG(info.st_mode)) {
    return SigningError{SigningErrorCode::kIoError, file.string() + " is not a regular file"};
  }
  if (secret && (info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return SigningError{SigningErrorCode::kKeyFileUnsafe,
                        "secret key file " + file.string() +
                            " is accessible by group or others; run: chmod 600 " + file.string()};
  }
  if (static_cast<std::size_t>(info.st_size) > kMaxSmallFileBytes) {
    return SigningError{SigningErrorCode::kIoError,
                        file.string() + " is too large to be a key or signature file"};
  }
  std::string content(static_cast<std::size_t>(info.st_size), '\0');
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::read(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(file, "read", errno);
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  content.resize(done);
  return content;
}

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!text.empty() && is_space(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && is_space(text.back()))
    text.remove_suffix(1);
  return text;
}

std::string to_base64(const std::uint8_t* data, std::size_t size) {
  std::string out(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), data, size, sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

/// Decodes base64 of exactly out.size() bytes.
template <std::size_t N>
bool from_base64(std::string_view text, std::array<std::uint8_t, N>& out) {
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return false;
  }
  return length == N && end == text.data() + text.size();
}

template <std::size_t N>
bool from_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length, &end) !=
      0) {
    return false;
  }
  return length == N && end == text.data() + text.size();
}

void append_field(std::vector<std::uint8_t>& out, const std::uint8_t* data, std::size_t size) {
  const auto length = static_cast<std::uint64_t>(size);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(length >> shift));
  }
  out.insert(out.end(), data, data + size);
}

}  // namespace

Sha256 sha256(std::string_view bytes) {
  (void)sodium_ready();  // selects the fastest implementation; hashing works either way
  Sha256 out{};
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size());
  return out;
}

Result<Sha256> sha256_file(const std::filesystem::path& file) {
  if (!sodium_ready()) return crypto_failure();
  const FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return io_error(file, "open", errno);
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::array<unsigned char, 64 * 1024> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(file, "read", errno);
    if (n == 0) break;
    crypto_hash_sha256_update(&state, buffer.data(), static_cast<unsigned long long>(n));
  }
  Sha256 out{};
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  std::string out(size * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, size);
  out.pop_back();
  return out;
}

Result<PublicKey> PublicKey::parse(std::string_view text) {
  if (!sodium_ready()) return crypto_failure();
  text = trim(text);
  if (text.substr(0, kPublicKeyPrefix.size()) != kPublicKeyPrefix) {
    return SigningError{SigningErrorCode::kMalformedKey,
                        "a public key must start with \"" + std::string(kPublicKeyPrefix) +
                            "\" (make one with: helm-plugin keygen --out PREFIX)"};
  }
  std::array<std::uint8_t, kSize> bytes{};
  if (!from_base64(text.substr(kPublicKeyPrefix.size()), bytes)) {
    return SigningError{SigningErrorCode::kMalformedKey,
                        "a public key must be \"" + std::string(kPublicKeyPrefix) +
                            "\" followed by the base64 of 32 bytes"};
  }
  return PublicKey(bytes);
}

Result<PublicKey> PublicKey::load(const std::filesystem::path& file) {
  Result<std::string> text = read_small_file(file, false);
  if (!text) return text.error();
  Result<PublicKey> key = parse(text.value());
  if (!key) return SigningError{key.error().code, file.string() + ": " + key.error().message};
  return key;
}

std::string PublicKey::to_text() const {
  return std::string(kPublicKeyPrefix) + to_base64(bytes_.data(), bytes_.size());
}

std::string PublicKey::id() const {
  const Sha256 hash =
      sha256(std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size()));
  return to_hex(hash.data(), 8);
}

Result<SecretKey> SecretKey::generate() {
  if (!sodium_ready()) return crypto_failure();
  SecretKey key;
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  crypto_sign_keypair(public_key.data(), key.secret_.data());
  return key;
}

Result<SecretKey> SecretKey::load(const std::filesystem::path& file) {
  if (!sodium_ready()) return crypto_failure();
  Result<std::string> text = read_small_file(file, true);
  if (!text) return text.error();
  const std::string_view content = trim(text.value());
  std::array<std::uint8_t, crypto_sign_SEEDBYTES> seed{};
  const bool ok = content.substr(0, kSecretKeyPrefix.size()) == kSecretKeyPrefix &&
                  from_base64(content.substr(kSecretKeyPrefix.size()), seed);
  sodium_memzero(text.value().data(), text.value().size());
  if (!ok) {
    sodium_memzero(seed.data(), seed.size());
    return SigningError{SigningErrorCode::kMalformedKey,
                        file.string() + " is not a secret key: expected \"" +
                            std::string(kSecretKeyPrefix) + "\" and the base64 of 32 bytes"};
  }
  SecretKey key;
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  crypto_sign_seed_keypair(public_key.data(), key.secret_.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  return key;
}

SecretKey::SecretKey(SecretKey&& other) noexcept : secret_(other.secret_) {
  sodium_memzero(other.secret_.data(), other.secret_.size());
}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    secret_ = other.secret_;
    sodium_memzero(other.secret_.data(), other.secret_.size());
  }
  return *this;
}

SecretKey::~SecretKey() {
  sodium_memzero(secret_.data(), secret_.size());
}

Result<bool> SecretKey::save(const std::filesystem::path& file, bool overwrite) const {
  if (overwrite && ::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return io_error(file, "replace", errno);
  }
  const FileDescriptor fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    if (errno == EEXIST) {
      return SigningError{SigningErrorCode::kKeyFileExists,
                          file.string() + " already exists; refusing to overwrite a key"};
    }
    return io_error(file, "create", errno);
  }
  std::array<std::uint8_t, crypto_sign_SEEDBYTES> seed{};
  crypto_sign_ed25519_sk_to_seed(seed.data(), secret_.data());
  std::string text = std::string(kSecretKeyPrefix) + to_base64(seed.data(), seed.size()) + "\n";
  sodium_memzero(seed.data(), seed.size());
  std::size_t done = 0;
  int failure = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failure = errno;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  sodium_memzero(text.data(), text.size());
  if (failure == 0 && ::fsync(fd.get()) != 0) failure = errno;
  if (failure != 0) return io_error(file, "write", failure);
  return true;
}

PublicKey SecretKey::public_key() const {
  std::array<std::uint8_t, PublicKey::kSize> bytes{};
  crypto_sign_ed25519_sk_to_pk(bytes.data(), secret_.data());
  return PublicKey(bytes);
}

Result<PluginDigest> digest_plugin(std::string_view manifest_bytes,
                                   const std::filesystem::path& library_file) {
  if (!sodium_ready()) return crypto_failure();
  PluginDigest digest;
  digest.manifest = sha256(manifest_bytes);
  Result<Sha256> library = sha256_file(library_file);
  if (!library) return library.error();
  digest.library = library.value();
  return digest;
}

std::vector<std::uint8_t> signing_message(const PluginDigest& digest) {
  std::vector<std::uint8_t> message;
  message.reserve(3 * 8 + kSignatureDomain.size() + 2 * digest.manifest.size());
  append_field(message, reinterpret_cast<const std::uint8_t*>(kSignatureDomain.data()),
               kSignatureDomain.size());
  append_field(message, digest.manifest.data(), digest.manifest.size());
  append_field(message, digest.library.data(), digest.library.size());
  return message;
}

Result<Signature> Signature::parse(std::string_view text) {
  if (!sodium_ready()) return crypto_failure();
  const auto malformed = [](const std::string& why) {
    return SigningError{SigningErrorCode::kMalformedSignature,
                        "the signature file is malformed: " + why};
  };
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& exception) {
    return malformed(std::string("not JSON (") + exception.what() + ")");
  }
  if (!json.is_object()) return malformed("not a JSON object");
  const auto text_field = [&json](const char* name) -> std::optional<std::string> {
    const auto found = json.find(name);
    if (found == json.end() || !found->is_string()) return std::nullopt;
    return found->get<std::string>();
  };
  if (text_field("format") != std::string(kSignatureDomain)) {
    return malformed("\"format\" must be \"" + std::string(kSignatureDomain) + "\"");
  }
  const std::optional<std::string> key_text = text_field("public_key");
  if (!key_text) return malformed("\"public_key\" is missing");
  Result<PublicKey> key = PublicKey::parse(*key_text);
  if (!key) return malformed(key.error().message);
  const std::optional<std::string> key_id = text_field("key_id");
  if (key_id && *key_id != key.value().id()) {
    return malformed("\"key_id\" " + *key_id + " does not belong to \"public_key\"");
  }
  Signature signature{key.value(), {}, std::nullopt};
  const std::optional<std::string> bytes = text_field("signature");
  if (!bytes || !from_base64(*bytes, signature.bytes)) {
    return malformed("\"signature\" must be the base64 of 64 bytes");
  }
  const std::optional<std::string> manifest_hash = text_field("manifest_sha256");
  const std::optional<std::string> library_hash = text_field("library_sha256");
  if (manifest_hash && library_hash) {
    PluginDigest recorded;
    if (from_hex(*manifest_hash, recorded.manifest) && from_hex(*library_hash, recorded.library)) {
      signature.signed_digest = recorded;
    }
  }
  return signature;
}

Result<Signature> Signature::load(const std::filesystem::path& file) {
  Result<std::string> text = read_small_file(file, false);
  if (!text) return text.error();
  Result<Signature> signature = parse(text.value());
  if (!signature) {
    return SigningError{signature.error().code, file.string() + ": " + signature.error().message};
  }
  return signature;
}

std::string Signature::to_text() const {
  nlohmann::ordered_json json;
  json["format"] = kSignatureDomain;
  json["key_id"] = key.id();
  json["public_key"] = key.to_text();
  if (signed_digest) {
    json["manifest_sha256"] =
        to_hex(signed_digest->manifest.data(), signed_digest->manifest.size());
    json["library_sha256"] = to_hex(signed_digest->library.data(), signed_digest->library.size());
  }
  json["signature"] = to_base64(bytes.data(), bytes.size());
  return json.dump(2) + "\n";
}

Signature sign(const SecretKey& key, const PluginDigest& digest) {
  Signature signature{key.public_key(), {}, digest};
  const std::vector<std::uint8_t> message = signing_message(digest);
  crypto_sign_detached(signature.bytes.data(), nullptr, message.data(), message.size(), key.data());
  return signature;
}

Result<PublicKey> verify(const Signature& signature, const PluginDigest& digest,
                         const std::vector<PublicKey>& trusted) {
  if (!sodium_ready()) return crypto_failure();
  const std::vector<std::uint8_t> message = signing_message(digest);
  if (crypto_sign_verify_detached(signature.bytes.data(), message.data(), message.size(),
                                  signature.key.bytes().data()) != 0) {
    std::string why = "the signature does not match";
    if (signature.signed_digest && signature.signed_digest->manifest != digest.manifest &&
        signature.signed_digest->library != digest.library) {
      why += ": manifest.json and the library both changed after signing";
    } else if (signature.signed_digest && signature.signed_digest->manifest != digest.manifest) {
      why += ": manifest.json changed after signing";
    } else if (signature.signed_digest && signature.signed_digest->library != digest.library) {
      why += ": the library changed after signing";
    } else {
      why +=
          " manifest.json and the library (the signature itself is corrupt or was made over "
          "other files)";
    }
    return SigningError{SigningErrorCode::kBadSignature,
                        why + "; rebuild and re-sign the plugin, or restore the original files"};
  }
  for (const PublicKey& key : trusted) {
    if (key == signature.key) return key;
  }
  return SigningError{SigningErrorCode::kUntrustedSigner,
                      "signed by key " + signature.key.id() +
                          ", which is not a trusted publisher key; add " + signature.key.to_text() +
                          " to the trusted keys if you trust it"};
}

}  // namespace helm::signing
