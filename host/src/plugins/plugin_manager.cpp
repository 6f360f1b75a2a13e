#include "helm/plugins/plugin_manager.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "helm/auth/auth_service.hpp"
#include "helm/broker/event_bus.hpp"
#include "helm/broker/http_broker.hpp"
#include "helm/broker/plugin_kv_store.hpp"
#include "helm/broker/timer_service.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/log/logger.hpp"
#include "helm/plugins/manifest.hpp"
#include "helm/plugins/plugin_instance.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "helm/schema/json_schema.hpp"
#include "helm/secrets/audit_log.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/signing/plugin_bundle.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/vault/names.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// The opaque ABI handles, defined here: a session handle per call and a lease per released
// secret. A lease keeps its session alive so that a plugin releasing it late finds valid memory.

struct helm_session {
  helm::auth::SessionContext context;
  std::string plugin;
  std::string org_config_json;
  std::mutex mutex;  // guards completed and open_leases
  bool completed = false;
  std::vector<helm_secret_lease*> open_leases;
};

struct helm_secret_lease {
  std::shared_ptr<helm_session> session;
  helm::vault::SecureBuffer bytes;  // value plus one NUL byte
  std::size_t size = 0;             // 0 once wiped
};

namespace helm::plugins {

namespace {

/// What host_ctx points at: one per instance, kept as long as the instance (forever, if it is
/// abandoned), so a plugin thread that outlives its instance still finds valid memory.
struct HostContext : std::enable_shared_from_this<HostContext> {
  PluginManager* manager = nullptr;
  std::string plugin;
  std::uint64_t owner = 0;  // identifies the instance to the broker services
  std::vector<std::string> secret_globs;
  std::vector<std::string> outbound_hosts;
  std::vector<std::string> outbound_url_settings;  // JSON Pointers into the org settings
  std::vector<std::string> publish_topics;
  std::vector<std::string> subscribe_topics;
  bool transport = false;
  // Host work accepted for this instance whose plugin callback has not returned yet (HTTP
  // completions, timers). The instance is destroyed only once it is back to zero.
  std::mutex pending_mutex;  // guards pending and timers
  std::condition_variable pending_changed;
  std::size_t pending = 0;
  std::set<std::uint64_t> timers;  // this instance's timers not fired yet

  std::string owner_text() const { return plugin + "#" + std::to_string(owner); }

  void work_started() {
    const std::lock_guard lock(pending_mutex);
    ++pending;
  }
  void work_finished() {
    const std::lock_guard lock(pending_mutex);
    --pending;
    pending_changed.notify_all();
  }
  bool wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(pending_mutex);
    return pending_changed.wait_for(lock, timeout, [this] { return pending == 0; });
  }
};

std::atomic<std::uint64_t> g_next_owner{1};

/// Contexts of abandoned instances, kept for the rest of the process on purpose.
std::vector<std::shared_ptr<HostContext>>& abandoned_contexts() {
  static auto* kept = new std::vector<std::shared_ptr<HostContext>>();
  return *kept;
}
std::mutex& abandoned_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

/// Stops an instance for good: stop(), cancel the host work still owed to it (its completions
/// arrive as CANCELLED), wait for that work and its calls, then destroy it. When something does
/// not finish in time the instance is abandoned: never destroyed, its library and context kept
/// for the rest of the process. Returns false then.
bool retire(const PluginManagerOptions& options, const std::shared_ptr<PluginInstance>& instance,
            const std::shared_ptr<HostContext>& context, bool replaced = false) {
  if (!instance) return true;
  // A transport that goes for good (not replaced by a reload) no longer listens: enrollment
  // must stop handing out its URL.
  if (!replaced && context && context->transport && options.transport_host != nullptr) {
    options.transport_host->transport_listening("");
  }
  if (context && options.events != nullptr) options.events->unsubscribe(context->owner_text());
  instance->stop();
  if (context) {
    if (options.http != nullptr) options.http->cancel_owner(context->owner);
    if (options.timers != nullptr) options.timers->cancel_owner(context->owner_text());
  }
  const bool idle = !context || context->wait_idle(options.drain_timeout);
  if (idle && instance->shutdown(options.drain_timeout)) return true;
  log::error("plugin work did not finish in time; instance abandoned (its library stays loaded)",
             {{"plugin", context ? context->plugin : std::string()}});
  const std::lock_guard lock(abandoned_mutex());
  abandoned_contexts().push_back(context);
  new std::shared_ptr<PluginInstance>(instance);  // kept forever on purpose
  return false;
}

std::string now_rfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::vector<std::string> string_list(const json& value) {
  std::vector<std::string> out;
  if (!value.is_array()) return out;
  for (const auto& item : value)
    if (item.is_string()) out.push_back(item.get<std::string>());
  return out;
}

/// "host:port" of an https:// URL, lower-cased, port 443 unless given; nullopt for anything
/// else (another scheme, user information, an empty or bracketed host, a bad port).
std::optional<std::string> https_url_host(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(url[i])) != kScheme[i]) return std::nullopt;
  }
  std::string_view authority = url.substr(kScheme.size());
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (authority.empty() || authority.find('@') != std::string_view::npos ||
      authority.front() == '[') {
    return std::nullopt;
  }
  std::string host(authority);
  std::string port = "443";
  if (const auto colon = host.rfind(':'); colon != std::string::npos) {
    port = host.substr(colon + 1);
    host.resize(colon);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) == 0 ||
        std::stoul(port) > 65535) {
      return std::nullopt;
    }
    port = std::to_string(std::stoul(port));
  }
  if (host.empty()) return std::nullopt;
  for (char& c : host) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return std::nullopt;
  }
  return host + ":" + port;
}

/// The outbound hosts an organization's settings open (capabilities.
/// outbound_hosts_from_org_config): the host:port of each https URL the pointers name.
std::vector<std::string> settings_hosts(const json& org_config,
                                        const std::vector<std::string>& pointers) {
  std::vector<std::string> hosts;
  if (!org_config.is_object()) return hosts;
  for (const auto& pointer : pointers) {
    try {
      const json::json_pointer at(pointer);
      if (!org_config.contains(at) || !org_config.at(at).is_string()) continue;
      if (auto host = https_url_host(org_config.at(at).get<std::string>())) {
        hosts.push_back(std::move(*host));
      }
    } catch (const json::exception&) {
    }
  }
  return hosts;
}

std::shared_ptr<const schema::JsonSchema> compile_schema(const json& manifest, const char* key,
                                                         std::string& error) {
  json document = json::object();
  if (manifest.is_object() && manifest.contains(key)) document = manifest.at(key);
  auto compiled = schema::JsonSchema::compile(document);
  if (!compiled) {
    error = std::string(key) + " does not compile: " + compiled.error().message;
    return nullptr;
  }
  return std::make_shared<const schema::JsonSchema>(std::move(compiled).value());
}

std::vector<std::pair<std::string, std::string>> validate(const schema::JsonSchema& schema,
                                                          const json& value) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : schema.validate(value)) {
    out.emplace_back(e.instance_path.empty() ? std::string("/") : e.instance_path, e.message);
  }
  return out;
}

// Every manifest is checked against the SDK's manifest schema before any plugin code runs.
std::vector<std::string> validate_manifest(const json& manifest) {
  static const auto compiled = schema::JsonSchema::compile(json::parse(manifest_schema_text()));
  if (!compiled)
    return {"the built-in manifest schema does not compile: " + compiled.error().message};
  std::vector<std::string> problems;
  for (const auto& e : compiled.value().validate(manifest)) {
    problems.push_back((e.instance_path.empty() ? std::string("/") : e.instance_path) + ": " +
                       e.message);
  }
  return problems;
}

/// Removes a directory tree we created, logging (not failing) when that is impossible.
void remove_tree(const fs::path& directory) {
  std::error_code ec;
  fs::remove_all(directory, ec);
  if (ec) {
    log::warn("could not remove a plugin directory",
              {{"directory", directory.string()}, {"error", ec.message()}});
  }
}

/// How GET /api/v1/plugins names who signed a plugin.
std::string signer_text(const SignerInfo& signer, const std::string& dev_key_id) {
  if (!signer.is_signed) return "unsigned (allowed by plugins.allow_unsigned)";
  return "signed by " + signer.key_id +
         (!dev_key_id.empty() && signer.key_id == dev_key_id
              ? " (development key of this build tree)"
              : "");
}

/// A plugin name usable as a directory name (the manifest schema's pattern for "name").
bool valid_plugin_directory_name(const std::string& name) {
  if (name.size() < 2 || name.size() > 63 || name.front() < 'a' || name.front() > 'z') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
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

void set_error(helm_error* err, helm_status status, std::string_view message) {
  if (err == nullptr || !HELM_HAS_FIELD(err, helm_error, message)) return;
  err->status = status;
  std::size_t length = std::min(message.size(), sizeof err->message - 1);
  // Cut at a UTF-8 character boundary.
  while (length > 0 && length < message.size() &&
         (static_cast<unsigned char>(message[length]) & 0xC0) == 0x80) {
    --length;
  }
  std::memcpy(err->message, message.data(), length);
  err->message[length] = '\0';
}

helm_status fail(helm_error* err, helm_status status, std::string_view message) {
  set_error(err, status, message);
  return status;
}

HostContext& context_of(void* host_ctx) {
  return *static_cast<HostContext*>(host_ctx);
}

/// Zeroes every lease of a session still open when its call completes (the ABI promises this).
void close_session(const std::shared_ptr<helm_session>& session) {
  const std::lock_guard lock(session->mutex);
  session->completed = true;
  for (helm_secret_lease* lease : session->open_leases) {
    if (lease->bytes.size() > 0) std::memset(lease->bytes.data(), 0, lease->bytes.size());
    lease->size = 0;
  }
}

}  // namespace

