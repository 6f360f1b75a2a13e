#include "helm/vault/result.hpp"

namespace helm::vault {

std::string_view to_string(VaultErrorCode code) noexcept {
  switch (code) {
    case VaultErrorCode::kInvalidArgument:
      return "invalid_argument";
    case VaultErrorCode::kKeyNotFound:
      return "key_not_found";
    case VaultErrorCode::kKeyFileUnsafe:
      return "key_file_unsafe";
    case VaultErrorCode::kKeyMalformed:
      return "key_malformed";
    case VaultErrorCode::kKeyFileExists:
      return "key_file_exists";
    case VaultErrorCode::kIoError:
      return "io_error";
    case VaultErrorCode::kWrongMasterKey:
      return "wrong_master_key";
    case VaultErrorCode::kDataKeyVersionMismatch:
      return "data_key_version_mismatch";
    case VaultErrorCode::kUnsupportedFormat:
      return "unsupported_format";
    case VaultErrorCode::kMalformedCiphertext:
      return "malformed_ciphertext";
    case VaultErrorCode::kAuthenticationFailed:
      return "authentication_failed";
    case VaultErrorCode::kInvalidAuditRecord:
      return "invalid_audit_record";
    case VaultErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace helm::vault
