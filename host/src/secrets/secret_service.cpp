#include "helm/secrets/secret_service.hpp"

#include <pqxx/pqxx>

#include "helm/auth/auth_service.hpp"
#include "helm/auth/session_context.hpp"
#include "helm/log/logger.hpp"
#include "helm/secrets/audit_log.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/vault/names.hpp"

namespace helm::secrets {
namespace {

using nlohmann::json;

constexpr const char* kCreatedAt =
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

// Plugin names as the plugin manager accepts them: a short lower-case token.
bool valid_plugin_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.'))) return false;
  }
  return true;
}

std::string bytes_text(const vault::Bytes& b) {
  return std::string(b.begin(), b.end());
}

vault::Bytes field_bytes(const pqxx::field& f) {
  const pqxx::binarystring b(f);
  return vault::Bytes(b.begin(), b.end());
}

// Serializes writers of one organization's vault rows (puts, deletes, key rotation).
void lock_org(pqxx::transaction_base& tx, const std::string& org_id) {
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended('helm-vault:' || $1, 0))", org_id);
}

vault::AuditRecord record_for(const auth::SessionContext& session, const std::string& action,
                              const std::string& plugin, const std::string& org_id,
                              const std::string& name) {
  auto rec = audit_record(session, action);
  rec.plugin = valid_plugin_name(plugin) ? plugin : "";
  rec.org_id = vault::is_valid_org_id(org_id) ? org_id : "";
  rec.secret_name = vault::is_valid_secret_name(name) ? name : "";
  return rec;
}

vault::AuditOutcome outcome_of(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kDecryptFailed:
    case RefusalReason::kUnavailable:
      return vault::AuditOutcome::kFailed;
    default:
      return vault::AuditOutcome::kDenied;
  }
}

}  // namespace

std::string_view to_string(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kInvalidRequest:
      return "invalid_request";
    case RefusalReason::kSessionInvalid:
      return "session_invalid";
    case RefusalReason::kWrongOrganization:
      return "wrong_organization";
    case RefusalReason::kNotDeclared:
      return "not_declared";
    case RefusalReason::kNotGranted:
      return "not_granted";
    case RefusalReason::kNoSuchSecret:
      return "no_such_secret";
    case RefusalReason::kDecryptFailed:
      return "decrypt_failed";
    case RefusalReason::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

SecretService::SecretService(storage::DbPool& pool, auth::AuthService& auth,
                             std::shared_ptr<MasterKeyring> keyring, SecretServiceOptions options)
    : pool_(pool), auth_(auth), keyring_(std::move(keyring)), options_(options) {
  vault::ensure_sodium_initialized();
}

void SecretService::drop_cached_keys(const std::string& org_id) {
  std::lock_guard lock(cache_mutex_);
  if (org_id.empty()) {
    cache_.clear();
  } else {
    cache_.erase(org_id);
  }
}

vault::Result<std::shared_ptr<const vault::DataKey>> SecretService::data_key(
    const std::string& org_id, const WrappedRow& row) {
  if (options_.cache_data_keys) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(org_id); it != cache_.end()) {
      const auto& w = it->second.wrapped;
      if (w.key_version == row.wrapped.key_version && w.format == row.wrapped.format &&
          w.master_key_id == row.wrapped.master_key_id && w.nonce == row.wrapped.nonce &&
          w.ciphertext == row.wrapped.ciphertext) {
        return it->second.key;
      }
    }
  }
  auto master = keyring_->find(row.wrapped.master_key_id);
  if (!master) {
    return vault::make_error(vault::VaultErrorCode::kWrongMasterKey,
                             "data key " + std::to_string(row.version) +
                                 " is wrapped by master key " + row.wrapped.master_key_id +
                                 ", which this hub does not hold (" + keyring_->describe() + ")");
  }
  auto key = vault::unwrap_data_key(*master, org_id, row.wrapped);
  if (!key) return std::move(key).error();
  auto shared = std::make_shared<const vault::DataKey>(std::move(key).value());
  if (options_.cache_data_keys) {
    std::lock_guard lock(cache_mutex_);
    auto& slot = cache_[org_id];
    // Keep the newest version an organization uses; an older one is about to be rotated away.
    if (slot.key == nullptr || slot.wrapped.key_version <= row.wrapped.key_version) {
      slot = CachedKey{row.wrapped, shared};
    }
  }
  return shared;
}