/// Operation deadlines: one thread for all calls; a fired deadline runs on the worker pool.
struct PluginManager::Deadlines {
  explicit Deadlines(TaskPool* workers) : workers_(workers), thread_([this] { run(); }) {}
  ~Deadlines() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;

  std::uint64_t add(std::chrono::steady_clock::time_point when, std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = ++next_id_;
    queue_.emplace(when, id);
    pending_.emplace(id, std::move(fn));
    wake_.notify_all();
    return id;
  }
  void cancel(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    pending_.erase(id);
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (queue_.empty()) {
        wake_.wait(lock);
        continue;
      }
      const auto [when, id] = *queue_.begin();
      if (std::chrono::steady_clock::now() < when) {
        wake_.wait_until(lock, when);
        continue;
      }
      queue_.erase(queue_.begin());
      auto found = pending_.find(id);
      if (found == pending_.end()) continue;
      std::function<void()> fn = std::move(found->second);
      pending_.erase(found);
      lock.unlock();
      if (workers_ != nullptr) {
        workers_->post(std::move(fn));
      } else {
        fn();
      }
      lock.lock();
    }
  }

  TaskPool* workers_;
  std::mutex mutex_;  // guards everything below
  std::condition_variable wake_;
  bool stopping_ = false;
  std::uint64_t next_id_ = 0;
  std::multimap<std::chrono::steady_clock::time_point, std::uint64_t> queue_;
  std::map<std::uint64_t, std::function<void()>> pending_;
  std::thread thread_;
};

struct PluginManager::Entry {
  PluginRecord record;
  std::shared_ptr<HostContext> context;      // of the running instance
  std::shared_ptr<PluginInstance> instance;  // null unless running
  std::shared_ptr<const schema::JsonSchema> config_schema;
  std::shared_ptr<const schema::JsonSchema> org_config_schema;
  std::map<std::string, std::shared_ptr<const schema::JsonSchema>> op_schemas;
  std::map<std::string, std::chrono::milliseconds> op_timeouts;
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> calls_failed{0};
  // Uninstalled: kept (callers may still hold the pointer) but invisible to lookups and lists.
  bool removed = false;
};

// ---------------------------------------------------------------------------------------------
// The host API: every function a plugin can reach, checked against its manifest.

struct PluginManager::HostFunctions {
  static void log(void* host_ctx, helm_log_level level, const char* message, size_t length) {
    try {
      const std::string text = message == nullptr ? std::string() : std::string(message, length);
      const json fields = {{"plugin", context_of(host_ctx).plugin}};
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
    } catch (...) {
      // Logging must never take a plugin down.
    }
  }

