/// @brief One running instance of a loaded plugin: drives create/start/configure/invoke/cancel/
/// on_event/stop/destroy through the C ABI, turns completions into C++ callbacks, and makes sure
/// the library is never unloaded while its code may still run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <helm/plugin_abi.h>

#include "helm/plugins/plugin_loader.hpp"
#include "helm/plugins/result.hpp"

namespace helm::plugins {

/// A failure reported by (or about) a plugin, with the ABI status it maps to.
struct PluginError {
  helm_status status = HELM_STATUS_INTERNAL;
  std::string message;
};

/// One operation to run.
struct CallRequest {
  std::string op;
  /// The input as JSON text, already validated against the operation's input_schema.
  std::string input_json = "{}";
  /// The session the call runs in; must stay valid until the completion handler has run.
  const helm_session* session = nullptr;
  std::string organization_id;
  /// The organization's settings for the plugin, valid against org_config_schema.
  std::string org_config_json = "{}";
  std::chrono::milliseconds timeout{30000};
};

/// How a call ended: status OK with a JSON result, or another status with a message.
struct CallResult {
  helm_status status = HELM_STATUS_INTERNAL;
  std::string output;
};

/// Receives a call's result exactly once, on whatever thread the plugin completes it, possibly
/// before invoke() returns. Must be quick, must not block, and must not call stop(), drain() or
/// shutdown() of the same instance. Exceptions it throws are caught and reported as violations.
using CompletionHandler = std::function<void(CallResult)>;

/// Told about plugin misbehaviour that the instance absorbed (a call completed twice, output
/// that is not JSON, an exception that escaped a plugin function). Any thread.
using ViolationHandler = std::function<void(const std::string& message)>;

/// A plugin instance. Not copyable or movable; thread-safe as documented per function.
class PluginInstance {
 public:
  enum class State { kCreated, kStarted, kStopped, kDestroyed, kAbandoned };

  /// How long the destructor waits for outstanding calls before abandoning the instance.
  static constexpr std::chrono::milliseconds kDefaultDrainTimeout{10000};

  /// Calls the plugin's create() with `config_json` (valid against config_schema). `host_api`
  /// is copied; the copy is what the plugin sees, and what its host_ctx points to must stay
  /// valid until the instance is destroyed (forever, if it is abandoned).
  static Result<std::unique_ptr<PluginInstance>, PluginError> create(
      std::shared_ptr<const LoadedPlugin> plugin, const helm_host_api& host_api,
      std::string_view config_json, ViolationHandler on_violation = {});

  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;
  /// shutdown(kDefaultDrainTimeout) unless already destroyed or abandoned.
  ~PluginInstance();

  /// Calls start(). On failure the plugin is destroyed at once (state kDestroyed).
  Result<void, PluginError> start();

  /// Calls configure(); UNSUPPORTED when the plugin has none. Only while started.
  Result<void, PluginError> configure(std::string_view config_json);

  /// Runs an operation; `on_complete` receives the result exactly once. Returns the call id
  /// (for cancel()). When the instance is not started the call completes at once with
  /// HELM_STATUS_UNAVAILABLE. Thread-safe.
  std::uint64_t invoke(CallRequest request, CompletionHandler on_complete);

  /// Asks the plugin to abandon a call that has not completed yet; ignored otherwise.
  void cancel(std::uint64_t call_id);

  /// Delivers an event on a topic the manifest subscribes to; false if the plugin takes no
  /// events or is not started. Thread-safe.
  bool deliver_event(std::string_view topic, std::string_view organization_id,
                     std::string_view source, std::string_view payload_json);

  /// Transport plugins (ABI 1.1): queues a frame on a device's live connection. UNSUPPORTED
  /// when the plugin has no device_send; UNAVAILABLE when the instance is not started.
  helm_status device_send(std::string_view device_id, std::string_view frame_json);

  /// Transport plugins (ABI 1.1): closes a device's live connection; false when the plugin has no
  /// device_close or is not started.
  bool device_close(std::string_view device_id, std::uint16_t code, std::string_view reason);

  /// Calls stop() once: after it, invoke() completes with UNAVAILABLE. Waits for invoke(),
  /// cancel(), on_event() and configure() calls already inside the plugin to return first.
  void stop();

  /// Waits until every call has completed; false when `timeout` passed first.
  bool drain(std::chrono::milliseconds timeout);

  /// stop(), drain(timeout), then destroy(). Returns false when calls were still outstanding:
  /// the instance is then abandoned — never destroyed, its library never unloaded — because
  /// the plugin may still run code that completes them.
  bool shutdown(std::chrono::milliseconds drain_timeout);

  State state() const;
  std::size_t outstanding_calls() const;
  /// How many violations were absorbed (see ViolationHandler).
  std::uint64_t violations() const;
  const LoadedPlugin& plugin() const noexcept { return *plugin_; }

  struct Core;

 private:
  PluginInstance(std::shared_ptr<const LoadedPlugin> plugin, std::unique_ptr<helm_host_api> api,
                 std::shared_ptr<Core> core);
  void destroy();
  bool enter();
  void leave();

  std::shared_ptr<const LoadedPlugin> plugin_;
  std::unique_ptr<helm_host_api> host_api_;
  std::shared_ptr<Core> core_;
  helm_plugin_instance* instance_ = nullptr;
};

}  // namespace helm::plugins
