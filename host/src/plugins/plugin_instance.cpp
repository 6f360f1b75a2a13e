#include "helm/plugins/plugin_instance.hpp"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace helm::plugins {

// The ABI's call_ctx is an opaque token, not a pointer: (instance serial << kCallIdBits) | call
// id. A plugin that completes a call twice, or with garbage, then finds nothing in the registry
// instead of freed memory, and the serial still tells which instance misbehaved.
namespace {
constexpr unsigned kCallIdBits = 40;
constexpr std::uint64_t kCallIdMask = (std::uint64_t{1} << kCallIdBits) - 1;
constexpr std::uint64_t kMaxSerial = (std::uint64_t{1} << (64 - kCallIdBits)) - 1;
}  // namespace

struct PluginInstance::Core {
  Core(std::string name, ViolationHandler handler)
      : plugin_name(std::move(name)), on_violation(std::move(handler)) {}
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  ~Core();

  void violation(const std::string& message) noexcept {
    violations.fetch_add(1);
    if (!on_violation) return;
    try {
      on_violation("plugin \"" + plugin_name + "\": " + message);
    } catch (...) {
      // The handler is host code; a failure to report must not take anything else down.
    }
  }

  void call_finished() noexcept {
    const std::lock_guard<std::mutex> lock(mutex);
    --outstanding;
    changed.notify_all();
  }

  std::uint64_t serial = 0;
  const std::string plugin_name;
  const ViolationHandler on_violation;
  std::atomic<std::uint64_t> violations{0};
  std::atomic<std::uint64_t> next_call_id{1};

  std::mutex mutex;  // guards state, active and outstanding
  std::condition_variable changed;
  State state = State::kCreated;
  std::size_t active = 0;       // invoke/cancel/on_event/configure calls now inside the plugin
  std::size_t outstanding = 0;  // calls handed to the plugin and not completed yet

  std::mutex configure_mutex;  // configure() is never concurrent with itself
};

namespace {

struct PendingCall {
  std::shared_ptr<PluginInstance::Core> core;
  CompletionHandler handler;
  std::uint64_t call_id = 0;
};

/// Every call of every instance in the process that has not completed yet, by token. Never
/// destroyed, so plugin threads that outlive static destruction still find it.
class CallRegistry {
 public:
  static CallRegistry& instance() {
    static CallRegistry* const registry = new CallRegistry();
    return *registry;
  }

  std::uint64_t register_instance(const std::shared_ptr<PluginInstance::Core>& core) {
    const std::lock_guard<std::mutex> lock(mutex_);
    do {
      next_serial_ = next_serial_ >= kMaxSerial ? 1 : next_serial_ + 1;
    } while (instances_.count(next_serial_) != 0);
    instances_.emplace(next_serial_, core);
    return next_serial_;
  }

  void unregister_instance(std::uint64_t serial) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    instances_.erase(serial);
  }

  std::shared_ptr<PluginInstance::Core> find_instance(std::uint64_t serial) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = instances_.find(serial);
    return found == instances_.end() ? nullptr : found->second.lock();
  }

  void add(std::uint64_t token, PendingCall call) {
    const std::lock_guard<std::mutex> lock(mutex_);
    calls_.emplace(token, std::move(call));
  }

  std::optional<PendingCall> take(std::uint64_t token) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = calls_.find(token);
    if (found == calls_.end()) return std::nullopt;
    std::optional<PendingCall> call(std::move(found->second));
    calls_.erase(found);
    return call;
  }

  bool contains(std::uint64_t token) {
    const std::lock_guard<std::mutex> lock(mutex_);
    return calls_.count(token) != 0;
  }

 private:
  CallRegistry() = default;

  std::mutex mutex_;  // guards everything below
  std::uint64_t next_serial_ = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<PluginInstance::Core>> instances_;
  std::unordered_map<std::uint64_t, PendingCall> calls_;
};