  static helm_status release_secret(void* host_ctx, const helm_session* session, const char* name,
                                    size_t name_len, helm_secret_lease** out_lease,
                                    helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      if (session == nullptr) {
        return fail(err, HELM_STATUS_UNAUTHORIZED,
                    "secrets are released only inside a call's session; none was given");
      }
      if (out_lease == nullptr || (name == nullptr && name_len > 0)) {
        return fail(err, HELM_STATUS_INVALID_INPUT, "release_secret: out_lease or name is NULL");
      }
      auto* service = ctx.manager->options().secrets;
      if (service == nullptr) {
        return fail(err, HELM_STATUS_UNSUPPORTED, "this hub has no vault configured for plugins");
      }
      auto* state = const_cast<helm_session*>(session);
      {
        const std::lock_guard lock(state->mutex);
        if (state->completed) {
          return fail(err, HELM_STATUS_UNAUTHORIZED,
                      "the call this session belongs to has completed; the session is gone");
        }
      }
      const std::string secret_name(name == nullptr ? "" : name, name_len);
      std::promise<secrets::ReleaseResult> promise;
      auto future = promise.get_future();
      service->release(
          state->context, ctx.plugin, ctx.secret_globs, state->context.org_id, secret_name,
          [&promise](secrets::ReleaseResult result) { promise.set_value(std::move(result)); });
      secrets::ReleaseResult result = future.get();
      if (!result.ok()) {
        helm_status status = HELM_STATUS_INTERNAL;
        switch (result.refusal().reason) {
          case secrets::RefusalReason::kInvalidRequest:
            status = HELM_STATUS_INVALID_INPUT;
            break;
          case secrets::RefusalReason::kSessionInvalid:
            status = HELM_STATUS_UNAUTHORIZED;
            break;
          case secrets::RefusalReason::kWrongOrganization:
          case secrets::RefusalReason::kNotDeclared:
          case secrets::RefusalReason::kNotGranted:
            status = HELM_STATUS_FORBIDDEN;
            break;
          case secrets::RefusalReason::kNoSuchSecret:
            status = HELM_STATUS_NOT_FOUND;
            break;
          case secrets::RefusalReason::kDecryptFailed:
            status = HELM_STATUS_INTERNAL;
            break;
          case secrets::RefusalReason::kUnavailable:
            status = HELM_STATUS_UNAVAILABLE;
            break;
        }
        return fail(err, status, result.refusal().message);
      }
      const std::string_view value = result.lease().value();
      auto lease = std::make_unique<helm_secret_lease>();
      lease->bytes = vault::SecureBuffer(value.size() + 1);
      if (!value.empty()) std::memcpy(lease->bytes.data(), value.data(), value.size());
      lease->bytes.data()[value.size()] = 0;
      lease->size = value.size();
      // The session handle is owned by a shared_ptr kept in the call; find it through the
      // registry so the lease can keep it alive.
      lease->session = session_handle(state);
      {
        const std::lock_guard lock(state->mutex);
        if (state->completed) {
          return fail(err, HELM_STATUS_UNAUTHORIZED, "the call completed during the release");
        }
        state->open_leases.push_back(lease.get());
      }
      *out_lease = lease.release();
      return HELM_STATUS_OK;
    } catch (const std::exception& e) {
      return fail(err, HELM_STATUS_INTERNAL, std::string("release_secret failed: ") + e.what());
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "release_secret failed");
    }
  }

  static const uint8_t* secret_data(const helm_secret_lease* lease) noexcept {
    return lease == nullptr ? nullptr : lease->bytes.data();
  }
  static size_t secret_size(const helm_secret_lease* lease) noexcept {
    return lease == nullptr ? 0 : lease->size;
  }
  static void release_lease(helm_secret_lease* lease) noexcept {
    if (lease == nullptr) return;
    if (lease->session) {
      const std::lock_guard lock(lease->session->mutex);
      std::erase(lease->session->open_leases, lease);
    }
    delete lease;  // SecureBuffer wipes itself
  }

  static helm_status http_request(void* host_ctx, const helm_session* session,
                                  const helm_http_request* request, helm_http_complete_fn complete,
                                  void* user, helm_error* err) noexcept;

  static std::string text(const char* data, size_t size) {
    return data == nullptr ? std::string() : std::string(data, size);
  }

  static helm_status publish_event(void* host_ctx, const char* organization_id,
                                   size_t organization_id_len, const char* topic, size_t topic_len,
                                   const char* payload, size_t payload_len,
                                   helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      broker::EventBus* events = ctx.manager->options().events;
      if (events == nullptr) {
        return fail(err, HELM_STATUS_UNSUPPORTED, "the event bus is not available in this hub");
      }
      const std::string topic_text = text(topic, topic_len);
      // session.* is the hub's own: no plugin may announce a session's start or end (the
      // manifest schema refuses to declare it too; this holds for any manifest).
      if (topic_text.rfind("session.", 0) == 0) {
        return fail(err, HELM_STATUS_FORBIDDEN,
                    "topic \"" + topic_text + "\" is reserved for the hub's session events");
      }
      if (std::find(ctx.publish_topics.begin(), ctx.publish_topics.end(), topic_text) ==
          ctx.publish_topics.end()) {
        return fail(err, HELM_STATUS_FORBIDDEN,
                    "topic \"" + topic_text +
                        "\" is not declared in capabilities.events.publish of the manifest");
      }
      std::string error;
      const helm_status status =
          events->publish(ctx.plugin, text(organization_id, organization_id_len), topic_text,
                          text(payload, payload_len), error);
      return status == HELM_STATUS_OK ? status : fail(err, status, error);
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "publish_event failed");
    }
  }

  static helm_status kv_get(void* host_ctx, const char* organization_id, size_t organization_id_len,
                            const char* key, size_t key_len, helm_bytes_sink_fn sink,
                            void* sink_ctx, helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      broker::PluginKvStore* kv = ctx.manager->options().kv;
      if (kv == nullptr) {
        return fail(err, HELM_STATUS_UNSUPPORTED, "key-value storage is not available in this hub");
      }
      std::string value;
      std::string error;
      const helm_status status = kv->get(ctx.plugin, text(organization_id, organization_id_len),
                                         text(key, key_len), value, error);
      if (status != HELM_STATUS_OK) return fail(err, status, error);
      if (sink != nullptr) {
        sink(sink_ctx, reinterpret_cast<const uint8_t*>(value.data()), value.size());
      }
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "kv_get failed");
    }
  }

  static helm_status kv_put(void* host_ctx, const char* organization_id, size_t organization_id_len,
                            const char* key, size_t key_len, const uint8_t* value, size_t value_len,
                            helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      broker::PluginKvStore* kv = ctx.manager->options().kv;
      if (kv == nullptr) {
        return fail(err, HELM_STATUS_UNSUPPORTED, "key-value storage is not available in this hub");
      }
      std::optional<std::string_view> stored;
      if (value != nullptr) {
        stored = std::string_view(reinterpret_cast<const char*>(value), value_len);
      }
      std::string error;
      const helm_status status = kv->put(ctx.plugin, text(organization_id, organization_id_len),
                                         text(key, key_len), stored, error);
      return status == HELM_STATUS_OK ? status : fail(err, status, error);
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "kv_put failed");
    }
  }

  static helm_status timer_schedule(void* host_ctx, uint64_t delay_ms, helm_timer_fn fn, void* user,
                                    uint64_t* out_timer_id, helm_error* err) noexcept {
    try {
      if (out_timer_id != nullptr) *out_timer_id = 0;
      HostContext& ctx = context_of(host_ctx);
      broker::TimerService* timers = ctx.manager->options().timers;
      if (timers == nullptr) {
        return fail(err, HELM_STATUS_UNSUPPORTED, "timers are not available in this hub");
      }
      if (fn == nullptr) return fail(err, HELM_STATUS_INVALID_INPUT, "timer function is NULL");
      auto context = ctx.shared_from_this();
      auto id_holder = std::make_shared<std::atomic<std::uint64_t>>(0);
      ctx.work_started();
      std::uint64_t id = 0;
      std::string error;
      const helm_status status = timers->schedule(
          ctx.owner_text(),
          std::chrono::milliseconds(std::min<uint64_t>(delay_ms, uint64_t{1} << 40)),
          [fn, user, context, id_holder](helm_status fired) {
            {
              const std::lock_guard lock(context->pending_mutex);
              context->timers.erase(id_holder->load());
            }
            fn(user, fired);
            context->work_finished();
          },
          id, error);
      if (status != HELM_STATUS_OK) {
        ctx.work_finished();
        return fail(err, status, error);
      }
      id_holder->store(id);
      {
        const std::lock_guard lock(ctx.pending_mutex);
        ctx.timers.insert(id);
      }
      if (out_timer_id != nullptr) *out_timer_id = id;
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "timer_schedule failed");
    }
  }

  static void timer_cancel(void* host_ctx, uint64_t timer_id) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      broker::TimerService* timers = ctx.manager->options().timers;
      if (timers == nullptr) return;
      {
        // Only this instance's own timers.
        const std::lock_guard lock(ctx.pending_mutex);
        if (ctx.timers.count(timer_id) == 0) return;
      }
      timers->cancel(timer_id);
    } catch (...) {
    }
  }

  static helm_status session_info(void*, const helm_session* session, helm_bytes_sink_fn sink,
                                  void* sink_ctx, helm_error* err) noexcept {
    try {
      if (session == nullptr) return fail(err, HELM_STATUS_UNAUTHORIZED, "no session given");
      auto* state = const_cast<helm_session*>(session);
      {
        const std::lock_guard lock(state->mutex);
        if (state->completed) {
          return fail(err, HELM_STATUS_UNAUTHORIZED, "the call of this session has completed");
        }
      }
      const auth::SessionContext& c = state->context;
      if (std::chrono::system_clock::now() >= c.expires_at) {
        return fail(err, HELM_STATUS_UNAUTHORIZED, "the session has expired");
      }
      const std::time_t expires = std::chrono::system_clock::to_time_t(c.expires_at);
      std::tm tm{};
      gmtime_r(&expires, &tm);
      char when[32];
      std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      const json info = {
          {"principal_kind", c.kind == auth::PrincipalKind::kTechnician ? "technician" : "service"},
          {"principal_id", c.principal_id},
          {"session_id", c.session_id},
          {"organization_id", c.org_id},
          {"roles", json::array({std::string(auth::role_name(c.role))})},
          {"expires_at", when}};
      const std::string text = info.dump();
      if (sink != nullptr)
        sink(sink_ctx, reinterpret_cast<const uint8_t*>(text.data()), text.size());
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "session_info failed");
    }
  }

  // ---- ABI 1.2: audit ----
  static helm_status audit(void* host_ctx, const helm_session* session, const char* org_id,
                           size_t org_id_len, const char* action, size_t action_len,
                           const char* detail_json, size_t detail_json_len,
                           helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      storage::DbPool* pool = ctx.manager->options().pool;
      if (pool == nullptr) return fail(err, HELM_STATUS_UNSUPPORTED, "this hub keeps no audit log");
      const std::string name = action == nullptr ? std::string() : std::string(action, action_len);
      const bool valid_action = !name.empty() && name.size() <= 64 && name[0] >= 'a' &&
                                name[0] <= 'z' && std::all_of(name.begin(), name.end(), [](char c) {
                                  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                         c == '_' || c == '.' || c == '-';
                                });
      if (!valid_action) {
        return fail(err, HELM_STATUS_INVALID_INPUT,
                    "audit: the action must match ^[a-z][a-z0-9_.-]{0,63}$");
      }
      json detail = json::object();
      if (detail_json != nullptr && detail_json_len > 0) {
        if (detail_json_len > 4096) {
          return fail(err, HELM_STATUS_INVALID_INPUT, "audit: the detail is larger than 4 KiB");
        }
        detail = json::parse(std::string_view(detail_json, detail_json_len), nullptr, false);
        if (!detail.is_object()) {
          return fail(err, HELM_STATUS_INVALID_INPUT, "audit: the detail must be a JSON object");
        }
      }
      std::string org = org_id == nullptr ? std::string() : std::string(org_id, org_id_len);
      vault::AuditRecord record;
      if (session != nullptr) {
        record = secrets::audit_record(const_cast<helm_session*>(session)->context,
                                       "plugin." + ctx.plugin + "." + name);
        if (org.empty()) org = record.org_id;
      } else {
        record = secrets::audit_record(auth::SessionContext{}, "plugin." + ctx.plugin + "." + name);
        record.actor = "plugin:" + ctx.plugin;
      }
      if (!org.empty() && !vault::is_valid_org_id(org)) {
        return fail(err, HELM_STATUS_INVALID_INPUT, "audit: organization_id is not a UUID");
      }
      record.org_id = org;
      record.plugin = ctx.plugin;
      record.extra = std::move(detail);
      secrets::audit(*pool, std::move(record));
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "audit failed");
    }
  }

  // ---- ABI 1.1: the agent transport ----
  static helm_status device_authenticate(void* host_ctx, const char* token, size_t token_len,
                                         helm_device_auth_complete_fn complete, void* user,
                                         helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      if (!ctx.transport) {
        return fail(err, HELM_STATUS_FORBIDDEN,
                    "device_authenticate is for transport plugins: declare "
                    "\"capabilities\": {\"transport\": true}");
      }
      TransportHost* host = ctx.manager->options().transport_host;
      if (host == nullptr) {
        return fail(err, HELM_STATUS_UNAVAILABLE, "this hub runs no agent service");
      }
      if (complete == nullptr) return fail(err, HELM_STATUS_INVALID_INPUT, "complete is NULL");
      // Counted as host work owed to the instance: it is not destroyed before the answer.
      auto context = ctx.shared_from_this();
      ctx.work_started();
      host->authenticate_device(
          std::string(token == nullptr ? "" : token, token_len),
          [complete, user, context](helm_status status, std::string device_json) {
            complete(user, status, device_json.c_str(), device_json.size());
            context->work_finished();
          });
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "device_authenticate failed");
    }
  }

  static void device_event(void* host_ctx, helm_device_event_kind kind, uint64_t connection_id,
                           const char* device_id, size_t device_id_len, const char* frame,
                           size_t frame_len) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      TransportHost* host = ctx.manager->options().transport_host;
      if (!ctx.transport || host == nullptr) return;
      const std::string id(device_id == nullptr ? "" : device_id, device_id_len);
      const std::string text(frame == nullptr ? "" : frame, frame_len);
      switch (kind) {
        case HELM_DEVICE_CONNECTED:
          host->device_connected(connection_id, id, text);
          break;
        case HELM_DEVICE_FRAME:
          host->device_frame(connection_id, id, text);
          break;
        case HELM_DEVICE_DISCONNECTED:
          host->device_disconnected(connection_id, id);
          break;
        default:
          break;
      }
    } catch (...) {
      // A failure to record a device event must not take the transport down.
    }
  }

  static void transport_listening(void* host_ctx, const char* url, size_t url_len) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      TransportHost* host = ctx.manager->options().transport_host;
      if (!ctx.transport || host == nullptr) return;
      const std::string text(url == nullptr ? "" : url, url_len);
      log::info("agent transport listening", {{"plugin", ctx.plugin}, {"url", text}});
      host->transport_listening(text);
    } catch (...) {
    }
  }

  static helm_status transport_settings(void* host_ctx, helm_bytes_sink_fn sink, void* sink_ctx,
                                        helm_error* err) noexcept {
    try {
      HostContext& ctx = context_of(host_ctx);
      if (!ctx.transport) {
        return fail(err, HELM_STATUS_FORBIDDEN, "transport_settings is for transport plugins");
      }
      TransportHost* host = ctx.manager->options().transport_host;
      if (host == nullptr) return fail(err, HELM_STATUS_UNAVAILABLE, "no agent service");
      const std::string text = host->transport_settings();
      if (sink != nullptr)
        sink(sink_ctx, reinterpret_cast<const uint8_t*>(text.data()), text.size());
      return HELM_STATUS_OK;
    } catch (...) {
      return fail(err, HELM_STATUS_INTERNAL, "transport_settings failed");
    }
  }

  /// Sessions handed to plugins, by handle, so a lease can keep its session alive.
  static std::shared_ptr<helm_session> session_handle(helm_session* raw) {
    const std::lock_guard lock(sessions_mutex());
    auto it = sessions().find(raw);
    return it == sessions().end() ? nullptr : it->second.lock();
  }
  static std::mutex& sessions_mutex() {
    static auto* m = new std::mutex();
    return *m;
  }
  static std::map<helm_session*, std::weak_ptr<helm_session>>& sessions() {
    static auto* s = new std::map<helm_session*, std::weak_ptr<helm_session>>();
    return *s;
  }
  static std::shared_ptr<helm_session> open_session(const auth::SessionContext& context,
                                                    const std::string& plugin,
                                                    std::string org_config_json) {
    auto session = std::shared_ptr<helm_session>(new helm_session(), [](helm_session* raw) {
      {
        const std::lock_guard lock(sessions_mutex());
        sessions().erase(raw);
      }
      delete raw;
    });
    session->context = context;
    session->plugin = plugin;
    session->org_config_json = std::move(org_config_json);
    const std::lock_guard lock(sessions_mutex());
    sessions()[session.get()] = session;
    return session;
  }

  static helm_host_api make_api(HostContext* ctx) {
    helm_host_api api{};
    api.struct_size = sizeof api;
    api.abi_major = HELM_PLUGIN_ABI_MAJOR;
    api.abi_minor = HELM_PLUGIN_ABI_MINOR;
    api.host_ctx = ctx;
    api.log = &log;
    api.release_secret = &release_secret;
    api.secret_data = &secret_data;
    api.secret_size = &secret_size;
    api.release_lease = &release_lease;
    api.http_request = &http_request;
    api.publish_event = &publish_event;
    api.kv_get = &kv_get;
    api.kv_put = &kv_put;
    api.timer_schedule = &timer_schedule;
    api.timer_cancel = &timer_cancel;
    api.session_info = &session_info;
    api.device_authenticate = &device_authenticate;
    api.device_event = &device_event;
    api.transport_listening = &transport_listening;
    api.transport_settings = &transport_settings;
    api.audit = &audit;
    return api;
  }
};

