#include "helm/vault/master_key.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace helm::vault {

namespace {

constexpr std::string_view kWrapKeyContext = "helm-vault/master-key/wrap/v1";
constexpr std::string_view kCheckValueContext = "helm-vault/master-key/check-value/v1";
constexpr std::size_t kHexKeyChars = kMasterKeyBytes * 2;
// 64 hex characters plus "\r\n"; one more byte is read to notice a longer file.
constexpr std::size_t kMaxKeyFileBytes = kHexKeyChars + 2;
constexpr std::string_view kCreateKeyHint =
    "create one with `openssl rand -hex 32 > FILE && chmod 600 FILE`";

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

std::string quoted(const std::filesystem::path& path) {
  return "'" + path.string() + "'";
}

/// Owns a file descriptor; closes it on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  /// Closes now and reports the error, since close can be the first to report a failed write.
  int close_checked() noexcept { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

/// Length of `text` without one trailing "\n" or "\r\n".
std::size_t without_newline(ByteView text) noexcept {
  std::size_t size = text.size();
  if (size > 0 && text[size - 1] == '\n') {
    --size;
    if (size > 0 && text[size - 1] == '\r') {
      --size;
    }
  }
  return size;
}

/// Decodes exactly 64 hex characters into 32 secure bytes, or returns an empty buffer.
/// sodium_hex2bin stops at the first non-hex character, so anything else decodes short.
SecureBuffer decode_hex_key(ByteView hex) {
  if (hex.size() != kHexKeyChars) {
    return {};
  }
  SecureBuffer key(kMasterKeyBytes);
  std::size_t decoded = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(key.data(), key.size(), reinterpret_cast<const char*>(hex.data()), hex.size(),
                     nullptr, &decoded, &end) != 0 ||
      decoded != kMasterKeyBytes) {
    return {};
  }
  return key;
}

/// Decodes standard base64 of 32 bytes (44 characters padded, 43 unpadded), or returns empty.
SecureBuffer decode_base64_key(ByteView text) {
  int variant = 0;
  if (text.size() == 44) {
    variant = sodium_base64_VARIANT_ORIGINAL;
  } else if (text.size() == 43) {
    variant = sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  } else {
    return {};
  }
  SecureBuffer key(kMasterKeyBytes);
  std::size_t decoded = 0;
  const char* end = nullptr;
  if (sodium_base642bin(key.data(), key.size(), reinterpret_cast<const char*>(text.data()),
                        text.size(), nullptr, &decoded, &end, variant) != 0 ||
      decoded != kMasterKeyBytes ||
      end != reinterpret_cast<const char*>(text.data()) + text.size()) {
    return {};
  }
  return key;
}

Result<MasterKey> key_from_material(const SecureBuffer& raw, const std::string& source) {
  if (sodium_is_zero(raw.data(), raw.size()) != 0) {
    return make_error(VaultErrorCode::kKeyMalformed,
                      source + " holds an all-zero key, which is not a usable key; " +
                          std::string(kCreateKeyHint));
  }
  return MasterKey::from_bytes(raw.view());
}

}  // namespace

MasterKey::MasterKey(const SecureBuffer& raw_key) : wrapping_key_(kMasterKeyBytes) {
  if (crypto_generichash(wrapping_key_.data(), wrapping_key_.size(),
                         bytes_of(kWrapKeyContext).data(), kWrapKeyContext.size(), raw_key.data(),
                         raw_key.size()) != 0) {
    throw std::logic_error("BLAKE2b rejected fixed, valid parameters");
  }
  SecureBuffer check(crypto_generichash_BYTES);
  if (crypto_generichash(check.data(), check.size(), bytes_of(kCheckValueContext).data(),
                         kCheckValueContext.size(), raw_key.data(), raw_key.size()) != 0) {
    throw std::logic_error("BLAKE2b rejected fixed, valid parameters");
  }
  check_value_ = to_hex(check.view().first(kCheckValueHexChars / 2));
}

Result<MasterKey> MasterKey::from_bytes(ByteView key) {
  ensure_sodium_initialized();
  if (key.size() != kMasterKeyBytes) {
    return make_error(VaultErrorCode::kKeyMalformed,
                      "a master key must be exactly 32 bytes, got " + std::to_string(key.size()));
  }
  if (sodium_is_zero(key.data(), key.size()) != 0) {
    return make_error(VaultErrorCode::kKeyMalformed, "an all-zero master key is not a usable key");
  }
  return MasterKey(SecureBuffer::copy_of(key));
}

MasterKey MasterKey::generate() {
  SecureBuffer raw(kMasterKeyBytes);
  randombytes_buf(raw.data(), raw.size());
  return MasterKey(raw);
}