Expected<std::shared_ptr<const vault::MasterKey>> SecretService::wrapping_master_key(
    pqxx::transaction_base& tx) {
  tx.exec_params(
      "INSERT INTO hub_meta (key, value) VALUES ('vault_kcv', $1) ON CONFLICT (key) DO NOTHING",
      keyring_->current()->check_value());
  // FOR SHARE: a master-key rotation (which updates this row) cannot commit in between, so the
  // new data key is wrapped by the key the rotation leaves in force.
  const auto kcv = tx.exec("SELECT value FROM hub_meta WHERE key = 'vault_kcv' FOR SHARE")[0][0]
                       .as<std::string>();
  auto key = keyring_->find(kcv);
  if (!key) {
    return Error{"the vault's master key (check value " + kcv + ") is not loaded; this hub has " +
                 keyring_->describe()};
  }
  return key;
}

Expected<std::shared_ptr<const vault::DataKey>> SecretService::active_data_key(
    pqxx::transaction_base& tx, const std::string& org_id) {
  const auto rows = tx.exec_params(
      "SELECT version, format, master_kcv, nonce, ciphertext FROM vault_data_keys"
      " WHERE org_id = $1 AND active",
      org_id);
  if (!rows.empty()) {
    WrappedRow row;
    row.version = rows[0][0].as<int>();
    row.wrapped = {rows[0][1].as<int>(), row.version, rows[0][2].as<std::string>(),
                   field_bytes(rows[0][3]), field_bytes(rows[0][4])};
    auto key = data_key(org_id, row);
    if (!key) {
      return Error{"cannot unwrap the organization's data key " + std::to_string(row.version) +
                   ": " + key.error().message};
    }
    return std::move(key).value();
  }
  auto master = wrapping_master_key(tx);
  if (!master) return master.error();
  const int version = tx.exec_params1(
                            "SELECT coalesce(max(version), 0) + 1 FROM vault_data_keys"
                            " WHERE org_id = $1",
                            org_id)[0]
                          .as<int>();
  auto key = vault::DataKey::generate(version);
  if (!key) return Error{key.error().message};
  auto wrapped = vault::wrap_data_key(**master, org_id, *key);
  if (!wrapped) return Error{wrapped.error().message};
  tx.exec_params(
      "INSERT INTO vault_data_keys (org_id, version, format, master_kcv, nonce, ciphertext)"
      " VALUES ($1, $2, $3, $4, $5, $6)",
      org_id, version, wrapped->format, wrapped->master_key_id,
      pqxx::binarystring(bytes_text(wrapped->nonce)),
      pqxx::binarystring(bytes_text(wrapped->ciphertext)));
  return std::make_shared<const vault::DataKey>(std::move(key).value());
}

Expected<int> SecretService::put(pqxx::transaction_base& tx, const auth::SessionContext& actor,
                                 const std::string& org_id, const std::string& name,
                                 vault::ByteView value) {
  if (!vault::is_valid_org_id(org_id)) return Error{"invalid organization id"};
  if (!vault::is_valid_secret_name(name)) return Error{"invalid secret name"};
  if (value.empty() || value.size() > vault::kMaxSecretBytes) {
    return Error{"a secret value must be 1 to " + std::to_string(vault::kMaxSecretBytes) +
                 " bytes long"};
  }
  lock_org(tx, org_id);
  auto key = active_data_key(tx, org_id);
  if (!key) return key.error();
  const int version = tx.exec_params1(
                            "SELECT coalesce(max(version), 0) + 1 FROM vault_secrets"
                            " WHERE org_id = $1 AND name = $2",
                            org_id, name)[0]
                          .as<int>();
  auto sealed = vault::seal_secret(**key, org_id, name, version, value);
  if (!sealed) return Error{sealed.error().message};
  tx.exec_params(
      "INSERT INTO vault_secrets (org_id, name, version, data_key_version, format, nonce,"
      " ciphertext, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      org_id, name, version, sealed->data_key_version, sealed->format,
      pqxx::binarystring(bytes_text(sealed->nonce)),
      pqxx::binarystring(bytes_text(sealed->ciphertext)),
      actor.principal_id.empty() ? std::optional<std::string>() : actor.principal_id);
  tx.exec_params("DELETE FROM vault_secrets WHERE org_id = $1 AND name = $2 AND version <= $3",
                 org_id, name, version - options_.keep_versions);
  auto rec = record_for(actor, "secret.write", "", org_id, name);
  rec.secret_version = version;
  rec.extra = {{"data_key_version", sealed->data_key_version}};
  if (auto st = append_audit(tx, rec); !st) return st.error();
  return version;
}