helm_status PluginManager::HostFunctions::http_request(void* host_ctx, const helm_session* session,
                                                       const helm_http_request* request,
                                                       helm_http_complete_fn complete, void* user,
                                                       helm_error* err) noexcept {
  try {
    HostContext& ctx = context_of(host_ctx);
    broker::HttpBroker* http = ctx.manager->options().http;
    if (http == nullptr) {
      return fail(err, HELM_STATUS_UNSUPPORTED, "outbound HTTPS is not available in this hub");
    }
    if (request == nullptr || complete == nullptr ||
        request->struct_size < HELM_HTTP_REQUEST_V1_0_SIZE) {
      return fail(err, HELM_STATUS_INVALID_INPUT,
                  "http_request: request or complete is NULL, or the request struct is too small");
    }
    auto text = [](const char* data, size_t size) {
      return data == nullptr ? std::string() : std::string(data, size);
    };
    broker::OutboundRequest out;
    out.method = text(request->method, request->method_len);
    out.url = text(request->url, request->url_len);
    out.timeout = std::chrono::milliseconds(request->timeout_ms);
    for (size_t i = 0; i < request->header_count; ++i) {
      const helm_http_header* header = request->headers == nullptr ? nullptr : request->headers[i];
      if (header == nullptr || header->struct_size < HELM_HTTP_HEADER_V1_0_SIZE) {
        return fail(err, HELM_STATUS_INVALID_INPUT, "http_request: a header is NULL or too small");
      }
      out.headers.emplace_back(text(header->name, header->name_len),
                               text(header->value, header->value_len));
    }
    if (request->body != nullptr && request->body_len > 0) {
      out.body.assign(reinterpret_cast<const char*>(request->body), request->body_len);
    }
    out.allowed_hosts = ctx.outbound_hosts;
    out.owner = ctx.owner;
    // On-premises vendors: the organization's settings may carry the CA that signed the
    // vendor's certificate ("ca_pem") and the vendor's URLs (capabilities.
    // outbound_hosts_from_org_config), whose hosts are then reachable for this organization.
    if (session != nullptr) {
      auto* state = const_cast<helm_session*>(session);
      const json org_config = json::parse(state->org_config_json, nullptr, false);
      if (org_config.is_object() && org_config.contains("ca_pem") &&
          org_config["ca_pem"].is_string()) {
        out.ca_pem = org_config["ca_pem"].get<std::string>();
      }
      for (const auto& host : settings_hosts(org_config, ctx.outbound_url_settings)) {
        out.allowed_hosts.push_back(host);
      }
    } else if (HELM_HAS_FIELD(request, helm_http_request, organization_id_len) &&
               request->organization_id != nullptr && request->organization_id_len > 0) {
      // ABI 1.2: no session (an event handler, a timer), but made for one organization: its
      // settings apply as in a call, if the plugin is turned on for it.
      const std::string org(request->organization_id, request->organization_id_len);
      if (!vault::is_valid_org_id(org)) {
        return fail(err, HELM_STATUS_INVALID_INPUT, "http_request: organization_id is not a UUID");
      }
      const auto settings = ctx.manager->org_settings(org, ctx.plugin);
      if (!settings) {
        return fail(err, HELM_STATUS_UNAVAILABLE,
                    "http_request: the organization's settings cannot be read now");
      }
      if (!settings->enabled) {
        return fail(err, HELM_STATUS_FORBIDDEN,
                    "http_request: the plugin is not turned on for that organization");
      }
      if (settings->config.is_object() && settings->config.contains("ca_pem") &&
          settings->config["ca_pem"].is_string()) {
        out.ca_pem = settings->config["ca_pem"].get<std::string>();
      }
      for (const auto& host : settings_hosts(settings->config, ctx.outbound_url_settings)) {
        out.allowed_hosts.push_back(host);
      }
    }
    auto context = ctx.shared_from_this();
    ctx.work_started();
    auto submitted =
        http->submit(std::move(out), [complete, user, context](helm_status status,
                                                               broker::OutboundResponse* response,
                                                               std::string error_message) {
          try {
            if (status == HELM_STATUS_OK && response != nullptr) {
              std::vector<helm_http_header> headers(response->headers.size());
              std::vector<const helm_http_header*> pointers(response->headers.size());
              for (size_t i = 0; i < headers.size(); ++i) {
                headers[i].struct_size = sizeof(helm_http_header);
                headers[i].name = response->headers[i].first.c_str();
                headers[i].name_len = response->headers[i].first.size();
                headers[i].value = response->headers[i].second.c_str();
                headers[i].value_len = response->headers[i].second.size();
                pointers[i] = &headers[i];
              }
              helm_http_response r{};
              r.struct_size = sizeof r;
              r.status_code = static_cast<uint32_t>(response->status_code);
              r.headers = pointers.data();
              r.header_count = pointers.size();
              r.body = reinterpret_cast<const uint8_t*>(response->body.data());
              r.body_len = response->body.size();
              complete(user, HELM_STATUS_OK, &r, nullptr);
            } else {
              helm_error error{};
              error.struct_size = sizeof error;
              set_error(&error, status == HELM_STATUS_OK ? HELM_STATUS_INTERNAL : status,
                        error_message);
              complete(user, error.status, nullptr, &error);
            }
          } catch (...) {
            // The plugin's callback is noexcept by contract; building the response may throw.
          }
          context->work_finished();
        });
    if (!submitted.ok()) {
      ctx.work_finished();
      return fail(err, submitted.status, submitted.message);
    }
    return HELM_STATUS_OK;
  } catch (const std::exception& e) {
    return fail(err, HELM_STATUS_INTERNAL, std::string("http_request failed: ") + e.what());
  } catch (...) {
    return fail(err, HELM_STATUS_INTERNAL, "http_request failed");
  }
}

// ---------------------------------------------------------------------------------------------

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

fs::path build_tree_dev_key() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  // helm-hub lives in <build>/host/; the key in <build>/dev-publisher/.
  const fs::path key = exe.parent_path() / ".." / "dev-publisher" / "dev.pub";
  return fs::is_regular_file(key, ec) ? fs::weakly_canonical(key, ec) : fs::path();
}

