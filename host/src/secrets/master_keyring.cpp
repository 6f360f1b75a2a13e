#include "helm/secrets/master_keyring.hpp"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "helm/log/logger.hpp"

namespace helm::secrets {
namespace fs = std::filesystem;

namespace {

bool same_file_state(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

Expected<MasterKeySource> resolve_master_key_source(const config::HubConfig& cfg,
                                                    const std::string& data_dir, bool env_key_set) {
  MasterKeySource source;
  if (!cfg.vault.master_key_file.empty()) {
    source.file = cfg.vault.master_key_file;
    return source;
  }
  if (env_key_set && !cfg.vault.dev_master_key) {
    source.from_environment = true;
    return source;
  }
  if (data_dir.empty() || data_dir == "-") {
    return Error{
        "no vault master key: set vault.master_key_file (HELM_VAULT_MASTER_KEY_FILE) to a 0600 "
        "file holding 64 hex characters, or HELM_MASTER_KEY, or give --data-dir DIR to use the "
        "development key DIR/master.key"};
  }
  source.file = fs::path(data_dir) / "master.key";
  source.development = true;
  return source;
}

Expected<std::shared_ptr<MasterKeyring>> MasterKeyring::load(const MasterKeySource& source,
                                                             bool may_generate) {
  std::shared_ptr<MasterKeyring> ring(new MasterKeyring());
  if (source.from_environment) {
    auto key = vault::MasterKey::from_env();
    // The variable is read once; children and /proc/PID/environ should not see it afterwards.
    ::unsetenv(std::string(vault::kMasterKeyEnvVar).c_str());
    if (!key) return Error{key.error().message};
    ring->description_ = "environment variable " + std::string(vault::kMasterKeyEnvVar);
    ring->keys_.push_back(std::make_shared<const vault::MasterKey>(std::move(key).value()));
    return ring;
  }
  ring->file_ = source.file;
  ring->description_ = "key file " + source.file.string();
  std::error_code ec;
  if (source.development && may_generate && !fs::exists(source.file, ec)) {
    auto key = vault::MasterKey::generate_dev_key(source.file);
    if (!key) return Error{key.error().message};
    log::warn(
        "DEVELOPMENT MASTER KEY: generated a vault master key inside the data dir, next to the "
        "data it protects. Anyone who can read the data dir can read every secret. For "
        "production set vault.master_key_file to a 0600 key file kept elsewhere, or "
        "HELM_MASTER_KEY.",
        {{"key_file", source.file.string()}, {"check_value", key->check_value()}});
  } else if (source.development) {
    log::warn(
        "DEVELOPMENT MASTER KEY in use: the vault master key lives inside the data dir; for "
        "production set vault.master_key_file or HELM_MASTER_KEY",
        {{"key_file", source.file.string()}});
  }
  std::lock_guard lock(ring->mutex_);
  if (auto st = ring->reload_locked(false); !st) return st.error();
  return ring;
}

std::shared_ptr<MasterKeyring> MasterKeyring::of(vault::MasterKey key) {
  std::shared_ptr<MasterKeyring> ring(new MasterKeyring());
  ring->description_ = "key (in memory)";
  ring->keys_.push_back(std::make_shared<const vault::MasterKey>(std::move(key)));
  return ring;
}

Status MasterKeyring::reload_locked(bool only_if_changed) {
  if (file_.empty())
    return Error{"the master key came from " + description_ + "; nothing to re-read"};
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) return Error{"cannot stat " + file_.string()};
  if (only_if_changed && same_file_state(st, file_stat_)) return {};
  auto key = vault::MasterKey::from_file(file_);
  if (!key) return Error{key.error().message};
  file_stat_ = st;
  for (auto it = keys_.begin(); it != keys_.end(); ++it) {
    if ((*it)->check_value() == key->check_value()) {
      // Already held: make it current again.
      auto held = *it;
      keys_.erase(it);
      keys_.push_back(std::move(held));
      return {};
    }
  }
  keys_.push_back(std::make_shared<const vault::MasterKey>(std::move(key).value()));
  if (keys_.size() > 1) {
    log::info("vault master key loaded",
              {{"source", description_}, {"check_value", keys_.back()->check_value()}});
  }
  return {};
}

Status MasterKeyring::reload() {
  std::lock_guard lock(mutex_);
  return reload_locked(false);
}

std::shared_ptr<const vault::MasterKey> MasterKeyring::current() const {
  std::lock_guard lock(mutex_);
  return keys_.back();
}

std::shared_ptr<const vault::MasterKey> MasterKeyring::find(std::string_view kcv) {
  std::lock_guard lock(mutex_);
  auto lookup = [&]() -> std::shared_ptr<const vault::MasterKey> {
    for (const auto& k : keys_) {
      if (k->check_value() == kcv) return k;
    }
    return nullptr;
  };
  if (auto k = lookup()) return k;
  if (file_.empty()) return nullptr;
  if (auto st = reload_locked(true); !st) {
    log::warn("cannot re-read the vault master key file", {{"error", st.error().message}});
    return nullptr;
  }
  return lookup();
}

std::string MasterKeyring::describe() const {
  std::lock_guard lock(mutex_);
  return description_;
}

Status check_master_key(pqxx::connection_base& conn, const vault::MasterKey& key,
                        const std::string& key_description) {
  pqxx::read_transaction tx(conn);
  const auto rows = tx.exec("SELECT value FROM hub_meta WHERE key = 'vault_kcv'");
  if (rows.empty()) return {};  // nothing wrapped yet: the first data key records its key
  const auto stored = rows[0][0].as<std::string>();
  if (auto ok = key.verify_check_value(stored); !ok) {
    return Error{
        "wrong vault master key: the " + key_description + " holds key " + key.check_value() +
        ", but this hub's vault was sealed with key " + stored +
        ". Start with the master key this database was created with (vault.master_key_file "
        "or HELM_MASTER_KEY); if the key was rotated, use the new key file given to "
        "`helm-hub vault rotate-master`."};
  }
  return {};
}

Expected<std::shared_ptr<MasterKeyring>> load_admin_keyring(const config::HubConfig& cfg,
                                                            const std::string& data_dir,
                                                            const std::string& override_file) {
  MasterKeySource source;
  if (!override_file.empty()) {
    source.file = override_file;
  } else {
    auto resolved = resolve_master_key_source(
        cfg, data_dir, std::getenv(std::string(vault::kMasterKeyEnvVar).c_str()) != nullptr);
    if (!resolved) return resolved.error();
    source = *resolved;
  }
  return MasterKeyring::load(source, false);
}

}  // namespace helm::secrets
