/// @brief Plugin timers: one thread keeps a deadline-ordered queue and hands every callback,
/// exactly once, to the hub's workers: HELM_STATUS_OK when due, HELM_STATUS_CANCELLED when
/// cancelled, when its owner stops or when the service shuts down.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <helm/plugin_abi.h>

namespace helm::broker {

namespace detail {
struct TimerServiceState;  // defined in timer_service.cpp
}

/// Limits of a TimerService.
struct TimerServiceOptions {
  /// Timers one owner may have pending at once (RESOURCE_EXHAUSTED beyond).
  std::size_t max_timers_per_owner = 10'000;
  /// Longest accepted delay (INVALID_INPUT beyond).
  std::chrono::milliseconds max_delay{std::chrono::hours(24 * 366)};
};

/// The hub's timer service. Thread-safe: every member may be called from any thread at once.
///
/// Callbacks are never called by schedule(), cancel(), cancel_owner() or shutdown() themselves:
/// the service's own thread passes each one to `dispatch`, outside the service's lock, and
/// dispatch runs it on a worker. Due timers are dispatched in deadline order (ties in schedule
/// order); with a multi-threaded dispatch they may still run in a different order.
class TimerService {
 public:
  /// Runs a task soon on some worker thread (the hub's worker pool). If it throws, the task is
  /// run on the timer thread instead, so that no callback is ever lost.
  using Dispatch = std::function<void(std::function<void()>)>;
  /// Called exactly once per accepted timer with HELM_STATUS_OK or HELM_STATUS_CANCELLED.
  /// Exceptions it throws are swallowed.
  using Callback = std::function<void(helm_status status)>;

  /// Starts the timer thread. `dispatch` must stay callable until shutdown() has returned.
  explicit TimerService(Dispatch dispatch, TimerServiceOptions options = {});
  /// shutdown().
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  /// Schedules `callback` to run `delay` from now (0: as soon as possible) on behalf of `owner`
  /// (a plugin instance; any string, used by cancel_owner() and the per-owner cap). On OK stores
  /// a non-zero id in `id` (before the timer can fire, so `id` may be the plugin's own storage)
  /// and `callback` will be called exactly once. Otherwise stores 0, fills `error`, never calls
  /// `callback`, and returns INVALID_INPUT (negative or over-long delay, empty callback),
  /// RESOURCE_EXHAUSTED (the owner has max_timers_per_owner pending) or UNAVAILABLE (after
  /// shutdown()). Never blocks for long.
  helm_status schedule(const std::string& owner, std::chrono::milliseconds delay, Callback callback,
                       std::uint64_t& id, std::string& error);

  /// Cancels a pending timer: its callback is dispatched with HELM_STATUS_CANCELLED soon, by the
  /// timer thread. Unknown, already fired or already cancelled ids are ignored.
  void cancel(std::uint64_t id);

  /// Cancels every pending timer of `owner`, as cancel() does (when a plugin instance stops).
  void cancel_owner(const std::string& owner);

  /// Cancels every pending timer, refuses new ones, dispatches the CANCELLED callbacks and joins
  /// the timer thread. Idempotent. Must not be called from a callback when dispatch runs tasks
  /// inline (the timer thread would wait for itself).
  void shutdown();

  /// Timers of `owner` that are pending (not yet handed to dispatch).
  std::size_t pending(const std::string& owner) const;

  /// Timers of every owner that are pending.
  std::size_t pending() const;

 private:
  std::unique_ptr<detail::TimerServiceState> state_;
};

}  // namespace helm::broker