PluginManager::PluginManager(PluginManagerOptions options)
    : options_(std::move(options)), deadlines_(std::make_unique<Deadlines>(options_.workers)) {}

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
  if (options_.pool != nullptr) {
    const auto failed = options_.pool->run([this](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      for (const auto& row : tx.exec("SELECT plugin, enabled, config::text, version "
                                     "FROM plugin_settings")) {
        stored_settings_[row[0].c_str()] = {
            row[1].as<bool>(),
            {json::parse(row[2].c_str(), nullptr, false), row[3].as<std::int64_t>()}};
      }
      tx.commit();
    });
    if (failed) {
      log::error("cannot read the stored plugin settings; plugins start with defaults",
                 {{"error", failed->message}});
    }
  }
  std::vector<fs::path> directories;
  for (const fs::path& root : options_.search_path) {
    if (!fs::is_directory(root, ec)) {
      log::info("plugin directory not found; skipped", {{"path", root.string()}});
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& item : fs::directory_iterator(root, ec)) {
      const std::string base = item.path().filename().string();
      if (base.rfind(".install-", 0) == 0 || base.rfind(".uninstall-", 0) == 0) {
        // Left by an install or uninstall the hub did not finish (killed): never a plugin.
        remove_tree(item.path());
        continue;
      }
      if (base.rfind('.', 0) == 0) continue;
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

PluginManager::Entry* PluginManager::entry_by_name(const std::string& name) const {
  Entry* best = nullptr;
  for (const auto& entry : entries_) {
    if (entry->removed || entry->record.name != name) continue;
    if (best == nullptr || entry->record.state == "running") best = entry.get();
  }
  return best;
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
  record.description = string_member(record.manifest, "description");

  json config = json::object();
  if (auto stored = stored_settings_.find(record.name); stored != stored_settings_.end()) {
    record.enabled = stored->second.first;
    if (stored->second.second.first.is_object()) config = stored->second.second.first;
    record.config_version = stored->second.second.second;
  }
  record.config = config;

  {
    std::lock_guard lock(mutex_);
    for (const auto& other : entries_) {
      if (other->record.name == record.name && other->record.state == "running") {
        record.last_error = "another plugin named " + record.name + " is already running from " +
                            other->record.directory.string() +
                            "; remove one of the two directories";
        log::error("plugin not loaded", {{"plugin", record.name},
                                         {"directory", directory.string()},
                                         {"error", record.last_error}});
        entries_.push_back(std::move(entry));
        return;
      }
    }
  }
  Entry* raw = entry.get();
  {
    std::lock_guard lock(mutex_);
    entries_.push_back(std::move(entry));
  }
  if (!raw->record.enabled) {
    std::lock_guard lock(mutex_);
    raw->record.state = "disabled";
    log::info("plugin disabled by the operator; not loaded", {{"plugin", raw->record.name}});
    return;
  }
  const ManagerOutcome started = start_instance(*raw, config);
  if (!started.ok()) {
    log::error("plugin not loaded", {{"plugin", raw->record.name},
                                     {"directory", directory.string()},
                                     {"error", started.message}});
  }
}

LoadOptions PluginManager::loader_options(std::string& dev_key_id) const {
  LoadOptions load_options;
  load_options.manifest_validator = validate_manifest;
  load_options.trusted_publisher_keys = read_trusted_keys(options_.trusted_keys_file);
  if (!options_.dev_key_file.empty()) {
    for (const auto& key : read_trusted_keys(options_.dev_key_file)) {
      dev_key_id = key.id();
      load_options.trusted_publisher_keys.push_back(key);
    }
  }
  load_options.allow_unsigned = options_.allow_unsigned;
  load_options.staging_root = options_.staging_root;
  return load_options;
}

ManagerOutcome PluginManager::start_instance(Entry& entry, const json& config) {
  const fs::path directory = entry.record.directory;
  auto failed = [&](helm_status status, std::string message) {
    std::lock_guard lock(mutex_);
    if (!entry.instance) entry.record.state = "failed";
    entry.record.last_error = message;
    return ManagerOutcome{status, std::move(message), {}};
  };

  std::string dev_key_id;
  const LoadOptions load_options = loader_options(dev_key_id);
  auto loaded = load_plugin(directory, load_options);
  if (!loaded) {
    std::string message = loaded.error().message;
    if (loaded.error().code == LoadErrorCode::kNotSigned) {
      message = "plugin in " + directory.string() +
                " is unsigned (no signature file); sign it with `helm-plugin sign` and trust its "
                "publisher key in plugins.trusted_keys_file, or, for development only, set "
                "plugins.allow_unsigned = true";
    }
    return failed(HELM_STATUS_INVALID_INPUT, std::move(message));
  }
  const std::shared_ptr<const LoadedPlugin> plugin = std::move(loaded).value();
  const json& manifest = plugin->manifest();

  // Schemas: configuration, per-organization settings, each operation's input.
  std::string schema_error;
  auto config_schema = compile_schema(manifest, "config_schema", schema_error);
  auto org_schema = compile_schema(manifest, "org_config_schema", schema_error);
  std::map<std::string, std::shared_ptr<const schema::JsonSchema>> op_schemas;
  std::map<std::string, std::chrono::milliseconds> op_timeouts;
  if (manifest.contains("operations") && manifest["operations"].is_object()) {
    for (const auto& [op, spec] : manifest["operations"].items()) {
      auto compiled = compile_schema(spec, "input_schema", schema_error);
      if (!compiled) break;
      op_schemas[op] = compiled;
      op_timeouts[op] = spec.contains("timeout_ms") && spec["timeout_ms"].is_number_integer()
                            ? std::chrono::milliseconds(spec["timeout_ms"].get<std::int64_t>())
                            : options_.default_op_timeout;
    }
  }
  if (!config_schema || !org_schema || !schema_error.empty()) {
    return failed(HELM_STATUS_INVALID_INPUT, "manifest.json: " + schema_error);
  }
  if (const auto problems = validate(*config_schema, config); !problems.empty()) {
    return failed(
        HELM_STATUS_INVALID_INPUT,
        "the stored configuration does not match config_schema: " + problems.front().first + ": " +
            problems.front().second + "; fix it with PATCH /api/v1/plugins/" + entry.record.name);
  }

  auto context = std::make_shared<HostContext>();
  context->manager = this;
  context->plugin = plugin->name();
  context->owner = g_next_owner.fetch_add(1);
  const json caps = manifest.value("capabilities", json::object());
  context->secret_globs = string_list(caps.value("secrets", json::array()));
  context->outbound_hosts = string_list(caps.value("outbound_hosts", json::array()));
  context->outbound_url_settings =
      string_list(caps.value("outbound_hosts_from_org_config", json::array()));
  const json events = caps.value("events", json::object());
  context->publish_topics = string_list(events.value("publish", json::array()));
  context->subscribe_topics = string_list(events.value("subscribe", json::array()));
  context->transport = caps.value("transport", false);
  if (context->transport && plugin->functions().device_send == nullptr) {
    return failed(HELM_STATUS_INVALID_INPUT,
                  "the manifest declares capabilities.transport but the library has no "
                  "device_send (build it against plugin ABI 1.1 with a transport entry)");
  }

  const helm_host_api api = HostFunctions::make_api(context.get());
  const std::string name = plugin->name();
  auto created =
      PluginInstance::create(plugin, api, config.dump(), [name](const std::string& message) {
        log::warn("plugin misbehaved", {{"plugin", name}, {"violation", message}});
      });
  if (!created)
    return failed(created.error().status, "create() failed: " + created.error().message);
  std::shared_ptr<PluginInstance> instance = std::move(created).value();
  if (auto started = instance->start(); !started) {
    return failed(started.error().status, "start() failed: " + started.error().message);
  }
  std::shared_ptr<PluginInstance> previous;
  std::shared_ptr<HostContext> previous_context;
  {
    std::lock_guard lock(mutex_);
    previous = std::move(entry.instance);
    previous_context = std::move(entry.context);
    entry.instance = instance;
    entry.context = context;
    entry.config_schema = config_schema;
    entry.org_config_schema = org_schema;
    entry.op_schemas = std::move(op_schemas);
    entry.op_timeouts = std::move(op_timeouts);
    entry.record.state = "running";
    entry.record.last_error.clear();
    entry.record.abi = to_string(plugin->abi());
    entry.record.version = plugin->version();
    entry.record.manifest = manifest;
    entry.record.description = string_member(manifest, "description");
    entry.record.kind = string_member(manifest, "kind");
    entry.record.signer = signer_text(plugin->signer(), dev_key_id);
    entry.record.config = config;
    entry.record.loaded_at = now_rfc3339();
  }
  log::info("plugin running", {{"plugin", entry.record.name},
                               {"version", entry.record.version},
                               {"signer", entry.record.signer},
                               {"directory", directory.string()}});
  // Events on the topics the manifest subscribes to.
  if (options_.events != nullptr && !context->subscribe_topics.empty()) {
    std::weak_ptr<PluginInstance> weak = instance;
    std::string error;
    const helm_status subscribed = options_.events->subscribe(
        context->owner_text(), context->subscribe_topics,
        [weak](const broker::Event& event) {
          if (auto target = weak.lock()) {
            target->deliver_event(event.topic, event.organization_id, event.source,
                                  event.payload_json);
          }
        },
        error);
    if (subscribed != HELM_STATUS_OK) {
      log::warn("plugin subscriptions refused", {{"plugin", entry.record.name}, {"error", error}});
    }
  }
  // The old instance (reload) drains its calls in flight, then goes.
  retire(options_, previous, previous_context, /*replaced=*/true);
  return {};
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
    std::shared_ptr<PluginInstance> instance;
    std::shared_ptr<HostContext> context;
    {
      std::lock_guard lock(mutex_);
      instance = std::move(entry->instance);
      context = entry->context;
    }
    if (!instance) continue;
    if (retire(options_, instance, context)) {
      std::lock_guard lock(mutex_);
      entry->record.state = "stopped";
      continue;
    }
    std::lock_guard lock(mutex_);
    entry->record.state = "failed";
    entry->record.last_error = "abandoned at shutdown: calls did not finish";
  }
}

std::vector<PluginRecord> PluginManager::list() const {
  std::vector<PluginRecord> out;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : entries_) {
      if (entry->removed) continue;
      // Everything but the manifest, which would be copied only to be thrown away.
      const PluginRecord& r = entry->record;
      PluginRecord copy;
      copy.name = r.name;
      copy.version = r.version;
      copy.kind = r.kind;
      copy.abi = r.abi;
      copy.state = r.state;
      copy.signer = r.signer;
      copy.last_error = r.last_error;
      copy.directory = r.directory;
      copy.description = r.description;
      copy.config = r.config;
      copy.config_version = r.config_version;
      copy.enabled = r.enabled;
      copy.loaded_at = r.loaded_at;
      out.push_back(std::move(copy));
      out.back().calls = entry->calls.load();
      out.back().calls_failed = entry->calls_failed.load();
      out.back().violations = entry->instance ? entry->instance->violations() : 0;
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PluginRecord& a, const PluginRecord& b) { return a.name < b.name; });
  return out;
}