/// What abandoned instances leave behind (library, host api, plugin instance), kept for the rest of
/// the process because the plugin may still run code that uses them. Reachable from here, so it
/// is a deliberate keep rather than a leak (LeakSanitizer agrees).
class AbandonedInstances {
 public:
  static AbandonedInstances& instance() {
    static AbandonedInstances* const abandoned = new AbandonedInstances();
    return *abandoned;
  }

  void keep(std::shared_ptr<const LoadedPlugin> plugin, std::unique_ptr<helm_host_api> api,
            helm_plugin_instance* instance) {
    const std::lock_guard<std::mutex> lock(mutex_);
    plugins_.push_back(std::move(plugin));
    apis_.push_back(std::move(api));
    instances_.push_back(instance);
  }

 private:
  AbandonedInstances() = default;

  std::mutex mutex_;  // guards everything below
  std::vector<std::shared_ptr<const LoadedPlugin>> plugins_;
  std::vector<std::unique_ptr<helm_host_api>> apis_;
  std::vector<helm_plugin_instance*> instances_;
};

void* token_to_context(std::uint64_t token) noexcept {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(token));
}

helm_status known_status(helm_status status) noexcept {
  return status < HELM_STATUS_OK || status > HELM_STATUS_INTERNAL ? HELM_STATUS_INTERNAL : status;
}

std::string message_of(const helm_error& error) {
  const void* end = std::memchr(error.message, '\0', sizeof error.message);
  const std::size_t length =
      end == nullptr ? sizeof error.message
                     : static_cast<std::size_t>(static_cast<const char*>(end) - error.message);
  return std::string(error.message, length);
}

helm_error make_error() noexcept {
  helm_error error;
  std::memset(&error, 0, sizeof error);
  error.struct_size = sizeof error;
  return error;
}

/// The helm_call_complete_fn the host gives every call.
void complete_call(void* call_ctx, helm_status status, const char* output,
                   std::size_t output_len) noexcept {
  CallRegistry& registry = CallRegistry::instance();
  const auto token = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(call_ctx));
  std::optional<PendingCall> pending = registry.take(token);
  if (!pending) {
    try {
      if (auto core = registry.find_instance(token >> kCallIdBits)) {
        core->violation("completed call " + std::to_string(token & kCallIdMask) +
                        " that was already completed or never issued; ignored");
      }
    } catch (...) {
      // Out of memory while reporting: the completion is ignored either way.
    }
    return;
  }
  CallResult result;
  try {
    result.status = known_status(status);
    if (output != nullptr) result.output.assign(output, output_len);
    if (result.status == HELM_STATUS_OK && !nlohmann::json::accept(result.output)) {
      pending->core->violation("call " + std::to_string(pending->call_id) + " (" +
                               std::to_string(output_len) +
                               " bytes) completed OK with output that is not JSON");
      result.status = HELM_STATUS_INTERNAL;
      result.output = "the plugin returned a result that is not valid JSON";
    }
  } catch (...) {
    result.status = HELM_STATUS_RESOURCE_EXHAUSTED;
    result.output.clear();
  }
  if (pending->handler) {
    try {
      pending->handler(std::move(result));
    } catch (...) {
      pending->core->violation("the host's completion handler threw; result lost");
    }
  }
  pending->core->call_finished();
}

std::uint32_t clamp_ms(std::chrono::milliseconds duration) noexcept {
  const auto count = duration.count();
  if (count <= 0) return 0;
  if (static_cast<std::uint64_t>(count) > std::numeric_limits<std::uint32_t>::max()) {
    return std::numeric_limits<std::uint32_t>::max();
  }
  return static_cast<std::uint32_t>(count);
}