Expected<int> SecretService::remove(pqxx::transaction_base& tx, const auth::SessionContext& actor,
                                    const std::string& org_id, const std::string& name) {
  if (!vault::is_valid_org_id(org_id)) return Error{"invalid organization id"};
  if (!vault::is_valid_secret_name(name)) return Error{"invalid secret name"};
  lock_org(tx, org_id);
  const auto deleted =
      tx.exec_params("DELETE FROM vault_secrets WHERE org_id = $1 AND name = $2", org_id, name)
          .affected_rows();
  if (deleted == 0) return 0;
  auto rec = record_for(actor, "secret.delete", "", org_id, name);
  rec.extra = {{"versions_deleted", deleted}};
  if (auto st = append_audit(tx, rec); !st) return st.error();
  return static_cast<int>(deleted);
}

std::vector<SecretInfo> SecretService::list(pqxx::transaction_base& tx, const std::string& org_id,
                                            const std::string& after, int limit) {
  const auto rows = tx.exec_params(
      std::string("SELECT name, version, ") + kCreatedAt +
          " FROM vault_secrets WHERE org_id = $1 AND name IN (SELECT DISTINCT name FROM"
          " vault_secrets WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3)"
          " ORDER BY name, version",
      org_id, after, limit);
  std::vector<SecretInfo> out;
  for (const auto& r : rows) {
    const std::string name = r[0].c_str();
    if (out.empty() || out.back().name != name) out.push_back({name, 0, {}, ""});
    auto& info = out.back();
    info.version = r[1].as<int>();
    info.updated_at = r[2].c_str();
    info.versions.emplace_back(info.version, info.updated_at);
  }
  return out;
}

Expected<int> SecretService::rotate_org_key(pqxx::transaction_base& tx,
                                            const auth::SessionContext& actor,
                                            const std::string& org_id) {
  if (!vault::is_valid_org_id(org_id)) return Error{"invalid organization id"};
  lock_org(tx, org_id);
  // Every data key version still referenced, unwrapped.
  std::map<int, std::shared_ptr<const vault::DataKey>> old_keys;
  for (const auto& r :
       tx.exec_params("SELECT version, format, master_kcv, nonce, ciphertext FROM vault_data_keys"
                      " WHERE org_id = $1 FOR UPDATE",
                      org_id)) {
    WrappedRow row;
    row.version = r[0].as<int>();
    row.wrapped = {r[1].as<int>(), row.version, r[2].as<std::string>(), field_bytes(r[3]),
                   field_bytes(r[4])};
    auto key = data_key(org_id, row);
    if (!key) {
      return Error{"cannot unwrap data key " + std::to_string(row.version) + ": " +
                   key.error().message};
    }
    old_keys[row.version] = std::move(key).value();
  }
  auto master = wrapping_master_key(tx);
  if (!master) return master.error();
  const int version = old_keys.empty() ? 1 : old_keys.rbegin()->first + 1;
  auto fresh = vault::DataKey::generate(version);
  if (!fresh) return Error{fresh.error().message};
  auto wrapped = vault::wrap_data_key(**master, org_id, *fresh);
  if (!wrapped) return Error{wrapped.error().message};
  tx.exec_params("UPDATE vault_data_keys SET active = false WHERE org_id = $1", org_id);
  tx.exec_params(
      "INSERT INTO vault_data_keys (org_id, version, format, master_kcv, nonce, ciphertext)"
      " VALUES ($1, $2, $3, $4, $5, $6)",
      org_id, version, wrapped->format, wrapped->master_key_id,
      pqxx::binarystring(bytes_text(wrapped->nonce)),
      pqxx::binarystring(bytes_text(wrapped->ciphertext)));
  int resealed = 0;
  for (const auto& r : tx.exec_params(
           "SELECT name, version, data_key_version, format, nonce, ciphertext FROM vault_secrets"
           " WHERE org_id = $1 FOR UPDATE",
           org_id)) {
    const std::string name = r[0].c_str();
    vault::SealedSecret sealed{r[3].as<int>(), r[1].as<int>(), r[2].as<int>(), field_bytes(r[4]),
                               field_bytes(r[5])};
    const auto old = old_keys.find(sealed.data_key_version);
    if (old == old_keys.end()) {
      return Error{"secret " + name + " version " + std::to_string(sealed.version) +
                   " names data key " + std::to_string(sealed.data_key_version) +
                   ", which does not exist"};
    }
    auto again = vault::reseal_secret(*old->second, *fresh, org_id, name, sealed);
    if (!again) {
      return Error{"cannot re-seal secret " + name + " version " + std::to_string(sealed.version) +
                   ": " + again.error().message};
    }
    tx.exec_params(
        "UPDATE vault_secrets SET data_key_version = $4, format = $5, nonce = $6, ciphertext = $7"
        " WHERE org_id = $1 AND name = $2 AND version = $3",
        org_id, name, sealed.version, again->data_key_version, again->format,
        pqxx::binarystring(bytes_text(again->nonce)),
        pqxx::binarystring(bytes_text(again->ciphertext)));
    ++resealed;
  }
  tx.exec_params("DELETE FROM vault_data_keys WHERE org_id = $1 AND version <> $2", org_id,
                 version);
  auto rec = record_for(actor, "vault.rotate_org_key", "", org_id, "");
  rec.extra = {{"data_key_version", version}, {"secrets_resealed", resealed}};
  if (auto st = append_audit(tx, rec); !st) return st.error();
  drop_cached_keys(org_id);
  return resealed;
}

