/// @brief Result<T>: a value or a typed VaultError, returned wherever vault failure is ordinary.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace helm::vault {

/// What went wrong, stable enough for callers to branch on and map to REST problem types.
enum class VaultErrorCode {
  kInvalidArgument,         // a malformed organization id, secret name, version or size
  kKeyNotFound,             // the key file does not exist or the environment variable is unset
  kKeyFileUnsafe,           // the key file is accessible by group or others, or is not a file
  kKeyMalformed,            // key material has the wrong length or encoding, or is all zeros
  kKeyFileExists,           // refusing to overwrite an existing key file
  kIoError,                 // reading, writing or syncing a file failed
  kWrongMasterKey,          // the loaded master key is not the one the data was wrapped with
  kDataKeyVersionMismatch,  // the data key given is not the version the secret was sealed with
  kUnsupportedFormat,       // a stored blob has a format version this build does not know
  kMalformedCiphertext,     // a stored nonce or ciphertext has an impossible length
  kAuthenticationFailed,    // AEAD verification failed: tampered, moved, or the wrong key
  kInvalidAuditRecord,      // an audit record is incomplete or carries a forbidden field
  kInternal,                // a libsodium primitive reported failure
};

/// Stable lower-case name of a code, e.g. "authentication_failed".
std::string_view to_string(VaultErrorCode code) noexcept;

/// A typed error. `message` says what was wrong and what to do; it never contains secret bytes
/// (key material, plaintext), only metadata such as file paths, names, versions and lengths.
struct VaultError {
  VaultErrorCode code;
  std::string message;
};

/// Thrown only when a caller reads the value of an error Result: a programming error.
class BadResultAccess : public std::logic_error {
 public:
  explicit BadResultAccess(VaultErrorCode code)
      : std::logic_error(std::string("value() called on a Result holding error ") +
                         std::string(to_string(code))) {}
};

/// Holds either a T or a VaultError (a minimal stand-in for C++23 std::expected).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(VaultError error)                                               // NOLINT: implicit
      : state_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    check();
    return std::get<0>(state_);
  }
  const T& value() const& {
    check();
    return std::get<0>(state_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// Precondition: !has_value().
  const VaultError& error() const& { return std::get<1>(state_); }
  VaultError&& error() && { return std::get<1>(std::move(state_)); }

 private:
  void check() const {
    if (!has_value()) {
      throw BadResultAccess(std::get<1>(state_).code);
    }
  }

  std::variant<T, VaultError> state_;
};

/// Success carries nothing; failure carries a VaultError.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(VaultError error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) {
      throw BadResultAccess(error_.code);
    }
  }

  /// Precondition: !has_value().
  const VaultError& error() const& { return error_; }
  VaultError&& error() && { return std::move(error_); }

 private:
  VaultError error_{VaultErrorCode::kInternal, {}};
  bool ok_ = true;
};

/// Shorthand for building an error return.
inline VaultError make_error(VaultErrorCode code, std::string message) {
  return VaultError{code, std::move(message)};
}

}  // namespace helm::vault
