#include "helm/broker/plugin_kv_store.hpp"

#include <cstdint>
#include <pqxx/pqxx>

#include <nlohmann/json.hpp>

#include "helm/api/api.hpp"
#include "helm/log/logger.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::broker {
namespace {

// First half of the two-key advisory lock that serializes inserts of new keys into one scope, so
// two writers cannot both pass the key-count check ("PKVS"). The two-key lock space is separate
// from the one-key space the migrations lock uses.
constexpr std::int32_t kNewKeyLockClass = 0x504b5653;

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF; and no NUL, which a
// PostgreSQL text column cannot hold.
bool is_utf8_without_nul(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t code_point = 0;
    std::uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      length = 2, code_point = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, code_point = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, code_point = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (cc & 0x3F);
    }
    if (code_point < min || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

helm_status check_scope_and_key(std::string_view plugin, std::string_view organization_id,
                                std::string_view key, std::string& error) {
  if (plugin.empty() || plugin.find('\0') != std::string_view::npos) {
    error = "the plugin name is empty or contains NUL";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (!organization_id.empty() && !api::is_uuid(organization_id)) {
    error =
        "the organization id is not a UUID (lower-case, 36 characters); pass an empty id for "
        "the hub-wide scope";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (key.empty() || key.size() > PluginKvStore::kMaxKeyBytes) {
    error = "the key has " + std::to_string(key.size()) + " bytes: keys are 1 to " +
            std::to_string(PluginKvStore::kMaxKeyBytes) + " bytes of UTF-8";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (!is_utf8_without_nul(key)) {
    error = "the key is not valid UTF-8 or contains NUL: keys are 1 to " +
            std::to_string(PluginKvStore::kMaxKeyBytes) + " bytes of UTF-8 without NUL";
    return HELM_STATUS_INVALID_INPUT;
  }
  return HELM_STATUS_OK;
}

// Maps a failure of the pool itself (as opposed to an outcome the job decided) to a status.
helm_status database_failure(std::string_view operation, std::string_view plugin,
                             const storage::DbError& db_error, std::string& error) {
  if (db_error.kind == storage::DbErrorKind::kQuery) {
    log::error("plugin key-value store: database error",
               {{"operation", operation}, {"plugin", plugin}, {"error", db_error.message}});
    error = "the key-value store failed unexpectedly; the hub log has the details";
    return HELM_STATUS_INTERNAL;
  }
  log::warn("plugin key-value store: database unavailable",
            {{"operation", operation}, {"plugin", plugin}, {"error", db_error.message}});
  error = db_error.kind == storage::DbErrorKind::kOverloaded
              ? "the key-value store is unavailable: the hub's database is overloaded; retry later"
              : "the key-value store is unavailable: the hub cannot reach its database; retry "
                "later";
  return HELM_STATUS_UNAVAILABLE;
}

// "plugin = $1 AND org_id ..." for one scope: hub-wide, or the organization in parameter
// $<org_parameter>. Every statement passes the plugin as $1 and the key as $2.
std::string scope_condition(bool hub_wide, int org_parameter) {
  return hub_wide ? "plugin = $1 AND org_id IS NULL"
                  : "plugin = $1 AND org_id = $" + std::to_string(org_parameter) + "::uuid";
}

}  // namespace

PluginKvStore::PluginKvStore(storage::DbPool& pool, PluginKvStoreOptions options)
    : pool_(pool), options_(options) {}

helm_status PluginKvStore::get(std::string_view plugin, std::string_view organization_id,
                               std::string_view key, std::string& out, std::string& error) const {
  if (const auto status = check_scope_and_key(plugin, organization_id, key, error);
      status != HELM_STATUS_OK) {
    return status;
  }
  const bool hub_wide = organization_id.empty();
  const std::string sql =
      "SELECT value FROM plugin_kv WHERE " + scope_condition(hub_wide, 3) + " AND key = $2";
  const std::string plugin_text(plugin);
  const std::string key_text(key);
  const std::string org_text(organization_id);
  std::optional<std::string> value;
  const auto db_error = pool_.run([&](pqxx::connection_base& conn) {
    pqxx::nontransaction tx(conn);
    const pqxx::result rows = hub_wide ? tx.exec_params(sql, plugin_text, key_text)
                                       : tx.exec_params(sql, plugin_text, key_text, org_text);
    if (!rows.empty()) value = pqxx::binarystring(rows[0][0]).str();
  });
  if (db_error) return database_failure("get", plugin, *db_error, error);
  if (!value) {
    error = "no value is stored under this key";
    return HELM_STATUS_NOT_FOUND;
  }
  out = std::move(*value);
  return HELM_STATUS_OK;
}

helm_status PluginKvStore::put(std::string_view plugin, std::string_view organization_id,
                               std::string_view key, std::optional<std::string_view> value,
                               std::string& error) {
  if (const auto status = check_scope_and_key(plugin, organization_id, key, error);
      status != HELM_STATUS_OK) {
    return status;
  }
  if (value && value->size() > options_.max_value_bytes) {
    error = "the value has " + std::to_string(value->size()) + " bytes, more than the limit of " +
            std::to_string(options_.max_value_bytes) + ": store it in smaller pieces";
    return HELM_STATUS_RESOURCE_EXHAUSTED;
  }
  const bool hub_wide = organization_id.empty();
  const std::string plugin_text(plugin);
  const std::string key_text(key);
  const std::string org_text(organization_id);

  if (!value) {
    const std::string sql =
        "DELETE FROM plugin_kv WHERE " + scope_condition(hub_wide, 3) + " AND key = $2";
    const auto db_error = pool_.run([&](pqxx::connection_base& conn) {
      pqxx::nontransaction tx(conn);
      if (hub_wide) {
        tx.exec_params(sql, plugin_text, key_text);
      } else {
        tx.exec_params(sql, plugin_text, key_text, org_text);
      }
    });
    if (db_error) return database_failure("delete", plugin, *db_error, error);
    return HELM_STATUS_OK;
  }

  // Statements that carry the value pass it as $3 (and the organization as $4); the others
  // pass the organization as $3. PostgreSQL refuses a parameter that a statement never uses.
  const std::string update_sql = "UPDATE plugin_kv SET value = $3, updated_at = now() WHERE " +
                                 scope_condition(hub_wide, 4) + " AND key = $2";
  const std::string lock_sql = "SELECT pg_advisory_xact_lock(" + std::to_string(kNewKeyLockClass) +
                               ", hashtext($1 || '/' || $2))";
  const std::string count_sql =
      "SELECT count(*), coalesce(bool_or(key = $2), false) FROM plugin_kv"
      " WHERE " +
      scope_condition(hub_wide, 3);
  const std::string insert_sql =
      hub_wide ? "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3)"
               : "INSERT INTO plugin_kv (plugin, key, value, org_id) VALUES ($1, $2, $3, $4::uuid)";
  const pqxx::binarystring bytes(value->data(), value->size());

  helm_status outcome = HELM_STATUS_OK;
  const auto db_error = pool_.run([&](pqxx::connection_base& conn) {
    outcome = HELM_STATUS_OK;
    pqxx::work tx(conn);
    const auto exec_with_value = [&](const std::string& sql) {
      return hub_wide ? tx.exec_params(sql, plugin_text, key_text, bytes)
                      : tx.exec_params(sql, plugin_text, key_text, bytes, org_text);
    };
    try {
      // Overwriting an existing key needs no count: the common case takes no lock.
      if (exec_with_value(update_sql).affected_rows() == 0) {
        tx.exec_params(lock_sql, plugin_text, org_text);  // "" for hub-wide
        const auto row = hub_wide ? tx.exec_params1(count_sql, plugin_text, key_text)
                                  : tx.exec_params1(count_sql, plugin_text, key_text, org_text);
        if (row[1].as<bool>()) {
          exec_with_value(
              update_sql);  // inserted by a concurrent writer between our update and the lock
        } else if (row[0].as<std::size_t>() >= options_.max_keys_per_scope) {
          outcome = HELM_STATUS_RESOURCE_EXHAUSTED;
          return;  // rolls back
        } else {
          exec_with_value(insert_sql);
        }
      }
      tx.commit();
    } catch (const pqxx::foreign_key_violation&) {
      outcome = HELM_STATUS_NOT_FOUND;  // the organization does not exist (or was just deleted)
    }
  });
  if (db_error) return database_failure("put", plugin, *db_error, error);
  if (outcome == HELM_STATUS_RESOURCE_EXHAUSTED) {
    error = "this scope already holds " + std::to_string(options_.max_keys_per_scope) +
            " keys, the limit: delete keys you no longer need";
  } else if (outcome == HELM_STATUS_NOT_FOUND) {
    error = "organization " + org_text + " does not exist";
  }
  return outcome;
}

}  // namespace helm::broker