void SecretService::refuse(const auth::SessionContext& session, const std::string& plugin,
                           const std::string& org_id, const std::string& name, Refusal refusal,
                           std::function<void(ReleaseResult)> done) {
  auto rec = record_for(session, "secret.release", plugin, org_id, name);
  rec.outcome = outcome_of(refusal.reason);
  rec.reason = std::string(to_string(refusal.reason));
  if (refusal.reason == RefusalReason::kWrongOrganization) {
    rec.extra = {{"session_org_id", session.org_id}};
  }
  log::info("secret release refused", {{"plugin", rec.plugin},
                                       {"org_id", rec.org_id},
                                       {"secret", rec.secret_name},
                                       {"session_id", session.session_id},
                                       {"reason", rec.reason}});
  auto shared = std::make_shared<Refusal>(std::move(refusal));
  audit(pool_, std::move(rec),
        [shared, done = std::move(done)](bool) { done(ReleaseResult(std::move(*shared))); });
}

void SecretService::release(const auth::SessionContext& session, std::string plugin,
                            const std::vector<std::string>& declared_globs, std::string org_id,
                            std::string name, std::function<void(ReleaseResult)> done) {
  if (!valid_plugin_name(plugin) || !vault::is_valid_org_id(org_id) ||
      !vault::is_valid_secret_name(name)) {
    return refuse(session, plugin, org_id, name,
                  {RefusalReason::kInvalidRequest,
                   "the plugin name, organization id or secret name is malformed"},
                  std::move(done));
  }
  bool declared = false;
  for (const auto& glob : declared_globs) {
    if (vault::glob_match(glob, name)) {
      declared = true;
      break;
    }
  }
  auth_.check_still_valid(session, [this, session, plugin = std::move(plugin), declared,
                                    org_id = std::move(org_id), name = std::move(name),
                                    done = std::move(done)](bool valid) mutable {
    if (!valid) {
      return refuse(session, plugin, org_id, name,
                    {RefusalReason::kSessionInvalid,
                     "the session has expired, was logged out or revoked, or its account is "
                     "disabled"},
                    std::move(done));
    }
    if (session.org_id != org_id) {
      return refuse(
          session, plugin, org_id, name,
          {RefusalReason::kWrongOrganization, "the session belongs to another organization"},
          std::move(done));
    }
    if (!declared) {
      return refuse(session, plugin, org_id, name,
                    {RefusalReason::kNotDeclared,
                     "plugin " + plugin + " declares no secret matching " + name},
                    std::move(done));
    }
    struct Outcome {
      std::optional<SecretLease> lease;
      std::optional<Refusal> refusal;
    };
    auto out = std::make_shared<Outcome>();
    pool_.submit(
        [this, out, session, plugin, org_id, name](pqxx::connection_base& c) {
          pqxx::work tx(c);
          const auto row = tx.exec_params1(
              "SELECT EXISTS (SELECT 1 FROM plugin_secret_grants WHERE org_id = $1"
              " AND plugin = $2 AND secret_name = $3),"
              " s.version, s.data_key_version, s.format, s.nonce, s.ciphertext,"
              " k.format, k.master_kcv, k.nonce, k.ciphertext"
              " FROM (SELECT 1) AS one"
              " LEFT JOIN LATERAL (SELECT * FROM vault_secrets WHERE org_id = $1 AND name = $3"
              " ORDER BY version DESC LIMIT 1) AS s ON true"
              " LEFT JOIN vault_data_keys k ON k.org_id = $1 AND k.version = s.data_key_version",
              org_id, plugin, name);
          auto rec = record_for(session, "secret.release", plugin, org_id, name);
          if (!row[0].as<bool>()) {
            out->refusal = Refusal{RefusalReason::kNotGranted, "the organization has not granted " +
                                                                   name + " to plugin " + plugin};
          } else if (row[1].is_null()) {
            out->refusal = Refusal{RefusalReason::kNoSuchSecret, "no secret named " + name};
          } else {
            rec.secret_version = row[1].as<int>();
            vault::SealedSecret sealed{row[3].as<int>(), row[1].as<int>(), row[2].as<int>(),
                                       field_bytes(row[4]), field_bytes(row[5])};
            if (row[6].is_null()) {
              out->refusal = Refusal{RefusalReason::kDecryptFailed,
                                     "the data key that sealed " + name + " is missing"};
            } else {
              WrappedRow key_row;
              key_row.version = sealed.data_key_version;
              key_row.wrapped = {row[6].as<int>(), sealed.data_key_version,
                                 row[7].as<std::string>(), field_bytes(row[8]),
                                 field_bytes(row[9])};
              auto key = data_key(org_id, key_row);
              if (!key) {
                out->refusal = Refusal{RefusalReason::kDecryptFailed,
                                       "cannot unwrap the data key: " + key.error().message};
              } else {
                auto value = vault::open_secret(**key, org_id, name, sealed);
                if (!value) {
                  out->refusal = Refusal{RefusalReason::kDecryptFailed,
                                         "cannot open " + name + ": " + value.error().message};
                } else {
                  out->lease.emplace(name, sealed.version, std::move(value).value());
                }
              }
            }
          }
          if (out->refusal) {
            rec.outcome = outcome_of(out->refusal->reason);
            rec.reason = std::string(to_string(out->refusal->reason));
          }
          if (auto st = append_audit(tx, rec); !st) {
            out->lease.reset();
            out->refusal = Refusal{RefusalReason::kUnavailable, st.error().message};
            return;
          }
          tx.commit();
        },
        [out, session, plugin, org_id, name,
         done = std::move(done)](std::optional<storage::DbError> err) {
          if (err) {
            out->lease.reset();
            log::error("secret release failed: database", {{"error", err->message}});
            return done(ReleaseResult(Refusal{
                RefusalReason::kUnavailable, "the database is unavailable; nothing was released"}));
          }
          if (out->lease) {
            log::info("secret released", {{"plugin", plugin},
                                          {"org_id", org_id},
                                          {"secret", name},
                                          {"version", out->lease->version()},
                                          {"session_id", session.session_id}});
            return done(ReleaseResult(std::move(*out->lease)));
          }
          log::info("secret release refused", {{"plugin", plugin},
                                               {"org_id", org_id},
                                               {"secret", name},
                                               {"session_id", session.session_id},
                                               {"reason", to_string(out->refusal->reason)}});
          done(ReleaseResult(std::move(*out->refusal)));
        });
  });
}

}  // namespace helm::secrets
