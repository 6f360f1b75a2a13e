/// @brief In-process publish/subscribe between plugins and the hub: topic patterns, per-event
/// organization scope, delivery on the hub's workers through a bounded queue per subscriber so a
/// stuck subscriber never blocks a publisher nor starves the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <helm/plugin_abi.h>

namespace helm::broker {

namespace detail {
struct EventBusState;  // defined in event_bus.cpp; shared with the tasks given to dispatch
}

/// One published event. Shared read-only between every subscriber it is delivered to.
struct Event {
  /// Who published it: a plugin name, or "hub" for the hub itself.
  std::string source;
  /// The organization it belongs to (a UUID); empty for a hub-wide event.
  std::string organization_id;
  /// A topic such as "device.online" (see EventBus::is_valid_topic).
  std::string topic;
  /// A JSON document (any JSON value), checked at publish time.
  std::string payload_json;
};

/// The source of the hub's own events (session.*); no plugin may be named so.
inline constexpr std::string_view kHubSource = "hub";

/// Limits of an EventBus.
struct EventBusOptions {
  /// Events queued for one subscriber and not yet handed to its handler; beyond this further
  /// events for that subscriber are dropped and counted, the publisher never waits.
  std::size_t max_pending_per_subscriber = 1'000;
  /// The same for the hub's own events (source "hub": session starts and ends, on which
  /// subscribers tear down what a session owned). They are few and losing one leaves a
  /// session's workspaces behind, so a slow subscriber gets far more of them queued.
  std::size_t max_pending_hub_events = 100'000;
  /// Largest payload accepted by publish(), in bytes (RESOURCE_EXHAUSTED beyond).
  std::size_t max_payload_bytes = 256 * 1024;
};

/// Counters of one subscriber since it subscribed.
struct SubscriberStats {
  /// Events whose handler call has returned (or thrown).
  std::uint64_t delivered = 0;
  /// Events not queued because the subscriber already had max_pending_per_subscriber pending.
  std::uint64_t dropped = 0;
  /// Handler calls that threw; the exception was swallowed and the event counts as delivered.
  std::uint64_t handler_exceptions = 0;
  /// Events queued now, not yet handed to the handler.
  std::size_t pending = 0;
};

/// The hub's event bus. Thread-safe: every member may be called from any thread at once.
///
/// Matching is the only delivery rule: an event goes to every subscriber with a pattern that
/// matches its topic, whatever its organization and whoever published it. So a publisher does not
/// receive its own events unless it subscribed to a pattern matching them, in which case it does
/// (the bus does not compare source and subscriber id). Organization scope is carried in the
/// event for the subscriber (or the host shim in front of it) to act on.
///
/// Each subscriber gets its events one at a time, in the order they were queued for it, on
/// threads supplied by `dispatch`; different subscribers run in parallel. A subscriber occupies
/// at most one dispatched task at a time, and yields it after a batch of events so that one busy
/// subscriber cannot monopolize a worker.
class EventBus {
 public:
  /// Runs a task soon on some worker thread (the hub's worker pool). Must not throw; may run
  /// the task inline, in which case handlers run on the publishing thread.
  using Dispatch = std::function<void(std::function<void()>)>;
  /// Receives one event. The reference is valid for the duration of the call only. Called on a
  /// dispatched worker, never concurrently with itself for the same subscriber.
  using Handler = std::function<void(const Event& event)>;

  /// `dispatch` must stay callable for the bus's lifetime and while tasks it was given are
  /// pending; those tasks keep the bus's shared state alive by themselves.
  explicit EventBus(Dispatch dispatch, EventBusOptions options = {});
  /// Unsubscribes everybody (waiting for handlers in flight, see unsubscribe()). Must not be
  /// called from inside a handler.
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  /// Registers `handler` for every topic matched by one of `patterns` (see is_valid_pattern()).
  /// Returns OK; INVALID_INPUT (error says which pattern) for an empty subscriber id, no
  /// patterns, a malformed pattern or an empty handler; CONFLICT if `subscriber_id` is already
  /// subscribed (unsubscribe first). Never calls the handler.
  helm_status subscribe(const std::string& subscriber_id, const std::vector<std::string>& patterns,
                        Handler handler, std::string& error);

  /// Removes a subscriber and drops its pending events. When it returns, no call of that
  /// subscriber's handler is running and none will start, and the handler (with whatever it
  /// captured) has been destroyed. It waits for a call in flight on another thread to return.
  /// Called from inside that subscriber's own handler it does not wait for itself (which would
  /// deadlock): no further call starts, and the handler is destroyed once the current call
  /// returns. Unknown ids are ignored.
  void unsubscribe(const std::string& subscriber_id);

  /// Queues the event for every matching subscriber and returns without waiting for delivery.
  /// `source` is a plugin name or "hub"; `organization_id` is a UUID or empty (hub-wide);
  /// `topic` must satisfy is_valid_topic(); `payload_json` must be a JSON document. Returns OK
  /// (also when nobody matched or some subscribers' queues were full: those count drops),
  /// INVALID_INPUT with `error` saying what was wrong, or RESOURCE_EXHAUSTED for a payload over
  /// max_payload_bytes.
  helm_status publish(std::string_view source, std::string_view organization_id,
                      std::string_view topic, std::string_view payload_json, std::string& error);

  /// Counters of a current subscriber; nullopt for an unknown id.
  std::optional<SubscriberStats> stats(const std::string& subscriber_id) const;

  /// Whether `topic` is dot-separated lower-case segments, each a letter followed by letters,
  /// digits, '_' or '-' (^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$), at most 128 bytes; the same
  /// rule as a manifest's events.publish.
  static bool is_valid_topic(std::string_view topic);

  /// Whether `pattern` is a valid topic, or a valid topic followed by ".*" (at most 128 bytes
  /// in all); the same rule as a manifest's events.subscribe.
  static bool is_valid_pattern(std::string_view pattern);

  /// Whether `pattern` matches `topic`: a plain topic matches itself only; "prefix.*" matches
  /// every topic strictly below prefix ("device.*" matches "device.online" and "device.a.b",
  /// not "device" nor "devices.online"). Both arguments are assumed valid.
  static bool pattern_matches(std::string_view pattern, std::string_view topic);

 private:
  std::shared_ptr<detail::EventBusState> state_;
};

}  // namespace helm::broker