Result<MasterKey> MasterKey::from_file(const std::filesystem::path& path) {
  ensure_sodium_initialized();
  const std::string name = "master key file " + quoted(path);
  // O_NONBLOCK keeps a FIFO planted at the path from hanging start-up; it is a no-op for files.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) {
    const int error = errno;
    if (error == ENOENT) {
      return make_error(
          VaultErrorCode::kKeyNotFound,
          name + " does not exist; " + std::string(kCreateKeyHint) + " or set HELM_MASTER_KEY");
    }
    return make_error(VaultErrorCode::kIoError, "cannot open " + name + ": " + errno_text(error));
  }
  // fstat on the open descriptor, so the checked file is the file read.
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) {
    return make_error(VaultErrorCode::kIoError, "cannot stat " + name + ": " + errno_text(errno));
  }
  if (!S_ISREG(status.st_mode)) {
    return make_error(VaultErrorCode::kKeyFileUnsafe,
                      name + " is not a regular file; point the hub at the key file itself");
  }
  if ((status.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(status.st_mode & 07777));
    return make_error(VaultErrorCode::kKeyFileUnsafe,
                      name + " has mode " + mode +
                          ", which lets group or others access it; restrict it with `chmod 600 " +
                          path.string() + "` (owner read/write only) and restart");
  }

  SecureBuffer contents(kMaxKeyFileBytes + 1);
  std::size_t filled = 0;
  while (filled < contents.size()) {
    const ssize_t got = ::read(fd.get(), contents.data() + filled, contents.size() - filled);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return make_error(VaultErrorCode::kIoError, "cannot read " + name + ": " + errno_text(errno));
    }
    if (got == 0) {
      break;
    }
    filled += static_cast<std::size_t>(got);
  }
  contents.truncate(filled);

  SecureBuffer raw;
  if (filled == kMasterKeyBytes) {
    raw = SecureBuffer::copy_of(contents.view());
  } else {
    raw = decode_hex_key(contents.view().first(without_newline(contents.view())));
  }
  if (raw.empty()) {
    const std::string size =
        filled > kMaxKeyFileBytes ? "more than 66 bytes" : std::to_string(filled) + " bytes";
    return make_error(VaultErrorCode::kKeyMalformed,
                      name + " holds " + size +
                          " that are neither 32 raw bytes nor 64 hex characters (optionally "
                          "followed by a newline); " +
                          std::string(kCreateKeyHint));
  }
  return key_from_material(raw, name);
}

Result<MasterKey> MasterKey::from_env(std::string_view variable) {
  ensure_sodium_initialized();
  const std::string variable_name(variable);
  const std::string name = "environment variable " + variable_name;
  // Read once at start-up, before any thread that could call setenv exists.
  const char* value = std::getenv(variable_name.c_str());  // NOLINT(concurrency-mt-unsafe)
  if (value == nullptr || *value == '\0') {
    return make_error(VaultErrorCode::kKeyNotFound,
                      name +
                          " is not set; set it to 64 hex characters (`openssl rand -hex 32`) "
                          "or the base64 of 32 bytes (`openssl rand -base64 32`), or use a "
                          "key file");
  }
  const std::string_view text(value);
  const ByteView trimmed = bytes_of(text).first(without_newline(bytes_of(text)));
  SecureBuffer raw = decode_hex_key(trimmed);
  if (raw.empty()) {
    raw = decode_base64_key(trimmed);
  }
  if (raw.empty()) {
    return make_error(VaultErrorCode::kKeyMalformed,
                      name + " holds " + std::to_string(trimmed.size()) +
                          " characters that are neither 64 hex characters nor the base64 of 32 "
                          "bytes; generate one with `openssl rand -hex 32`");
  }
  return key_from_material(raw, name);
}

Result<MasterKey> MasterKey::generate_dev_key(const std::filesystem::path& path) {
  ensure_sodium_initialized();
  const std::string name = "master key file " + quoted(path);
  // O_EXCL also refuses a symlink at the path, dangling or not.
  FileDescriptor fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
  if (!fd.valid()) {
    const int error = errno;
    if (error == EEXIST) {
      return make_error(VaultErrorCode::kKeyFileExists,
                        "refusing to overwrite existing " + name +
                            "; load it instead, or move it away first if it is really unused "
                            "(data wrapped by it becomes unreadable without it)");
    }
    return make_error(VaultErrorCode::kIoError, "cannot create " + name + ": " + errno_text(error));
  }

  SecureBuffer raw(kMasterKeyBytes);
  randombytes_buf(raw.data(), raw.size());
  SecureBuffer text(kHexKeyChars + 2);  // hex, '\n', and sodium_bin2hex's terminating NUL
  sodium_bin2hex(reinterpret_cast<char*>(text.data()), text.size(), raw.data(), raw.size());
  text.data()[kHexKeyChars] = '\n';
  text.truncate(kHexKeyChars + 1);

  const auto fail = [&](const std::string& what, int error) -> Result<MasterKey> {
    // The file is ours (O_EXCL); remove the partial key so a retry can start clean.
    ::unlink(path.c_str());
    return make_error(VaultErrorCode::kIoError, what + " " + name + ": " + errno_text(error));
  };
  // umask may have narrowed the mode further; make it exactly owner read/write.
  if (::fchmod(fd.get(), 0600) != 0) {
    return fail("cannot chmod", errno);
  }
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t put = ::write(fd.get(), text.data() + written, text.size() - written);
    if (put < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("cannot write", errno);
    }
    written += static_cast<std::size_t>(put);
  }
  if (::fsync(fd.get()) != 0) {
    return fail("cannot fsync", errno);
  }
  if (fd.close_checked() != 0) {
    return fail("cannot close", errno);
  }

  // Make the new directory entry durable too.
  const std::filesystem::path parent =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  FileDescriptor dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) {
    ::fsync(dir.get());
  }

  return MasterKey(raw);
}

Result<void> MasterKey::verify_check_value(std::string_view expected) const {
  // The stored value is echoed in the error; cap it in case the store holds garbage.
  constexpr std::size_t kMaxEcho = 64;
  if (expected.size() == check_value_.size() &&
      sodium_memcmp(expected.data(), check_value_.data(), check_value_.size()) == 0) {
    return {};
  }
  return make_error(VaultErrorCode::kWrongMasterKey,
                    "the loaded master key has check value " + check_value_ +
                        " but the vault was created with " +
                        std::string(expected.substr(0, kMaxEcho)) +
                        "; load the original master key (rotate keys only with the rotation "
                        "command)");
}

}  // namespace helm::vault
