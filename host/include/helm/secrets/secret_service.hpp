/// @brief SecretService: the vault in the hub — organization secrets stored sealed in PostgreSQL
/// (write-only through the API), released only to a declared and granted plugin inside a session
/// that is still valid, every release and refusal audited; plus data-key rotation.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "helm/core/expected.hpp"
#include "helm/secrets/master_keyring.hpp"
#include "helm/vault/data_key.hpp"
#include "helm/vault/envelope.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace pqxx {
class transaction_base;
}
namespace helm::storage {
class DbPool;
}
namespace helm::auth {
class AuthService;
struct SessionContext;
}  // namespace helm::auth

namespace helm::secrets {

/// Why a release was refused. The names (to_string) are the audit log's `reason`.
enum class RefusalReason {
  kInvalidRequest,     ///< a malformed organization id, secret name or plugin name
  kSessionInvalid,     ///< expired, logged out, revoked, or the account is disabled
  kWrongOrganization,  ///< the session belongs to another organization
  kNotDeclared,        ///< the plugin's manifest declares no glob matching the name
  kNotGranted,         ///< the organization has not granted this secret to this plugin
  kNoSuchSecret,
  kDecryptFailed,  ///< a stored key or ciphertext was altered or moved, or the master key is gone
  kUnavailable,    ///< the database (or the audit log) could not be written
};
std::string_view to_string(RefusalReason reason);

struct Refusal {
  RefusalReason reason;
  std::string message;  ///< for logs and the plugin's error; never contains a value
};

/// One released secret value, in locked memory that is wiped when the lease dies. Move-only:
/// hold it for the duration of one plugin call, then let it go.
class SecretLease {
 public:
  SecretLease(std::string name, int version, vault::SecureBuffer value)
      : name_(std::move(name)), version_(version), value_(std::move(value)) {}
  SecretLease(SecretLease&&) noexcept = default;
  SecretLease& operator=(SecretLease&&) noexcept = default;
  SecretLease(const SecretLease&) = delete;
  SecretLease& operator=(const SecretLease&) = delete;

  const std::string& name() const { return name_; }
  int version() const { return version_; }
  /// The value; lives only as long as this lease.
  std::string_view value() const { return value_.as_chars(); }

 private:
  std::string name_;
  int version_;
  vault::SecureBuffer value_;
};

/// A lease or the reason there is none.
class ReleaseResult {
 public:
  ReleaseResult(SecretLease lease) : state_(std::move(lease)) {}  // NOLINT(google-explicit-*)
  ReleaseResult(Refusal refusal) : state_(std::move(refusal)) {}  // NOLINT(google-explicit-*)
  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  SecretLease& lease() { return std::get<SecretLease>(state_); }
  const Refusal& refusal() const { return std::get<Refusal>(state_); }

 private:
  std::variant<SecretLease, Refusal> state_;
};

/// One secret in a listing: never its value.
struct SecretInfo {
  std::string name;
  int version = 0;                                    ///< the newest
  std::vector<std::pair<int, std::string>> versions;  ///< version and created_at (RFC 3339 UTC)
  std::string updated_at;
};

struct SecretServiceOptions {
  int keep_versions = 5;
  bool cache_data_keys = true;  ///< keep unwrapped data keys in locked memory between releases
};

class SecretService {
 public:
  SecretService(storage::DbPool& pool, auth::AuthService& auth,
                std::shared_ptr<MasterKeyring> keyring, SecretServiceOptions options);

  /// Releases the newest version of `name` of `org_id` to `plugin` for one call inside `session`.
  /// Checks, in order: the session is valid right now, it belongs to `org_id`, `name` matches one
  /// of the plugin's `declared_globs`, the organization granted it to `plugin`, it exists, it
  /// decrypts. Every release and every refusal is appended to the audit log (never the value).
  /// `done` runs once, on a database thread or the caller's.
  void release(const auth::SessionContext& session, std::string plugin,
               const std::vector<std::string>& declared_globs, std::string org_id, std::string name,
               std::function<void(ReleaseResult)> done);

  // The storage operations below run inside the caller's transaction (which the caller commits)
  // and append their audit record to it. They validate names themselves.

  /// Stores `value` as a new version (creating the organization's data key on first use) and
  /// drops versions beyond keep_versions. Returns the new version.
  Expected<int> put(pqxx::transaction_base& tx, const auth::SessionContext& actor,
                    const std::string& org_id, const std::string& name, vault::ByteView value);

  /// Deletes every version. Returns how many were deleted (0: no such secret, nothing audited).
  Expected<int> remove(pqxx::transaction_base& tx, const auth::SessionContext& actor,
                       const std::string& org_id, const std::string& name);

  /// Secrets whose name sorts after `after`, at most `limit` of them, by name.
  std::vector<SecretInfo> list(pqxx::transaction_base& tx, const std::string& org_id,
                               const std::string& after, int limit);

  /// Re-seals every secret of `org_id` under a fresh data key (version + 1) and deletes the old
  /// key. Returns how many secret versions were re-sealed.
  Expected<int> rotate_org_key(pqxx::transaction_base& tx, const auth::SessionContext& actor,
                               const std::string& org_id);

  /// Forgets cached data keys (all, or one organization's).
  void drop_cached_keys(const std::string& org_id = {});

  storage::DbPool& pool() { return pool_; }

 private:
  struct WrappedRow {
    int version = 0;
    vault::WrappedDataKey wrapped;
  };
  /// The data key of a stored row: from the cache when the stored bytes are unchanged, else
  /// unwrapped with the master key named by the row.
  vault::Result<std::shared_ptr<const vault::DataKey>> data_key(const std::string& org_id,
                                                                const WrappedRow& row);
  /// The organization's active data key, created (under the current master key) if missing.
  Expected<std::shared_ptr<const vault::DataKey>> active_data_key(pqxx::transaction_base& tx,
                                                                  const std::string& org_id);
  /// The master key new data keys are wrapped with: the one named in hub_meta.
  Expected<std::shared_ptr<const vault::MasterKey>> wrapping_master_key(pqxx::transaction_base& tx);
  void refuse(const auth::SessionContext& session, const std::string& plugin,
              const std::string& org_id, const std::string& name, Refusal refusal,
              std::function<void(ReleaseResult)> done);

  storage::DbPool& pool_;
  auth::AuthService& auth_;
  std::shared_ptr<MasterKeyring> keyring_;
  SecretServiceOptions options_;

  struct CachedKey {
    vault::WrappedDataKey wrapped;  ///< as stored: a changed row is unwrapped afresh
    std::shared_ptr<const vault::DataKey> key;
  };
  std::mutex cache_mutex_;
  std::map<std::string, CachedKey> cache_;  ///< by organization: its most recently used key
};

}  // namespace helm::secrets
