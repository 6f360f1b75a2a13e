/// @brief The hub-side plugin manager: discovers plugin directories under `plugins.path`, loads
/// each through the loader (manifest, signature, ABI and configuration checks before any plugin
/// code runs), runs one instance per plugin, and gives it the capability broker — the host API
/// that grants only what its manifest declares. Enable, disable, reload and configuration at run
/// time; operations invoked inside a caller's session with input validation, timeout and
/// cancellation; per-organization enablement, settings and secret grants; the agent transport
/// seam (TransportLink).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <helm/plugin_abi.h>

#include "helm/auth/session_context.hpp"
#include "helm/plugins/transport_host.hpp"

namespace helm {
class TaskPool;
}
namespace helm::storage {
class DbPool;
}
namespace helm::secrets {
class SecretService;
}
namespace helm::auth {
class AuthService;
}
namespace helm::broker {
class HttpBroker;
class PluginKvStore;
class EventBus;
class TimerService;
}  // namespace helm::broker

namespace helm::plugins {

class PluginInstance;
class LoadedPlugin;
struct LoadOptions;

struct PluginManagerOptions {
  /// Directories searched for plugin directories (each a subdirectory holding manifest.json).
  /// Missing directories are skipped with a log line.
  std::vector<std::filesystem::path> search_path;
  /// A file of trusted publisher keys ("helm-ed25519:..." one per line; '#' comments); empty:
  /// no key is trusted.
  std::filesystem::path trusted_keys_file;
  bool allow_unsigned = false;
  /// A development publisher key (the build tree's dev-publisher/dev.pub) trusted in addition,
  /// with plugins it signed listed as development-signed; empty: none.
  std::filesystem::path dev_key_file;
  /// Private staging directories are created here; emptied by start().
  std::filesystem::path staging_root;
  /// Where a transport plugin's host calls go (the agent service); null: transports are refused.
  TransportHost* transport_host = nullptr;
  /// Persistence of hub-wide and per-organization settings and grants; null: in memory only.
  storage::DbPool* pool = nullptr;
  /// Secret release for plugins; null: release_secret answers UNSUPPORTED.
  secrets::SecretService* secrets = nullptr;
  /// Session checks for plugin calls (a session revoked mid-call stops releasing secrets).
  auth::AuthService* auth = nullptr;
  /// Worker threads: operation timeouts, lifecycle work. Required for invoke().
  TaskPool* workers = nullptr;
  /// Capability broker services; null ones answer UNSUPPORTED to the plugin.
  broker::HttpBroker* http = nullptr;
  broker::PluginKvStore* kv = nullptr;
  broker::EventBus* events = nullptr;
  broker::TimerService* timers = nullptr;
  /// Deadline of an operation whose manifest names none.
  std::chrono::milliseconds default_op_timeout{30000};
  /// How long disable/reload/shutdown wait for calls in flight before abandoning an instance.
  std::chrono::milliseconds drain_timeout{10000};
  /// Where install() puts plugin directories; empty: the first directory of search_path.
  std::filesystem::path install_dir;
  /// The largest plugin bundle install() accepts (content bytes of its files).
  std::size_t max_bundle_bytes = 64u * 1024 * 1024;
};

/// What the manager knows about one plugin directory.
struct PluginRecord {
  std::string name;  ///< the manifest's name, else the directory's name
  std::string version;
  std::string kind;
  std::string abi;
  std::string state;  ///< "running", "failed", "disabled" or "stopped"
  std::string signer;
  std::string last_error;
  std::filesystem::path directory;
  nlohmann::json manifest;                           ///< null when it could not be read
  std::string description;                           ///< the manifest's description
  nlohmann::json config = nlohmann::json::object();  ///< hub-wide configuration
  std::int64_t config_version = 1;                   ///< the ETag of the hub-wide config
  bool enabled = true;                               ///< the operator's switch
  std::uint64_t calls = 0;                           ///< operations invoked since start
  std::uint64_t calls_failed = 0;                    ///< of which ended with a non-OK status
  std::uint64_t violations = 0;                      ///< ABI violations absorbed
  std::string loaded_at;                             ///< RFC 3339, when the instance started
};

/// The result of a manager operation that may fail for a reason the REST layer maps.
struct ManagerOutcome {
  helm_status status = HELM_STATUS_OK;
  std::string message;
  /// Validation errors: JSON Pointer of the offending value and what is wrong with it.
  std::vector<std::pair<std::string, std::string>> errors;
  bool ok() const { return status == HELM_STATUS_OK; }
};

/// One organization's settings for one plugin.
struct OrgPluginSettings {
  bool enabled = false;
  nlohmann::json config = nlohmann::json::object();
  std::int64_t version = 0;  ///< 0: never written
  std::vector<std::string> granted_secrets;
};

/// The result of an operation: status OK with a JSON result, or a status with a message;
/// errors filled for input validation failures (status INVALID_INPUT).
struct OperationResult {
  helm_status status = HELM_STATUS_INTERNAL;
  std::string output;
  std::vector<std::pair<std::string, std::string>> errors;
};

/// Splits a colon-separated `plugins.path`; when it is empty, the development and installed
/// defaults: `<directory of the running binary>/../plugins`, then `/usr/lib/helm-hub/plugins`
/// if it exists.
std::vector<std::filesystem::path> plugin_search_path(const std::string& configured);

/// The development publisher key of the build tree the running binary belongs to
/// (`<binary dir>/../dev-publisher/dev.pub`), or empty when there is none (installed layout).
std::filesystem::path build_tree_dev_key();

class PluginManager final : public TransportLink {
 public:
  explicit PluginManager(PluginManagerOptions options);
  ~PluginManager() override;  ///< shutdown()
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  /// Discovers, loads, creates and starts every plugin the operator has not disabled. A plugin
  /// that fails is recorded as "failed" with the reason; start() itself never fails. Call once.
  void start();

