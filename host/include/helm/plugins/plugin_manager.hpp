/// @brief The hub-side plugin manager (first slice): at hub start it discovers plugin
/// directories under `plugins.path`, loads each through the loader (manifest, signature and ABI
/// checks), creates and starts one instance per plugin, and records what happened; at hub
/// shutdown it stops, drains and destroys them. Enable/disable, reload, hub-wide and
/// per-organization configuration, grants and operations arrive with later issues.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <helm/plugin_abi.h>

namespace helm::plugins {

class PluginInstance;
class LoadedPlugin;

struct PluginManagerOptions {
  /// Directories searched for plugin directories (each a subdirectory holding manifest.json).
  /// Missing directories are skipped with a log line.
  std::vector<std::filesystem::path> search_path;
  /// A file of trusted publisher keys ("helm-ed25519:..." one per line; '#' comments); empty:
  /// no key is trusted.
  std::filesystem::path trusted_keys_file;
  bool allow_unsigned = false;
  /// Private staging directories are created here; emptied by start().
  std::filesystem::path staging_root;
};

/// What the manager knows about one plugin directory.
struct PluginRecord {
  std::string name;  ///< the manifest's name, else the directory's name
  std::string version;
  std::string kind;
  std::string abi;
  std::string state;  ///< "running", "failed" or "disabled"
  std::string signer;
  std::string last_error;
  std::filesystem::path directory;
  nlohmann::json manifest;                           ///< null when it could not be read
  nlohmann::json config = nlohmann::json::object();  ///< hub-wide configuration
};

/// Splits a colon-separated `plugins.path`; when it is empty, the development and installed
/// defaults: `<directory of the running binary>/../plugins`, then `/usr/lib/helm-hub/plugins`
/// if it exists.
std::vector<std::filesystem::path> plugin_search_path(const std::string& configured);

class PluginManager {
 public:
  explicit PluginManager(PluginManagerOptions options);
  ~PluginManager();  ///< shutdown()
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  /// Discovers, loads, creates and starts every plugin. A plugin that fails is recorded as
  /// "failed" with the reason; start() itself never fails. Call once, from the hub's main thread.
  void start();

  /// Stops every running instance, waits for calls in flight (PluginInstance::shutdown) and
  /// destroys it; the libraries unload once nothing refers to them. Idempotent.
  void shutdown();

  /// A snapshot of every record, sorted by name. Thread-safe.
  std::vector<PluginRecord> list() const;
  /// One record by name. Thread-safe.
  std::optional<PluginRecord> find(const std::string& name) const;

 private:
  struct Entry;
  void load_one(const std::filesystem::path& directory);

  PluginManagerOptions options_;
  helm_host_api host_api_{};
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace helm::plugins