const char* state_name(PluginInstance::State state) noexcept {
  switch (state) {
    case PluginInstance::State::kCreated:
      return "created";
    case PluginInstance::State::kStarted:
      return "started";
    case PluginInstance::State::kStopped:
      return "stopped";
    case PluginInstance::State::kDestroyed:
      return "destroyed";
    case PluginInstance::State::kAbandoned:
      return "abandoned";
  }
  return "unknown";
}

}  // namespace

PluginInstance::Core::~Core() {
  CallRegistry::instance().unregister_instance(serial);
}

Result<std::unique_ptr<PluginInstance>, PluginError> PluginInstance::create(
    std::shared_ptr<const LoadedPlugin> plugin, const helm_host_api& host_api,
    std::string_view config_json, ViolationHandler on_violation) {
  if (!plugin) return PluginError{HELM_STATUS_INVALID_INPUT, "no plugin to create"};
  auto api = std::make_unique<helm_host_api>(host_api);
  auto core = std::make_shared<Core>(plugin->name(), std::move(on_violation));
  core->serial = CallRegistry::instance().register_instance(core);

  const std::string config(config_json.empty() ? std::string_view("{}") : config_json);
  helm_plugin_instance* raw = nullptr;
  helm_error error = make_error();
  helm_status status = HELM_STATUS_INTERNAL;
  try {
    status = plugin->functions().create(api.get(), config.c_str(), config.size(), &raw, &error);
  } catch (...) {
    core->violation("create() let an exception escape (the ABI forbids this)");
    return PluginError{HELM_STATUS_INTERNAL,
                       "plugin \"" + plugin->name() + "\": create() failed with an exception"};
  }
  if (status != HELM_STATUS_OK) {
    std::string message = message_of(error);
    if (message.empty()) message = "no reason given";
    return PluginError{known_status(status),
                       "plugin \"" + plugin->name() + "\": create() failed: " + message};
  }
  if (raw == nullptr) {
    core->violation("create() returned OK without an instance");
    return PluginError{HELM_STATUS_INTERNAL,
                       "plugin \"" + plugin->name() + "\": create() returned no instance"};
  }
  std::unique_ptr<PluginInstance> instance(
      new PluginInstance(std::move(plugin), std::move(api), std::move(core)));
  instance->instance_ = raw;
  return instance;
}

PluginInstance::PluginInstance(std::shared_ptr<const LoadedPlugin> plugin,
                               std::unique_ptr<helm_host_api> api, std::shared_ptr<Core> core)
    : plugin_(std::move(plugin)), host_api_(std::move(api)), core_(std::move(core)) {}

PluginInstance::~PluginInstance() {
  try {
    shutdown(kDefaultDrainTimeout);
  } catch (...) {
    // Only message building can throw here; the instance is destroyed or abandoned regardless.
  }
}

Result<void, PluginError> PluginInstance::start() {
  {
    const std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->state != State::kCreated) {
      return PluginError{
          HELM_STATUS_UNAVAILABLE,
          "plugin \"" + plugin_->name() + "\" cannot start: it is " + state_name(core_->state)};
    }
  }
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.start != nullptr) {
    helm_error error = make_error();
    helm_status status = HELM_STATUS_INTERNAL;
    std::string message;
    try {
      status = functions.start(instance_, &error);
      message = message_of(error);
    } catch (...) {
      core_->violation("start() let an exception escape (the ABI forbids this)");
      message = "start() failed with an exception";
    }
    if (status != HELM_STATUS_OK) {
      destroy();
      if (message.empty()) message = "no reason given";
      return PluginError{known_status(status),
                         "plugin \"" + plugin_->name() + "\": start() failed: " + message};
    }
  }
  const std::lock_guard<std::mutex> lock(core_->mutex);
  core_->state = State::kStarted;
  return {};
}

bool PluginInstance::enter() {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  if (core_->state != State::kStarted) return false;
  ++core_->active;
  return true;
}

void PluginInstance::leave() {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  --core_->active;
  core_->changed.notify_all();
}

