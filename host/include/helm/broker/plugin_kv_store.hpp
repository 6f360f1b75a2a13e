/// @brief A plugin's private key-value storage in PostgreSQL (table plugin_kv): values scoped to
/// the plugin and to one organization or the whole hub, with a value-size and a key-count cap.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <helm/plugin_abi.h>

namespace helm::storage {
class DbPool;
}

namespace helm::broker {

/// Limits of a PluginKvStore.
struct PluginKvStoreOptions {
  /// Largest value put() accepts, in bytes (RESOURCE_EXHAUSTED beyond).
  std::size_t max_value_bytes = 1024 * 1024;
  /// Keys one plugin may hold in one scope (one organization, or hub-wide); put() of a new key
  /// beyond it is RESOURCE_EXHAUSTED. Overwriting or deleting an existing key always works.
  std::size_t max_keys_per_scope = 10'000;
};

/// The store behind the host API's kv_get and kv_put. Thread-safe. Every call blocks the calling
/// thread on the database (through DbPool::run), so it must not be called on an I/O thread nor
/// on one of the pool's own workers.
///
/// A key lives in the scope (plugin, organization_id): a plugin never sees another plugin's
/// keys, an organization's keys are separate from every other organization's and from the
/// hub-wide keys (organization_id empty). Deleting an organization deletes its keys.
class PluginKvStore {
 public:
  /// Longest key in bytes.
  static constexpr std::size_t kMaxKeyBytes = 256;

  /// `pool` must outlive the store; its database must have the plugin_kv migration applied.
  explicit PluginKvStore(storage::DbPool& pool, PluginKvStoreOptions options = {});

  /// Reads `key` of `plugin` in `organization_id` (a UUID, or empty for hub-wide) into `out`
  /// (replacing its contents; any bytes, NUL included). Returns OK; NOT_FOUND when the key is
  /// absent (`out` untouched); INVALID_INPUT for an empty plugin name, an organization id that is
  /// neither empty nor a lower-case UUID, or a key that is not 1..kMaxKeyBytes bytes of UTF-8
  /// without NUL; UNAVAILABLE when the database cannot be reached; INTERNAL for an unexpected
  /// database error. `error` is filled on every status but OK.
  helm_status get(std::string_view plugin, std::string_view organization_id, std::string_view key,
                  std::string& out, std::string& error) const;

  /// Stores `value` (any bytes, possibly empty) under `key`, replacing an old value, or deletes
  /// the key when `value` is nullopt (deleting an absent key is OK). Returns OK; INVALID_INPUT as
  /// for get(); RESOURCE_EXHAUSTED for a value over max_value_bytes or a new key beyond
  /// max_keys_per_scope; NOT_FOUND when the organization does not exist; UNAVAILABLE when the
  /// database cannot be reached; INTERNAL for an unexpected database error. `error` is filled on
  /// every status but OK.
  helm_status put(std::string_view plugin, std::string_view organization_id, std::string_view key,
                  std::optional<std::string_view> value, std::string& error);

 private:
  storage::DbPool& pool_;
  PluginKvStoreOptions options_;
};

}  // namespace helm::broker
