#include "helm/broker/timer_service.hpp"

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace helm::broker {

using Clock = std::chrono::steady_clock;

namespace detail {

struct PendingTimer {
  std::string owner;
  Clock::time_point deadline;
  TimerService::Callback callback;
};

struct TimerServiceState {
  TimerService::Dispatch dispatch;
  TimerServiceOptions options;

  // Guards everything below. A timer is pending while it is in `timers`; whoever removes it
  // (the timer thread when due, cancel, cancel_owner, shutdown) is the one that completes it,
  // which is what makes every callback run exactly once.
  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::uint64_t last_id = 0;
  std::map<std::uint64_t, PendingTimer> timers;
  // (deadline, id) of every pending timer: ids grow, so ties fire in schedule order.
  std::set<std::pair<Clock::time_point, std::uint64_t>> by_deadline;
  std::unordered_map<std::string, std::set<std::uint64_t>> by_owner;
  // Removed by a cancellation, waiting for the timer thread to dispatch them.
  std::vector<TimerService::Callback> cancelled;

  std::thread thread;
  // Serializes the join in shutdown(), which several threads may call at once.
  std::mutex join_mutex;

  // Takes a pending timer out of every index and returns its callback. Lock held.
  TimerService::Callback remove(std::map<std::uint64_t, PendingTimer>::iterator it) {
    by_deadline.erase({it->second.deadline, it->first});
    const auto owner = by_owner.find(it->second.owner);
    owner->second.erase(it->first);
    if (owner->second.empty()) by_owner.erase(owner);
    auto callback = std::move(it->second.callback);
    timers.erase(it);
    return callback;
  }

  void run_dispatched(TimerService::Callback callback, helm_status status) {
    auto task = [callback = std::move(callback), status] {
      try {
        callback(status);
      } catch (...) {  // nothing escapes onto a worker thread
      }
    };
    try {
      dispatch(task);
    } catch (...) {
      task();  // the pool refused: run it here rather than lose a callback
    }
  }

  void loop() {
    std::unique_lock lock(mutex);
    for (;;) {
      std::vector<std::pair<TimerService::Callback, helm_status>> ready;
      for (auto& callback : cancelled)
        ready.emplace_back(std::move(callback), HELM_STATUS_CANCELLED);
      cancelled.clear();
      const auto now = Clock::now();
      while (!by_deadline.empty() && by_deadline.begin()->first <= now) {
        ready.emplace_back(remove(timers.find(by_deadline.begin()->second)), HELM_STATUS_OK);
      }
      if (!ready.empty()) {
        lock.unlock();
        for (auto& [callback, status] : ready)
          run_dispatched(std::move(callback), status);
        ready.clear();
        lock.lock();
        continue;
      }
      if (stopping) return;  // shutdown() emptied `timers` and we dispatched its cancellations
      if (by_deadline.empty()) {
        wake.wait(lock);
      } else {
        // A copy: wait_until reads its argument after re-locking, when a cancel may have
        // erased the element.
        const Clock::time_point next = by_deadline.begin()->first;
        wake.wait_until(lock, next);
      }
    }
  }
};

}  // namespace detail

TimerService::TimerService(Dispatch dispatch, TimerServiceOptions options)
    : state_(std::make_unique<detail::TimerServiceState>()) {
  state_->dispatch = std::move(dispatch);
  state_->options = options;
  state_->thread = std::thread([state = state_.get()] { state->loop(); });
}

TimerService::~TimerService() {
  shutdown();
}

helm_status TimerService::schedule(const std::string& owner, std::chrono::milliseconds delay,
                                   Callback callback, std::uint64_t& id, std::string& error) {
  id = 0;
  if (delay.count() < 0) {
    error = "the timer delay is negative";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (delay > state_->options.max_delay) {
    error = "the timer delay of " + std::to_string(delay.count()) +
            " ms is longer than the limit of " + std::to_string(state_->options.max_delay.count()) +
            " ms: schedule a shorter timer and re-arm it when it fires";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (!callback) {
    error = "the timer callback is empty";
    return HELM_STATUS_INVALID_INPUT;
  }
  const auto deadline = Clock::now() + delay;
  std::lock_guard lock(state_->mutex);
  if (state_->stopping) {
    error = "the timer service is shutting down: no new timers are accepted";
    return HELM_STATUS_UNAVAILABLE;
  }
  auto& owned = state_->by_owner[owner];
  if (owned.size() >= state_->options.max_timers_per_owner) {
    if (owned.empty()) state_->by_owner.erase(owner);
    error = "too many pending timers (" + std::to_string(state_->options.max_timers_per_owner) +
            "): cancel some, or use one timer for several purposes";
    return HELM_STATUS_RESOURCE_EXHAUSTED;
  }
  const std::uint64_t new_id = ++state_->last_id;
  owned.insert(new_id);
  state_->timers.emplace(new_id, detail::PendingTimer{owner, deadline, std::move(callback)});
  const bool earliest =
      state_->by_deadline.empty() || deadline < state_->by_deadline.begin()->first;
  state_->by_deadline.emplace(deadline, new_id);
  id = new_id;  // before the timer thread can see it: it needs the lock we hold
  if (earliest) state_->wake.notify_one();
  return HELM_STATUS_OK;
}

void TimerService::cancel(std::uint64_t id) {
  std::lock_guard lock(state_->mutex);
  const auto it = state_->timers.find(id);
  if (it == state_->timers.end()) return;
  state_->cancelled.push_back(state_->remove(it));
  state_->wake.notify_one();
}

void TimerService::cancel_owner(const std::string& owner) {
  std::lock_guard lock(state_->mutex);
  const auto owned = state_->by_owner.find(owner);
  if (owned == state_->by_owner.end()) return;
  const std::set<std::uint64_t> ids = owned->second;  // remove() edits the original
  for (const std::uint64_t id : ids) {
    state_->cancelled.push_back(state_->remove(state_->timers.find(id)));
  }
  state_->wake.notify_one();
}

void TimerService::shutdown() {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->stopping) {
      state_->stopping = true;
      while (!state_->timers.empty()) {
        state_->cancelled.push_back(state_->remove(state_->timers.begin()));
      }
    }
    state_->wake.notify_one();
  }
  std::lock_guard join_lock(state_->join_mutex);
  if (state_->thread.joinable()) state_->thread.join();
}

std::size_t TimerService::pending(const std::string& owner) const {
  std::lock_guard lock(state_->mutex);
  const auto owned = state_->by_owner.find(owner);
  return owned == state_->by_owner.end() ? 0 : owned->second.size();
}

std::size_t TimerService::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->timers.size();
}

}  // namespace helm::broker