Result<void, PluginError> PluginInstance::configure(std::string_view config_json) {
  const std::lock_guard<std::mutex> serialize(core_->configure_mutex);
  if (!enter()) {
    return PluginError{HELM_STATUS_UNAVAILABLE,
                       "plugin \"" + plugin_->name() + "\" is not running"};
  }
  struct Leave {
    PluginInstance* self;
    ~Leave() { self->leave(); }
  } leave_on_exit{this};
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.configure == nullptr) {
    return PluginError{HELM_STATUS_UNSUPPORTED,
                       "plugin \"" + plugin_->name() +
                           "\" applies configuration changes only when it is restarted"};
  }
  const std::string config(config_json.empty() ? std::string_view("{}") : config_json);
  helm_error error = make_error();
  helm_status status = HELM_STATUS_INTERNAL;
  std::string message;
  try {
    status = functions.configure(instance_, config.c_str(), config.size(), &error);
    message = message_of(error);
  } catch (...) {
    core_->violation("configure() let an exception escape (the ABI forbids this)");
    message = "configure() failed with an exception";
  }
  if (status != HELM_STATUS_OK) {
    if (message.empty()) message = "no reason given";
    return PluginError{known_status(status),
                       "plugin \"" + plugin_->name() + "\" refused the configuration: " + message};
  }
  return {};
}

std::uint64_t PluginInstance::invoke(CallRequest request, CompletionHandler on_complete) {
  const std::uint64_t call_id = core_->next_call_id.fetch_add(1) & kCallIdMask;
  if (!enter()) {
    if (on_complete) {
      on_complete(
          CallResult{HELM_STATUS_UNAVAILABLE, "plugin \"" + plugin_->name() + "\" is not running"});
    }
    return call_id;
  }
  const std::uint64_t token = (core_->serial << kCallIdBits) | call_id;
  {
    const std::lock_guard<std::mutex> lock(core_->mutex);
    ++core_->outstanding;
  }
  try {
    CallRegistry::instance().add(token, PendingCall{core_, std::move(on_complete), call_id});
  } catch (...) {
    core_->call_finished();
    leave();
    throw;  // out of memory: the caller still owns the (unmoved or moved-from) handler's fate
  }

  helm_call call{};
  call.struct_size = sizeof call;
  call.timeout_ms = clamp_ms(request.timeout);
  call.call_id = call_id;
  call.op = request.op.c_str();
  call.op_len = request.op.size();
  call.input_json = request.input_json.c_str();
  call.input_len = request.input_json.size();
  call.session = request.session;
  call.organization_id = request.organization_id.c_str();
  call.organization_id_len = request.organization_id.size();
  call.org_config_json = request.org_config_json.c_str();
  call.org_config_len = request.org_config_json.size();
  call.complete = &complete_call;
  call.call_ctx = token_to_context(token);
  try {
    plugin_->functions().invoke(instance_, &call);
  } catch (...) {
    core_->violation("invoke() of \"" + request.op +
                     "\" let an exception escape (the ABI forbids this)");
    // Completes the call unless the plugin already did.
    if (CallRegistry::instance().contains(token)) {
      const std::string message = "operation \"" + request.op + "\" failed with an exception";
      complete_call(call.call_ctx, HELM_STATUS_INTERNAL, message.data(), message.size());
    }
  }
  leave();
  return call_id;
}

void PluginInstance::cancel(std::uint64_t call_id) {
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.cancel == nullptr || !enter()) return;
  if (CallRegistry::instance().contains((core_->serial << kCallIdBits) | (call_id & kCallIdMask))) {
    try {
      functions.cancel(instance_, call_id);
    } catch (...) {
      core_->violation("cancel() let an exception escape (the ABI forbids this)");
    }
  }
  leave();
}

