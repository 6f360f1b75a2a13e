#include "helm/plugins/plugin_manager.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "helm/log/logger.hpp"
#include "helm/plugins/manifest.hpp"
#include "helm/plugins/plugin_instance.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "helm/schema/json_schema.hpp"

namespace helm::plugins {
namespace fs = std::filesystem;
using nlohmann::json;

struct PluginManager::Entry {
  PluginRecord record;
  /// What the plugin sees; host_ctx points at this Entry, which therefore lives as long as the
  /// instance (forever, if the instance is abandoned).
  helm_host_api api{};
  std::unique_ptr<PluginInstance> instance;
};

namespace {

// Every manifest is checked against the SDK's manifest schema before any plugin code runs.
std::vector<std::string> validate_manifest(const nlohmann::json& manifest) {
  static const auto compiled =
      schema::JsonSchema::compile(nlohmann::json::parse(manifest_schema_text()));
  if (!compiled)
    return {"the built-in manifest schema does not compile: " + compiled.error().message};
  std::vector<std::string> problems;
  for (const auto& e : compiled.value().validate(manifest)) {
    problems.push_back((e.instance_path.empty() ? std::string("/") : e.instance_path) + ": " +
                       e.message);
  }
  return problems;
}

}  // namespace

namespace {

// ---------------------------------------------------------------------------------------------
// The host API. Only log() is implemented in this slice. Every other service (secret release,
// outbound HTTP, events, key-value storage, timers, session information) arrives with later
// issues (capability broker, plugin admin); until then each answers HELM_STATUS_UNSUPPORTED with
// a message saying so, and plugins must cope (the ABI allows a host without a service).

constexpr const char* kNotYet =
    "this hub does not provide this service to plugins yet (it arrives with the capability "
    "broker)";

void set_error(helm_error* err, helm_status status, const char* message) {
  if (err == nullptr || !HELM_HAS_FIELD(err, helm_error, message)) return;
  err->status = status;
  const std::size_t length = std::min(std::strlen(message), sizeof err->message - 1);
  std::memcpy(err->message, message, length);
  err->message[length] = '\0';
}

const std::string& plugin_name(void* host_ctx) {
  return *static_cast<const std::string*>(host_ctx);
}

void host_log(void* host_ctx, helm_log_level level, const char* message, size_t length) {
  const std::string text = message == nullptr ? std::string() : std::string(message, length);
  const json fields = {{"plugin", plugin_name(host_ctx)}};
  switch (level) {
    case HELM_LOG_TRACE:
    case HELM_LOG_DEBUG:
      log::debug(text, fields);
      break;
    case HELM_LOG_WARN:
      log::warn(text, fields);
      break;
    case HELM_LOG_ERROR:
      log::error(text, fields);
      break;
    case HELM_LOG_INFO:
    default:
      log::info(text, fields);
      break;
  }
}

helm_status no_release_secret(void*, const helm_session*, const char*, size_t,
                              helm_secret_lease** out_lease, helm_error* err) {
  if (out_lease != nullptr) *out_lease = nullptr;
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
// No lease is ever handed out, so these are never reached with a real one.
const uint8_t* no_secret_data(const helm_secret_lease*) {
  return nullptr;
}
size_t no_secret_size(const helm_secret_lease*) {
  return 0;
}
void no_release_lease(helm_secret_lease*) {}

helm_status no_http_request(void*, const helm_session*, const helm_http_request*,
                            helm_http_complete_fn, void*, helm_error* err) {
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
helm_status no_publish_event(void*, const char*, size_t, const char*, size_t, const char*, size_t,
                             helm_error* err) {
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
helm_status no_kv_get(void*, const char*, size_t, const char*, size_t, helm_bytes_sink_fn, void*,
                      helm_error* err) {
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
helm_status no_kv_put(void*, const char*, size_t, const char*, size_t, const uint8_t*, size_t,
                      helm_error* err) {
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
helm_status no_timer_schedule(void*, uint64_t, helm_timer_fn, void*, uint64_t* out_timer_id,
                              helm_error* err) {
  if (out_timer_id != nullptr) *out_timer_id = 0;
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}
void no_timer_cancel(void*, uint64_t) {}
// No operation runs inside a session yet, so there is no session to describe.
helm_status no_session_info(void*, const helm_session*, helm_bytes_sink_fn, void*,
                            helm_error* err) {
  set_error(err, HELM_STATUS_UNSUPPORTED, kNotYet);
  return HELM_STATUS_UNSUPPORTED;
}

std::string string_member(const json& manifest, const char* key) {
  if (!manifest.is_object()) return {};
  auto it = manifest.find(key);
  return it != manifest.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<signing::PublicKey> read_trusted_keys(const fs::path& file) {
  std::vector<signing::PublicKey> keys;
  if (file.empty()) return keys;
  std::ifstream in(file);
  if (!in) {
    log::error("cannot read plugins.trusted_keys_file; no publisher key is trusted",
               {{"file", file.string()}});
    return keys;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    auto key = signing::PublicKey::parse(std::string_view(line).substr(first, last - first + 1));
    if (!key) {
      log::error("plugins.trusted_keys_file: line ignored",
                 {{"file", file.string()}, {"line", number}, {"error", key.error().message}});
      continue;
    }
    keys.push_back(key.value());
  }
  return keys;
}

}  // namespace

std::vector<fs::path> plugin_search_path(const std::string& configured) {
  std::vector<fs::path> out;
  if (!configured.empty()) {
    std::stringstream in(configured);
    std::string part;
    while (std::getline(in, part, ':')) {
      if (!part.empty()) out.emplace_back(part);
    }
    return out;
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back(fs::weakly_canonical(exe.parent_path() / ".." / "plugins", ec));
  if (fs::is_directory("/usr/lib/helm-hub/plugins", ec))
    out.emplace_back("/usr/lib/helm-hub/plugins");
  return out;
}

PluginManager::PluginManager(PluginManagerOptions options) : options_(std::move(options)) {
  host_api_.struct_size = sizeof host_api_;
  host_api_.abi_major = HELM_PLUGIN_ABI_MAJOR;
  host_api_.abi_minor = HELM_PLUGIN_ABI_MINOR;
  host_api_.log = &host_log;
  host_api_.release_secret = &no_release_secret;
  host_api_.secret_data = &no_secret_data;
  host_api_.secret_size = &no_secret_size;
  host_api_.release_lease = &no_release_lease;
  host_api_.http_request = &no_http_request;
  host_api_.publish_event = &no_publish_event;
  host_api_.kv_get = &no_kv_get;
  host_api_.kv_put = &no_kv_put;
  host_api_.timer_schedule = &no_timer_schedule;
  host_api_.timer_cancel = &no_timer_cancel;
  host_api_.session_info = &no_session_info;
}

PluginManager::~PluginManager() {
  shutdown();
}

void PluginManager::start() {
  std::error_code ec;
  if (!options_.staging_root.empty()) {
    fs::remove_all(options_.staging_root, ec);
    fs::create_directories(options_.staging_root, ec);
    ::chmod(options_.staging_root.c_str(), 0700);
  }
  std::vector<fs::path> directories;
  for (const fs::path& root : options_.search_path) {
    if (!fs::is_directory(root, ec)) {
      log::info("plugin directory not found; skipped", {{"path", root.string()}});
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& item : fs::directory_iterator(root, ec)) {
      if (item.is_directory(ec) && fs::is_regular_file(item.path() / "manifest.json", ec)) {
        found.push_back(item.path());
      }
    }
    std::sort(found.begin(), found.end());
    directories.insert(directories.end(), found.begin(), found.end());
  }
  for (const fs::path& directory : directories)
    load_one(directory);
}

void PluginManager::load_one(const fs::path& directory) {
  auto entry = std::make_unique<Entry>();
  PluginRecord& record = entry->record;
  record.directory = directory;
  record.name = directory.filename().string();
  record.state = "failed";
  {
    std::ifstream in(directory / "manifest.json");
    record.manifest = json::parse(in, nullptr, false);
    if (record.manifest.is_discarded()) record.manifest = nullptr;
  }
  if (auto name = string_member(record.manifest, "name"); !name.empty()) record.name = name;
  record.version = string_member(record.manifest, "version");
  record.kind = string_member(record.manifest, "kind");
  record.abi = string_member(record.manifest, "abi");

  auto finish = [&](std::string error) {
    if (!error.empty()) {
      record.last_error = std::move(error);
      log::error("plugin not loaded", {{"plugin", record.name},
                                       {"directory", directory.string()},
                                       {"error", record.last_error}});
    } else {
      log::info("plugin running", {{"plugin", record.name},
                                   {"version", record.version},
                                   {"signer", record.signer},
                                   {"directory", directory.string()}});
    }
    std::lock_guard lock(mutex_);
    entries_.push_back(std::move(entry));
  };

  {
    std::lock_guard lock(mutex_);
    for (const auto& other : entries_) {
      if (other->record.name == record.name && other->record.state == "running") {
        return finish("another plugin named " + record.name + " is already running from " +
                      other->record.directory.string() + "; remove one of the two directories");
      }
    }
  }

  LoadOptions load_options;
  load_options.manifest_validator = validate_manifest;
  load_options.trusted_publisher_keys = read_trusted_keys(options_.trusted_keys_file);
  load_options.allow_unsigned = options_.allow_unsigned;
  load_options.staging_root = options_.staging_root;
  auto loaded = load_plugin(directory, load_options);
  if (!loaded) {
    std::string message = loaded.error().message;
    if (loaded.error().code == LoadErrorCode::kNotSigned) {
      message = "plugin in " + directory.string() +
                " is unsigned (no signature file); sign it with `helm-plugin sign` and trust its "
                "publisher key in plugins.trusted_keys_file, or, for development only, set "
                "plugins.allow_unsigned = true";
    }
    return finish(std::move(message));
  }
  const std::shared_ptr<const LoadedPlugin> plugin = std::move(loaded).value();
  record.abi = to_string(plugin->abi());
  record.signer = plugin->signer().is_signed
                      ? "signed by " + plugin->signer().key_id
                      : std::string("unsigned (allowed by plugins.allow_unsigned)");

  entry->api = host_api_;
  entry->api.host_ctx = &record.name;
  const std::string name = record.name;
  auto created = PluginInstance::create(
      plugin, entry->api, record.config.dump(), [name](const std::string& message) {
        log::warn("plugin misbehaved", {{"plugin", name}, {"violation", message}});
      });
  if (!created) return finish("create() failed: " + created.error().message);
  entry->instance = std::move(created).value();
  if (auto started = entry->instance->start(); !started) {
    entry->instance.reset();
    return finish("start() failed: " + started.error().message);
  }
  record.state = "running";
  finish({});
}

void PluginManager::shutdown() {
  std::vector<Entry*> running;
  {
    std::lock_guard lock(mutex_);
    for (auto& entry : entries_) {
      if (entry->instance) running.push_back(entry.get());
    }
  }
  for (Entry* entry : running) {
    if (entry->instance->shutdown(PluginInstance::kDefaultDrainTimeout)) {
      entry->instance.reset();
      std::lock_guard lock(mutex_);
      entry->record.state = "stopped";
      continue;
    }
    log::error("plugin calls did not finish; instance abandoned (its library stays loaded)",
               {{"plugin", entry->record.name}});
    std::lock_guard lock(mutex_);
    entry->record.state = "failed";
    entry->record.last_error = "abandoned at shutdown: calls did not finish";
    // The abandoned instance may still run code that reaches host_ctx (this Entry): both are
    // kept forever on purpose.
    (void)entry->instance.release();
    for (auto& owned : entries_) {
      if (owned.get() == entry) (void)owned.release();
    }
    std::erase(entries_, nullptr);
  }
}

std::vector<PluginRecord> PluginManager::list() const {
  std::vector<PluginRecord> out;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : entries_)
      out.push_back(entry->record);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PluginRecord& a, const PluginRecord& b) { return a.name < b.name; });
  return out;
}

std::optional<PluginRecord> PluginManager::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  // A running plugin wins over a failed directory of the same name.
  const PluginRecord* best = nullptr;
  for (const auto& entry : entries_) {
    if (entry->record.name != name) continue;
    if (best == nullptr || entry->record.state == "running") best = &entry->record;
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

}  // namespace helm::plugins