std::optional<PluginRecord> PluginManager::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Entry* best = entry_by_name(name);
  if (best == nullptr) return std::nullopt;
  PluginRecord record = best->record;
  record.calls = best->calls.load();
  record.calls_failed = best->calls_failed.load();
  record.violations = best->instance ? best->instance->violations() : 0;
  return record;
}

// ---------------------------------------------------------------------------------------------
// Operator lifecycle

void PluginManager::persist_settings(const std::string& name, bool enabled, const json& config,
                                     std::int64_t version) {
  stored_settings_[name] = {enabled, {config, version}};
  if (options_.pool == nullptr) return;
  const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
    pqxx::work tx(conn);
    tx.exec_params(
        "INSERT INTO plugin_settings (plugin, enabled, config, version, updated_at) "
        "VALUES ($1, $2, $3::jsonb, $4, now()) ON CONFLICT (plugin) DO UPDATE SET "
        "enabled = EXCLUDED.enabled, config = EXCLUDED.config, version = EXCLUDED.version, "
        "updated_at = now()",
        name, enabled, config.dump(), version);
    tx.commit();
  });
  if (failed) {
    log::error("plugin settings not saved; they hold until the hub restarts",
               {{"plugin", name}, {"error", failed->message}});
  }
}

ManagerOutcome PluginManager::set_enabled(const std::string& name, bool enabled) {
  const std::lock_guard lifecycle(lifecycle_mutex_);
  Entry* entry = nullptr;
  json config;
  std::int64_t version = 1;
  {
    std::lock_guard lock(mutex_);
    entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    config = entry->record.config;
    version = entry->record.config_version;
    entry->record.enabled = enabled;
  }
  persist_settings(name, enabled, config, version);
  if (enabled) {
    std::shared_ptr<PluginInstance> running;
    {
      std::lock_guard lock(mutex_);
      running = entry->instance;
    }
    if (running) return {};
    return start_instance(*entry, config);
  }
  std::shared_ptr<PluginInstance> instance;
  std::shared_ptr<HostContext> context;
  {
    std::lock_guard lock(mutex_);
    instance = std::move(entry->instance);
    context = entry->context;
    entry->record.state = "disabled";
  }
  if (!retire(options_, instance, context)) {
    std::lock_guard record_lock(mutex_);
    entry->record.last_error = "disabled while calls were still running; instance abandoned";
  }
  log::info("plugin disabled", {{"plugin", name}});
  return {};
}

// ---------------------------------------------------------------------------------------------
// Install and uninstall

namespace {

/// Writes `content` to a new file (mode `mode`) and flushes it to disk.
bool write_new_file(const fs::path& path, std::string_view content, mode_t mode,
                    std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    error = "cannot create " + path.string() + ": " + std::strerror(errno);
    return false;
  }
  std::size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot write " + path.string() + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    written += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) error = "cannot flush " + path.string() + ": " + std::strerror(errno);
  return synced;
}

void sync_directory(const fs::path& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

ManagerOutcome PluginManager::install(std::string_view bundle, PluginRecord* installed) {
  const std::lock_guard lifecycle(lifecycle_mutex_);
  auto refused = [](std::string message) {
    return ManagerOutcome{HELM_STATUS_INVALID_INPUT, std::move(message), {}};
  };

  // 1. The archive's shape: three plain files, within the limits.
  signing::BundleLimits limits;
  limits.max_total_bytes = options_.max_bundle_bytes;
  auto files = signing::read_bundle(bundle, limits);
  if (!files) return refused(files.error().message);
  const signing::BundleFile* manifest_file = nullptr;
  const signing::BundleFile* signature_file = nullptr;
  for (const auto& file : files.value()) {
    if (file.name == signing::kBundleManifest) manifest_file = &file;
    if (file.name == signing::kBundleSignature) signature_file = &file;
  }
  if (manifest_file == nullptr) return refused("the plugin bundle holds no manifest.json");
  if (signature_file == nullptr) {
    return refused(
        "the plugin bundle holds no signature; make it with `helm-plugin pack`, which "
        "signs or checks the signature");
  }
  const json manifest = json::parse(manifest_file->content, nullptr, false);
  if (!manifest.is_object()) return refused("manifest.json in the bundle is not a JSON object");
  const std::string name = string_member(manifest, "name");
  const std::string library = string_member(manifest, "library");
  if (!valid_plugin_directory_name(name)) {
    return refused(
        "manifest.json in the bundle has no valid \"name\" (lower-case letters, digits "
        "and '-', starting with a letter, at most 64 characters)");
  }
  for (const auto& file : files.value()) {
    if (file.name != signing::kBundleManifest && file.name != signing::kBundleSignature &&
        file.name != library) {
      return refused("the plugin bundle holds \"" + file.name +
                     "\", which manifest.json does not "
                     "name as its library (\"" +
                     library + "\")");
    }
  }
  if (files.value().size() != 3) {
    return refused("the plugin bundle lacks the library \"" + library +
                   "\" that manifest.json names");
  }

  // 2. Not installed yet (by name, and by directory).
  {
    std::lock_guard lock(mutex_);
    if (const Entry* existing = entry_by_name(name)) {
      return {HELM_STATUS_CONFLICT,
              "plugin " + name + " is already installed (version " + existing->record.version +
                  " in " + existing->record.directory.string() +
                  "); uninstall it first (DELETE /api/v1/plugins/" + name + ")",
              {}};
    }
  }
  const fs::path root =
      !options_.install_dir.empty()
          ? options_.install_dir
          : (options_.search_path.empty() ? fs::path() : options_.search_path.front());
  if (root.empty()) {
    return {HELM_STATUS_UNAVAILABLE, "this hub has no plugin directory to install into", {}};
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  const fs::path target = root / name;
  if (fs::exists(fs::symlink_status(target, ec))) {
    return {HELM_STATUS_CONFLICT,
            target.string() + " already exists; remove it or uninstall the plugin first",
            {}};
  }

  // 3. Unpack into a private directory beside the target (same file system: one rename
  //    publishes it), verify there, and publish only what passed.
  std::string pattern = (root / ".install-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return {HELM_STATUS_UNAVAILABLE,
            "cannot create a directory in " + root.string() + ": " + std::strerror(errno),
            {}};
  }
  const fs::path staging = pattern;
  std::string error;
  for (const auto& file : files.value()) {
    const mode_t mode = file.name == library ? 0755 : 0644;
    if (!write_new_file(staging / file.name, file.content, mode, error)) {
      remove_tree(staging);
      return {HELM_STATUS_UNAVAILABLE, error, {}};
    }
  }
  std::string dev_key_id;
  auto verified = verify_plugin(staging, loader_options(dev_key_id));
  if (!verified) {
    remove_tree(staging);
    std::string message = verified.error().message;
    // The loader names the directory it checked; the staging name means nothing to the caller.
    for (std::size_t at = message.find(staging.string()); at != std::string::npos;
         at = message.find(staging.string())) {
      message.replace(at, staging.string().size(), "the bundle");
    }
    return refused(std::move(message));
  }
  if (!verified.value().signer.is_signed) {
    remove_tree(staging);
    return refused("the plugin bundle is not signed");
  }
  ::chmod(staging.c_str(), 0755);
  sync_directory(staging);

  // Listed disabled before it appears on disk, so a crash in between cannot start it.
  persist_settings(name, false, json::object(), 1);
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    const int failure = errno;
    remove_tree(staging);
    return {failure == EEXIST ? HELM_STATUS_CONFLICT : HELM_STATUS_UNAVAILABLE,
            "cannot move the plugin into " + target.string() + ": " + std::strerror(failure),
            {}};
  }
  sync_directory(root);
  load_one(target);
  log::info("plugin installed (disabled)", {{"plugin", name},
                                            {"version", verified.value().version},
                                            {"signer", verified.value().signer.describe()},
                                            {"directory", target.string()}});
  {
    std::lock_guard lock(mutex_);
    if (Entry* entry = entry_by_name(name)) {
      // Not loaded yet, but verified: who signed it is known now.
      entry->record.signer = signer_text(verified.value().signer, dev_key_id);
      if (installed != nullptr) *installed = entry->record;
    }
  }
  return {};
}