  /// Stops every running instance, waits for calls in flight and destroys it; the libraries
  /// unload once nothing refers to them. Idempotent.
  void shutdown();

  /// A snapshot of every record, sorted by name, without the manifests (find() has them: a
  /// vendor plugin's manifest is tens of kilobytes of schemas, and lists are hot). Thread-safe.
  std::vector<PluginRecord> list() const;
  /// One record by name. Thread-safe.
  std::optional<PluginRecord> find(const std::string& name) const;

  /// Operator switch: disabling stops the instance (calls in flight drain) and keeps it off
  /// across restarts; enabling loads it from disk again. Blocks; call from a worker thread.
  ManagerOutcome set_enabled(const std::string& name, bool enabled);
  /// Loads the plugin's directory again (a new staged copy, so the loader cannot hand back the
  /// old image), starts the new instance, then stops the old one after its calls drain. When
  /// the new one fails, the old one keeps running. Blocks.
  ManagerOutcome reload(const std::string& name);
  /// Validates `config` against the manifest's config_schema (errors name the path). With
  /// `if_match` set, a config_version other than it is CONFLICT (412 at REST). Applied through
  /// configure(); when the plugin refuses, the previous config keeps running; when it cannot
  /// apply changes at run time (UNSUPPORTED), the instance is restarted with the new config.
  /// `dry_run` only validates. Blocks.
  ManagerOutcome set_config(const std::string& name, const nlohmann::json& config,
                            std::optional<std::int64_t> if_match, bool dry_run);

  /// Installs a plugin bundle (helm-plugin pack: a tar of manifest.json, the library and
  /// signature): checks the archive, the manifest and the signature against the trusted keys
  /// without running plugin code, then moves the directory into install_dir in one rename and
  /// lists the plugin disabled (enable it like any other). A refused bundle leaves nothing on
  /// disk. CONFLICT when a plugin of that name is installed. Fills `installed` on success. Blocks.
  ManagerOutcome install(std::string_view bundle, PluginRecord* installed);
  /// Removes a plugin: its directory leaves the plugin path in one rename, the running instance
  /// is retired (calls drain), and its hub-wide settings, organization settings, grants and
  /// key-value data are deleted. Blocks.
  ManagerOutcome uninstall(const std::string& name);

  /// Organization level. Thread-safe; blocks on the database.
  std::optional<OrgPluginSettings> org_settings(const std::string& org_id, const std::string& name);
  ManagerOutcome set_org_enabled(const std::string& org_id, const std::string& name, bool enabled);
  ManagerOutcome set_org_config(const std::string& org_id, const std::string& name,
                                const nlohmann::json& config, std::optional<std::int64_t> if_match,
                                bool dry_run);
  /// Replaces the organization's grants: every name must match a glob the manifest declares in
  /// capabilities.secrets (else INVALID_INPUT naming it).
  ManagerOutcome set_grants(const std::string& org_id, const std::string& name,
                            const std::vector<std::string>& secrets);

  /// Runs `op` of plugin `name` for `session` (its organization) with `input`: checks the plugin
  /// runs and is enabled for the organization, validates the input against the operation's
  /// input_schema, then calls the plugin; `done` runs exactly once (TIMEOUT at the deadline, after
  /// which the plugin is asked to cancel and its late completion is ignored).
  void invoke(const std::string& name, const auth::SessionContext& session, const std::string& op,
              const nlohmann::json& input, std::function<void(OperationResult)> done);

  // TransportLink: through the running plugin whose manifest declares capabilities.transport.
  helm_status send_to_device(const std::string& device_id, const std::string& frame_json) override;
  void close_device(const std::string& device_id, std::uint16_t code,
                    const std::string& reason) override;
  TransportLink& transport_link() { return *this; }

  const PluginManagerOptions& options() const { return options_; }

  struct Entry;
  struct HostFunctions;
  struct Deadlines;

 private:
  void load_one(const std::filesystem::path& directory);
  LoadOptions loader_options(std::string& dev_key_id) const;
  ManagerOutcome start_instance(Entry& entry, const nlohmann::json& config);
  void persist_settings(const std::string& name, bool enabled, const nlohmann::json& config,
                        std::int64_t version);
  Entry* entry_by_name(const std::string& name) const;  ///< mutex_ held by the caller

  PluginManagerOptions options_;
  std::unique_ptr<Deadlines> deadlines_;
  mutable std::mutex mutex_;  // guards entries_, every Entry's record and instance pointer
  std::vector<std::unique_ptr<Entry>> entries_;
  std::mutex lifecycle_mutex_;  // one enable/disable/reload/config change at a time
  std::mutex org_cache_mutex_;  // guards org_cache_
  std::map<std::pair<std::string, std::string>, OrgPluginSettings> org_cache_;
  std::map<std::string, std::pair<bool, std::pair<nlohmann::json, std::int64_t>>> stored_settings_;
};

}  // namespace helm::plugins
