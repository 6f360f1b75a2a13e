/// @brief The master keys (KEKs) a hub process holds: loaded at start from a 0600 key file, the
/// environment or a development key file, checked against the check value stored in the database,
/// and re-read from the key file on SIGHUP or when a data key wrapped by an unknown key turns up,
/// so a master-key rotation finishes without a restart and without a failed release.
#pragma once

#include <sys/stat.h>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "helm/config/hub_config.hpp"
#include "helm/core/expected.hpp"
#include "helm/vault/master_key.hpp"

namespace pqxx {
class connection_base;
}

namespace helm::secrets {

/// Where the master key comes from, resolved from the configuration.
struct MasterKeySource {
  std::filesystem::path file;  ///< empty when the key comes from the environment
  bool from_environment = false;
  bool development = false;  ///< a generated DATA_DIR/master.key
};

/// Resolves the source: `vault.master_key_file`, else HELM_MASTER_KEY (if set, unless
/// `vault.dev_master_key` asks for the development key), else the development key
/// DATA_DIR/master.key (the default when nothing is configured; the hub warns loudly).
Expected<MasterKeySource> resolve_master_key_source(const config::HubConfig& cfg,
                                                    const std::string& data_dir, bool env_key_set);

class MasterKeyring {
 public:
  /// Loads the key from `source`. A development key file is generated (0600, loud warning) only
  /// when `may_generate` and it does not exist yet. An environment key is removed from the
  /// environment after loading.
  static Expected<std::shared_ptr<MasterKeyring>> load(const MasterKeySource& source,
                                                       bool may_generate);
  /// A keyring holding just `key`, with no file to re-read (tests, tools).
  static std::shared_ptr<MasterKeyring> of(vault::MasterKey key);

  /// The key new data keys are wrapped with: the most recently loaded one.
  std::shared_ptr<const vault::MasterKey> current() const;

  /// The key whose check value is `kcv`; if none is held, re-reads the key file once (when it
  /// changed since the last read) and looks again. Null when no such key can be had.
  std::shared_ptr<const vault::MasterKey> find(std::string_view kcv);

  /// Re-reads the key file; a new key becomes current and the old ones stay usable for data keys
  /// not yet re-wrapped. Error for an environment key or an unreadable file (keys unchanged).
  Status reload();

  /// "key file /path", "environment variable HELM_MASTER_KEY" or "key (in memory)".
  std::string describe() const;

 private:
  MasterKeyring() = default;
  Status reload_locked(bool only_if_changed);

  std::filesystem::path file_;
  std::string description_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const vault::MasterKey>> keys_;  ///< oldest first; back() current
  struct stat file_stat_ {};
};

/// Refuses a key whose check value differs from the one in hub_meta ('vault_kcv'), with a message
/// naming the fix. The check value is recorded when the first data key is wrapped (so hubs that
/// never stored a secret do not pin a development key) and changed only by a master-key rotation.
Status check_master_key(pqxx::connection_base& conn, const vault::MasterKey& key,
                        const std::string& key_description);

/// The configured master keyring for an admin command (never generates a key; the caller checks it
/// with check_master_key). `override_file` (--master-key-file) takes precedence over the
/// configuration.
Expected<std::shared_ptr<MasterKeyring>> load_admin_keyring(const config::HubConfig& cfg,
                                                            const std::string& data_dir,
                                                            const std::string& override_file);

}  // namespace helm::secrets