ManagerOutcome PluginManager::uninstall(const std::string& name) {
  const std::lock_guard lifecycle(lifecycle_mutex_);
  Entry* entry = nullptr;
  fs::path directory;
  {
    std::lock_guard lock(mutex_);
    entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    directory = entry->record.directory;
  }
  // First off the plugin path (one rename: a crash leaves it either installed or gone), then
  // stopped, then deleted. The running instance uses its staged copy, not this directory.
  std::string pattern = (directory.parent_path() / ".uninstall-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return {HELM_STATUS_UNAVAILABLE,
            "cannot remove " + directory.string() + ": " + std::strerror(errno),
            {}};
  }
  const fs::path trash = fs::path(pattern) / name;
  if (::rename(directory.c_str(), trash.c_str()) != 0) {
    const int failure = errno;
    remove_tree(pattern);
    return {HELM_STATUS_UNAVAILABLE,
            "cannot remove " + directory.string() + ": " + std::strerror(failure),
            {}};
  }
  sync_directory(directory.parent_path());

  std::shared_ptr<PluginInstance> instance;
  std::shared_ptr<HostContext> context;
  {
    std::lock_guard lock(mutex_);
    instance = std::move(entry->instance);
    context = entry->context;
    entry->record.state = "uninstalled";
    entry->removed = true;
  }
  if (instance && !retire(options_, instance, context)) {
    log::warn("plugin uninstalled while calls were still running; instance abandoned",
              {{"plugin", name}});
  }
  remove_tree(pattern);

  stored_settings_.erase(name);
  {
    std::lock_guard lock(org_cache_mutex_);
    for (auto it = org_cache_.begin(); it != org_cache_.end();) {
      it = it->first.second == name ? org_cache_.erase(it) : std::next(it);
    }
  }
  if (options_.pool != nullptr) {
    const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      tx.exec_params("DELETE FROM plugin_settings WHERE plugin = $1", name);
      tx.exec_params("DELETE FROM plugin_org_settings WHERE plugin = $1", name);
      tx.exec_params("DELETE FROM plugin_secret_grants WHERE plugin = $1", name);
      tx.exec_params("DELETE FROM plugin_kv WHERE plugin = $1", name);
      tx.commit();
    });
    if (failed) {
      log::error("plugin removed, but its stored settings and grants could not be deleted",
                 {{"plugin", name}, {"error", failed->message}});
    }
  }
  log::info("plugin uninstalled", {{"plugin", name}, {"directory", directory.string()}});
  return {};
}

ManagerOutcome PluginManager::reload(const std::string& name) {
  const std::lock_guard lifecycle(lifecycle_mutex_);
  Entry* entry = nullptr;
  json config;
  {
    std::lock_guard lock(mutex_);
    entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    if (!entry->record.enabled) {
      return {HELM_STATUS_CONFLICT,
              "plugin " + name + " is disabled; enable it (PATCH {\"enabled\": true}) instead",
              {}};
    }
    config = entry->record.config;
  }
  auto outcome = start_instance(*entry, config);
  if (outcome.ok()) log::info("plugin reloaded", {{"plugin", name}});
  return outcome;
}

ManagerOutcome PluginManager::set_config(const std::string& name, const json& config,
                                         std::optional<std::int64_t> if_match, bool dry_run) {
  const std::lock_guard lifecycle(lifecycle_mutex_);
  Entry* entry = nullptr;
  std::shared_ptr<const schema::JsonSchema> schema;
  std::shared_ptr<PluginInstance> instance;
  std::int64_t version = 0;
  bool enabled = true;
  {
    std::lock_guard lock(mutex_);
    entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    schema = entry->config_schema;
    instance = entry->instance;
    version = entry->record.config_version;
    enabled = entry->record.enabled;
  }
  if (if_match && *if_match != version) {
    return {HELM_STATUS_CONFLICT,
            "the configuration changed since it was read (version " + std::to_string(version) +
                "); read it again and retry",
            {}};
  }
  if (!config.is_object()) {
    return {HELM_STATUS_INVALID_INPUT,
            "the configuration must be a JSON object",
            {{"/", "not an object"}}};
  }
  if (schema) {
    if (auto problems = validate(*schema, config); !problems.empty()) {
      return {HELM_STATUS_INVALID_INPUT, "the configuration does not match the plugin's schema",
              std::move(problems)};
    }
  } else if (!instance) {
    // Not loaded (disabled or failed): no compiled schema yet, validate from the manifest.
    std::string error;
    json manifest;
    {
      std::lock_guard lock(mutex_);
      manifest = entry->record.manifest;
    }
    if (auto compiled = compile_schema(manifest, "config_schema", error)) {
      if (auto problems = validate(*compiled, config); !problems.empty()) {
        return {HELM_STATUS_INVALID_INPUT, "the configuration does not match the plugin's schema",
                std::move(problems)};
      }
    }
  }
  if (dry_run) return {};
  if (instance) {
    auto applied = instance->configure(config.dump());
    if (!applied) {
      if (applied.error().status != HELM_STATUS_UNSUPPORTED) {
        return {applied.error().status == HELM_STATUS_INVALID_INPUT ? HELM_STATUS_INVALID_INPUT
                                                                    : HELM_STATUS_CONFLICT,
                applied.error().message + "; the previous configuration is still in effect",
                {}};
      }
      // The plugin applies changes only at start: restart it with the new configuration; the
      // old instance keeps serving if the new one does not come up.
      auto restarted = start_instance(*entry, config);
      if (!restarted.ok()) {
        std::lock_guard lock(mutex_);
        if (entry->instance) entry->record.state = "running";
        return {restarted.status,
                restarted.message + "; the previous configuration is still in effect",
                {}};
      }
    }
  }
  {
    std::lock_guard lock(mutex_);
    entry->record.config = config;
    entry->record.config_version = version + 1;
  }
  persist_settings(name, enabled, config, version + 1);
  log::info("plugin configuration changed", {{"plugin", name}, {"version", version + 1}});
  if (!instance && enabled) {
    // An enabled plugin that failed to start (say, its port was taken) is tried again with the
    // new configuration: fixing the configuration is how an operator fixes that.
    bool failed = false;
    {
      std::lock_guard lock(mutex_);
      failed = entry->record.state == "failed";
    }
    if (failed) {
      auto started = start_instance(*entry, config);
      if (!started.ok()) {
        return {
            started.status,
            "the configuration is saved, but the plugin still does not start: " + started.message,
            {}};
      }
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Organization level

std::optional<OrgPluginSettings> PluginManager::org_settings(const std::string& org_id,
                                                             const std::string& name) {
  {
    std::lock_guard lock(org_cache_mutex_);
    if (auto it = org_cache_.find({org_id, name}); it != org_cache_.end()) return it->second;
  }
  OrgPluginSettings settings;
  if (options_.pool != nullptr) {
    const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      const auto rows = tx.exec_params(
          "SELECT enabled, config::text, version FROM plugin_org_settings "
          "WHERE org_id = $1 AND plugin = $2",
          org_id, name);
      if (!rows.empty()) {
        settings.enabled = rows[0][0].as<bool>();
        settings.config = json::parse(rows[0][1].c_str(), nullptr, false);
        if (!settings.config.is_object()) settings.config = json::object();
        settings.version = rows[0][2].as<std::int64_t>();
      }
      for (const auto& row : tx.exec_params("SELECT secret_name FROM plugin_secret_grants "
                                            "WHERE org_id = $1 AND plugin = $2 ORDER BY 1",
                                            org_id, name)) {
        settings.granted_secrets.emplace_back(row[0].c_str());
      }
      tx.commit();
    });
    if (failed) return std::nullopt;
  }
  std::lock_guard lock(org_cache_mutex_);
  org_cache_[{org_id, name}] = settings;
  return settings;
}

ManagerOutcome PluginManager::set_org_enabled(const std::string& org_id, const std::string& name,
                                              bool enabled) {
  {
    std::lock_guard lock(mutex_);
    if (entry_by_name(name) == nullptr) {
      return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    }
  }
  if (options_.pool != nullptr) {
    const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      tx.exec_params(
          "INSERT INTO plugin_org_settings (org_id, plugin, enabled) VALUES ($1, $2, $3) "
          "ON CONFLICT (org_id, plugin) DO UPDATE SET enabled = EXCLUDED.enabled, "
          "updated_at = now()",
          org_id, name, enabled);
      tx.commit();
    });
    if (failed) return {HELM_STATUS_UNAVAILABLE, failed->message, {}};
  }
  std::lock_guard lock(org_cache_mutex_);
  org_cache_.erase({org_id, name});
  if (options_.pool == nullptr) org_cache_[{org_id, name}].enabled = enabled;
  return {};
}