bool PluginInstance::deliver_event(std::string_view topic, std::string_view organization_id,
                                   std::string_view source, std::string_view payload_json) {
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.on_event == nullptr || !enter()) return false;
  // The ABI promises NUL-terminated strings; string_views need not be.
  const std::string topic_text(topic);
  const std::string organization_text(organization_id);
  const std::string source_text(source);
  const std::string payload_text(payload_json);
  helm_event event{};
  event.struct_size = sizeof event;
  event.topic = topic_text.c_str();
  event.topic_len = topic_text.size();
  event.organization_id = organization_text.c_str();
  event.organization_id_len = organization_text.size();
  event.source = source_text.c_str();
  event.source_len = source_text.size();
  event.payload_json = payload_text.c_str();
  event.payload_len = payload_text.size();
  try {
    functions.on_event(instance_, &event);
  } catch (...) {
    core_->violation("on_event() let an exception escape (the ABI forbids this)");
  }
  leave();
  return true;
}

helm_status PluginInstance::device_send(std::string_view device_id, std::string_view frame_json) {
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.device_send == nullptr) return HELM_STATUS_UNSUPPORTED;
  if (!enter()) return HELM_STATUS_UNAVAILABLE;
  helm_status status = HELM_STATUS_INTERNAL;
  try {
    status = known_status(functions.device_send(instance_, device_id.data(), device_id.size(),
                                                frame_json.data(), frame_json.size()));
  } catch (...) {
    core_->violation("device_send() let an exception escape (the ABI forbids this)");
  }
  leave();
  return status;
}

bool PluginInstance::device_close(std::string_view device_id, std::uint16_t code,
                                  std::string_view reason) {
  const helm_plugin_v1& functions = plugin_->functions();
  if (functions.device_close == nullptr || !enter()) return false;
  try {
    functions.device_close(instance_, device_id.data(), device_id.size(), code, reason.data(),
                           reason.size());
  } catch (...) {
    core_->violation("device_close() let an exception escape (the ABI forbids this)");
  }
  leave();
  return true;
}

void PluginInstance::stop() {
  {
    std::unique_lock<std::mutex> lock(core_->mutex);
    if (core_->state != State::kStarted) return;
    core_->state = State::kStopped;
    core_->changed.wait(lock, [this] { return core_->active == 0; });
  }
  if (plugin_->functions().stop != nullptr) {
    try {
      plugin_->functions().stop(instance_);
    } catch (...) {
      core_->violation("stop() let an exception escape (the ABI forbids this)");
    }
  }
}

bool PluginInstance::drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(core_->mutex);
  return core_->changed.wait_for(lock, timeout, [this] { return core_->outstanding == 0; });
}

void PluginInstance::destroy() {
  {
    const std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->state == State::kDestroyed || core_->state == State::kAbandoned) return;
    core_->state = State::kDestroyed;
  }
  try {
    plugin_->functions().destroy(instance_);
  } catch (...) {
    core_->violation("destroy() let an exception escape (the ABI forbids this)");
  }
  instance_ = nullptr;
}

bool PluginInstance::shutdown(std::chrono::milliseconds drain_timeout) {
  {
    const std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->state == State::kDestroyed) return true;
    if (core_->state == State::kAbandoned) return false;
  }
  stop();
  if (!drain(drain_timeout)) {
    std::size_t left = 0;
    {
      const std::lock_guard<std::mutex> lock(core_->mutex);
      core_->state = State::kAbandoned;
      left = core_->outstanding;
    }
    core_->violation(std::to_string(left) + " call(s) still not completed after " +
                     std::to_string(drain_timeout.count()) +
                     " ms; the instance is abandoned and its library stays loaded");
    AbandonedInstances::instance().keep(plugin_, std::move(host_api_), instance_);
    return false;
  }
  destroy();
  return true;
}

PluginInstance::State PluginInstance::state() const {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->state;
}

std::size_t PluginInstance::outstanding_calls() const {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->outstanding;
}

std::uint64_t PluginInstance::violations() const {
  return core_->violations.load();
}

}  // namespace helm::plugins