ManagerOutcome PluginManager::set_org_config(const std::string& org_id, const std::string& name,
                                             const json& config,
                                             std::optional<std::int64_t> if_match, bool dry_run) {
  std::shared_ptr<const schema::JsonSchema> schema;
  json manifest;
  {
    std::lock_guard lock(mutex_);
    Entry* entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    schema = entry->org_config_schema;
    manifest = entry->record.manifest;
  }
  if (!schema) {
    std::string error;
    schema = compile_schema(manifest, "org_config_schema", error);
  }
  if (!config.is_object()) {
    return {
        HELM_STATUS_INVALID_INPUT, "the settings must be a JSON object", {{"/", "not an object"}}};
  }
  if (schema) {
    if (auto problems = validate(*schema, config); !problems.empty()) {
      return {HELM_STATUS_INVALID_INPUT, "the settings do not match the plugin's schema",
              std::move(problems)};
    }
  }
  // Settings that open outbound hosts must hold https URLs: anything else would be refused at
  // call time with a message the technician cannot act on.
  std::vector<std::pair<std::string, std::string>> url_problems;
  const json caps =
      manifest.is_object() ? manifest.value("capabilities", json::object()) : json::object();
  for (const auto& pointer :
       string_list(caps.value("outbound_hosts_from_org_config", json::array()))) {
    try {
      const json::json_pointer at(pointer);
      if (!config.contains(at)) continue;
      const json& value = config.at(at);
      if (!value.is_string() || !https_url_host(value.get<std::string>())) {
        url_problems.emplace_back(pointer,
                                  "must be an https:// URL with a host name or IPv4 address "
                                  "(no user information)");
      }
    } catch (const json::exception&) {
    }
  }
  if (!url_problems.empty()) {
    return {HELM_STATUS_INVALID_INPUT, "the settings do not match the plugin's schema",
            std::move(url_problems)};
  }
  if (dry_run) return {};
  auto current = org_settings(org_id, name);
  if (!current) return {HELM_STATUS_UNAVAILABLE, "the database is unavailable", {}};
  if (if_match && *if_match != current->version) {
    return {HELM_STATUS_CONFLICT,
            "the settings changed since they were read (version " +
                std::to_string(current->version) + "); read them again and retry",
            {}};
  }
  if (options_.pool != nullptr) {
    bool stale = false;
    const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      const auto rows = tx.exec_params(
          "INSERT INTO plugin_org_settings (org_id, plugin, config, version) "
          "VALUES ($1, $2, $3::jsonb, 1) ON CONFLICT (org_id, plugin) DO UPDATE SET "
          "config = EXCLUDED.config, version = plugin_org_settings.version + 1, "
          "updated_at = now() WHERE $4::bigint IS NULL OR plugin_org_settings.version = $4 "
          "RETURNING version",
          org_id, name, config.dump(),
          if_match ? std::optional<std::int64_t>(*if_match) : std::optional<std::int64_t>());
      stale = rows.empty();
      tx.commit();
    });
    if (failed) return {HELM_STATUS_UNAVAILABLE, failed->message, {}};
    if (stale) {
      std::lock_guard lock(org_cache_mutex_);
      org_cache_.erase({org_id, name});
      return {HELM_STATUS_CONFLICT, "the settings changed since they were read; retry", {}};
    }
  }
  std::lock_guard lock(org_cache_mutex_);
  org_cache_.erase({org_id, name});
  if (options_.pool == nullptr) {
    auto& cached = org_cache_[{org_id, name}];
    cached.config = config;
    ++cached.version;
  }
  return {};
}

ManagerOutcome PluginManager::set_grants(const std::string& org_id, const std::string& name,
                                         const std::vector<std::string>& secrets) {
  std::vector<std::string> globs;
  {
    std::lock_guard lock(mutex_);
    Entry* entry = entry_by_name(name);
    if (entry == nullptr) return {HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}};
    const json& manifest = entry->record.manifest;
    if (manifest.is_object() && manifest.contains("capabilities")) {
      globs = string_list(manifest["capabilities"].value("secrets", json::array()));
    }
  }
  ManagerOutcome outcome;
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    const std::string& secret = secrets[i];
    const std::string field = "/secrets/" + std::to_string(i);
    if (!vault::is_valid_secret_name(secret)) {
      outcome.errors.emplace_back(field, "\"" + secret + "\" is not a valid secret name");
      continue;
    }
    const bool declared = std::any_of(globs.begin(), globs.end(), [&](const std::string& glob) {
      return vault::glob_match(glob, secret);
    });
    if (!declared) {
      outcome.errors.emplace_back(field, "\"" + secret + "\" is not declared by plugin " + name +
                                             " (capabilities.secrets)");
    }
  }
  if (!outcome.errors.empty()) {
    outcome.status = HELM_STATUS_INVALID_INPUT;
    outcome.message = "grants may name only secrets the plugin declares";
    return outcome;
  }
  if (options_.pool != nullptr) {
    const auto failed = options_.pool->run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      tx.exec_params("DELETE FROM plugin_secret_grants WHERE org_id = $1 AND plugin = $2", org_id,
                     name);
      for (const std::string& secret : std::set<std::string>(secrets.begin(), secrets.end())) {
        tx.exec_params(
            "INSERT INTO plugin_secret_grants (org_id, plugin, secret_name) VALUES ($1, $2, $3)",
            org_id, name, secret);
      }
      tx.commit();
    });
    if (failed) return {HELM_STATUS_UNAVAILABLE, failed->message, {}};
  }
  std::lock_guard lock(org_cache_mutex_);
  org_cache_.erase({org_id, name});
  return {};
}

// ---------------------------------------------------------------------------------------------
// Operations

void PluginManager::invoke(const std::string& name, const auth::SessionContext& session,
                           const std::string& op, const json& input,
                           std::function<void(OperationResult)> done) {
  std::shared_ptr<PluginInstance> instance;
  std::shared_ptr<const schema::JsonSchema> input_schema;
  std::chrono::milliseconds timeout = options_.default_op_timeout;
  Entry* entry = nullptr;
  {
    std::lock_guard lock(mutex_);
    entry = entry_by_name(name);
    if (entry == nullptr) {
      return done({HELM_STATUS_NOT_FOUND, "no plugin named " + name, {}});
    }
    if (!entry->instance) {
      return done({HELM_STATUS_UNAVAILABLE,
                   "plugin " + name + " is " + entry->record.state +
                       (entry->record.last_error.empty() ? "" : ": " + entry->record.last_error),
                   {}});
    }
    auto schema = entry->op_schemas.find(op);
    if (schema == entry->op_schemas.end()) {
      return done({HELM_STATUS_NOT_FOUND, "plugin " + name + " has no operation " + op, {}});
    }
    input_schema = schema->second;
    timeout = entry->op_timeouts[op];
    instance = entry->instance;
  }
  auto settings = org_settings(session.org_id, name);
  if (!settings) return done({HELM_STATUS_UNAVAILABLE, "the database is unavailable", {}});
  if (!settings->enabled) {
    return done({HELM_STATUS_FORBIDDEN,
                 "plugin " + name +
                     " is not enabled for this organization; an admin turns it on with "
                     "PATCH /api/v1/orgs/{org}/plugins/" +
                     name + " {\"enabled\": true}",
                 {}});
  }
  if (auto problems = validate(*input_schema, input); !problems.empty()) {
    return done({HELM_STATUS_INVALID_INPUT, "the input does not match the operation's schema",
                 std::move(problems)});
  }
  entry->calls.fetch_add(1);

  auto session_state = HostFunctions::open_session(session, name, settings->config.dump());
  struct Shared {
    std::mutex mutex;
    bool finished = false;
    std::function<void(OperationResult)> done;
  };
  auto shared = std::make_shared<Shared>();
  shared->done = std::move(done);
  auto finish = [shared, entry](OperationResult result) {
    std::function<void(OperationResult)> callback;
    {
      std::lock_guard lock(shared->mutex);
      if (shared->finished) return false;
      shared->finished = true;
      callback = std::move(shared->done);
    }
    if (result.status != HELM_STATUS_OK) entry->calls_failed.fetch_add(1);
    callback(std::move(result));
    return true;
  };

  CallRequest request;
  request.op = op;
  request.input_json = input.dump();
  request.session = session_state.get();
  request.organization_id = session.org_id;
  request.org_config_json = settings->config.dump();
  request.timeout = timeout;

  // The deadline: the caller hears TIMEOUT, the plugin is asked to cancel, and its completion,
  // whenever it comes, is ignored (the session stays alive until then).
  auto call_id = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto deadline_id = std::make_shared<std::atomic<std::uint64_t>>(0);
  std::weak_ptr<PluginInstance> weak_instance = instance;
  Deadlines* deadlines = deadlines_.get();
  deadline_id->store(deadlines->add(
      std::chrono::steady_clock::now() + timeout, [finish, weak_instance, call_id, timeout, op] {
        if (finish(OperationResult{HELM_STATUS_TIMEOUT,
                                   "operation " + op + " did not finish within " +
                                       std::to_string(timeout.count()) + " ms",
                                   {}})) {
          if (auto target = weak_instance.lock()) target->cancel(call_id->load());
        }
      }));
  call_id->store(instance->invoke(
      std::move(request), [finish, session_state, deadlines, deadline_id](CallResult result) {
        close_session(session_state);
        deadlines->cancel(deadline_id->load());
        finish(OperationResult{result.status, std::move(result.output), {}});
      }));
}

// ---------------------------------------------------------------------------------------------
// TransportLink

helm_status PluginManager::send_to_device(const std::string& device_id,
                                          const std::string& frame_json) {
  std::shared_ptr<PluginInstance> transport;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : entries_) {
      if (entry->instance && entry->context && entry->context->transport) {
        transport = entry->instance;
        break;
      }
    }
  }
  if (!transport) return HELM_STATUS_NOT_FOUND;
  return transport->device_send(device_id, frame_json);
}

void PluginManager::close_device(const std::string& device_id, std::uint16_t code,
                                 const std::string& reason) {
  std::vector<std::shared_ptr<PluginInstance>> transports;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : entries_) {
      if (entry->instance && entry->context && entry->context->transport) {
        transports.push_back(entry->instance);
      }
    }
  }
  for (const auto& transport : transports)
    transport->device_close(device_id, code, reason);
}

}  // namespace helm::plugins
