// The timer service: deadline order, exactly-once completion under racing cancel and fire,
// cancellation by owner and at shutdown, caps, and delays roughly honoured.
#include "helm/broker/timer_service.hpp"

#include <gtest/gtest.h>

#include "test_workers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace helm::broker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using test::Workers;

// Records completions: (label, status) in the order they ran.
class Log {
 public:
  TimerService::Callback record(std::string label) {
    return [this, label = std::move(label)](helm_status status) {
      std::lock_guard lock(mutex_);
      entries_.emplace_back(label, status);
      changed_.notify_all();
    };
  }
  std::vector<std::pair<std::string, helm_status>> wait_for(std::size_t count,
                                                            std::chrono::seconds limit = 10s) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return entries_.size() >= count; });
    return entries_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<std::string, helm_status>> entries_;
};

TimerService::Dispatch inline_dispatch() {
  return [](std::function<void()> task) { task(); };
}

std::uint64_t schedule(TimerService& timers, const std::string& owner,
                       std::chrono::milliseconds delay, TimerService::Callback callback) {
  std::uint64_t id = 0;
  std::string error;
  EXPECT_EQ(timers.schedule(owner, delay, std::move(callback), id, error), HELM_STATUS_OK) << error;
  return id;
}

TEST(TimerService, DueTimersFireInDeadlineOrder) {
  Log log;  // before the service and the workers: callbacks write to it
  TimerService timers(inline_dispatch());  // callbacks run one by one, in dispatch order
  schedule(timers, "p", 300ms, log.record("c"));
  schedule(timers, "p", 100ms, log.record("a"));
  schedule(timers, "p", 200ms, log.record("b"));
  schedule(timers, "q", 200ms, log.record("b2"));  // same deadline or later: after "b"
  const auto entries = log.wait_for(4);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].first, "a");
  EXPECT_EQ(entries[1].first, "b");
  EXPECT_EQ(entries[2].first, "b2");
  EXPECT_EQ(entries[3].first, "c");
  for (const auto& [label, status] : entries)
    EXPECT_EQ(status, HELM_STATUS_OK) << label;
}

TEST(TimerService, IdsAreNonZeroAndDistinct) {
  Workers workers(2);
  TimerService timers(workers.dispatch());
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 100; ++i)
    ids.push_back(schedule(timers, "p", 1h, [](helm_status) {}));
  std::sort(ids.begin(), ids.end());
  EXPECT_NE(ids.front(), 0u);
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
}

TEST(TimerService, DelayIsHonouredWithinAGenerousBound) {
  std::mutex mutex;
  std::condition_variable fired;
  std::optional<Clock::time_point> at;
  Workers workers(2);
  TimerService timers(workers.dispatch());
  const auto start = Clock::now();
  schedule(timers, "p", 300ms, [&](helm_status) {
    std::lock_guard lock(mutex);
    at = Clock::now();
    fired.notify_all();
  });
  std::unique_lock lock(mutex);
  ASSERT_TRUE(fired.wait_for(lock, 10s, [&] { return at.has_value(); }));
  EXPECT_GE(*at - start, 300ms);
  EXPECT_LT(*at - start, 300ms + 500ms);
}

TEST(TimerService, ZeroDelayFiresPromptlyAndNeverInsideSchedule) {
  Log log;  // before the service and the workers: callbacks write to it
  Workers workers(2);
  TimerService timers(workers.dispatch());
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller_thread{false};
  std::uint64_t id = 0;
  std::string error;
  ASSERT_EQ(timers.schedule(
                "p", 0ms,
                [&, record = log.record("now")](helm_status status) {
                  if (std::this_thread::get_id() == caller) on_caller_thread = true;
                  record(status);
                },
                id, error),
            HELM_STATUS_OK);
  const auto entries = log.wait_for(1, 5s);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].second, HELM_STATUS_OK);
  EXPECT_FALSE(on_caller_thread.load());
}

TEST(TimerService, CancelCompletesWithCancelledOnAnotherThread) {
  TimerService timers(inline_dispatch());  // even inline, it runs on the timer thread
  const auto caller = std::this_thread::get_id();
  std::mutex mutex;
  std::condition_variable done;
  std::optional<helm_status> result;
  bool on_caller_thread = false;
  const auto id = schedule(timers, "p", 1h, [&](helm_status status) {
    std::lock_guard lock(mutex);
    on_caller_thread = std::this_thread::get_id() == caller;
    result = status;
    done.notify_all();
  });
  timers.cancel(id);
  std::unique_lock lock(mutex);
  ASSERT_TRUE(done.wait_for(lock, 5s, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, HELM_STATUS_CANCELLED);
  EXPECT_FALSE(on_caller_thread);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, CancelOfUnknownOrFiredIdsIsIgnored) {
  Log log;  // before the service and the workers: callbacks write to it
  Workers workers(2);
  TimerService timers(workers.dispatch());
  const auto id = schedule(timers, "p", 0ms, log.record("t"));
  ASSERT_EQ(log.wait_for(1).size(), 1u);
  timers.cancel(id);
  timers.cancel(id);
  timers.cancel(0);
  timers.cancel(987654321);
  std::this_thread::sleep_for(50ms);
  const auto entries = log.wait_for(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].second, HELM_STATUS_OK);
}

TEST(TimerService, EveryTimerCompletesExactlyOnceWhenCancelRacesWithFire) {
  constexpr int kTimers = 10'000;
  auto calls = std::make_unique<std::atomic<int>[]>(kTimers);
  std::atomic<int> ok{0}, cancelled{0}, total{0};
  Workers workers(4);
  TimerService timers(workers.dispatch());
  std::vector<std::uint64_t> ids(kTimers);
  std::mt19937 random(42);
  for (int i = 0; i < kTimers; ++i) {
    const auto delay = std::chrono::milliseconds(random() % 2);
    ids[i] = schedule(timers, "owner" + std::to_string(i % 7), delay, [&, i](helm_status status) {
      ++calls[i];
      (status == HELM_STATUS_OK ? ok : cancelled)++;
      ++total;
    });
    if (random() % 4 != 0) {  // most are cancelled, some at once, some a little later
      if (random() % 2 == 0) std::this_thread::yield();
      timers.cancel(ids[i]);
    }
    if (random() % 3 == 0) timers.cancel(ids[random() % (i + 1)]);  // older ones, maybe fired
  }
  for (int i = 0; i < 2000 && total.load() < kTimers; ++i)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(50ms);  // a second completion would show up now
  EXPECT_EQ(total.load(), kTimers);
  int wrong = 0;
  for (int i = 0; i < kTimers; ++i)
    wrong += calls[i].load() != 1;
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(cancelled.load(), 0);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, CancelOwnerCancelsOnlyThatOwnersTimers) {
  Log log;  // before the service and the workers: callbacks write to it
  Workers workers(2);
  TimerService timers(workers.dispatch());
  schedule(timers, "stopping", 1h, log.record("s1"));
  schedule(timers, "stopping", 2h, log.record("s2"));
  schedule(timers, "running", 1h, log.record("r1"));
  EXPECT_EQ(timers.pending("stopping"), 2u);
  timers.cancel_owner("stopping");
  timers.cancel_owner("nobody");
  const auto entries = log.wait_for(2);
  ASSERT_EQ(entries.size(), 2u);
  for (const auto& [label, status] : entries) {
    EXPECT_EQ(label[0], 's');
    EXPECT_EQ(status, HELM_STATUS_CANCELLED);
  }
  EXPECT_EQ(timers.pending("stopping"), 0u);
  EXPECT_EQ(timers.pending("running"), 1u);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(log.wait_for(2).size(), 2u);
}

TEST(TimerService, ShutdownCancelsEveryPendingTimerAndRefusesNewOnes) {
  Log log;  // before the service and the workers: callbacks write to it
  Workers workers(2);
  auto timers = std::make_unique<TimerService>(workers.dispatch());
  for (int i = 0; i < 50; ++i)
    schedule(*timers, "p" + std::to_string(i % 3), 1h, log.record("x"));
  timers->shutdown();
  const auto entries = log.wait_for(50);
  ASSERT_EQ(entries.size(), 50u);
  for (const auto& [label, status] : entries)
    EXPECT_EQ(status, HELM_STATUS_CANCELLED);

  std::uint64_t id = 99;
  std::string error;
  bool called = false;
  EXPECT_EQ(timers->schedule(
                "p", 0ms, [&](helm_status) { called = true; }, id, error),
            HELM_STATUS_UNAVAILABLE);
  EXPECT_EQ(id, 0u);
  EXPECT_NE(error.find("shutting down"), std::string::npos) << error;
  timers->shutdown();  // idempotent
  timers.reset();
  EXPECT_FALSE(called);
}

TEST(TimerService, ConcurrentShutdownsAreSafe) {
  Log log;  // before the service and the workers: callbacks write to it
  Workers workers(2);
  TimerService timers(workers.dispatch());
  schedule(timers, "p", 1h, log.record("x"));
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i)
    stoppers.emplace_back([&] { timers.shutdown(); });
  for (auto& t : stoppers)
    t.join();
  EXPECT_EQ(log.wait_for(1).size(), 1u);
}

TEST(TimerService, OwnerCapRefusesFurtherTimers) {
  Workers workers(2);
  TimerService timers(workers.dispatch(), {.max_timers_per_owner = 3});
  for (int i = 0; i < 3; ++i)
    schedule(timers, "greedy", 1h, [](helm_status) {});
  std::uint64_t id = 5;
  std::string error;
  EXPECT_EQ(timers.schedule(
                "greedy", 1h, [](helm_status) {}, id, error),
            HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_EQ(id, 0u);
  EXPECT_NE(error.find("too many"), std::string::npos) << error;
  EXPECT_NE(schedule(timers, "other", 1h, [](helm_status) {}), 0u);  // per owner
  timers.cancel_owner("greedy");
  for (int i = 0; i < 500 && timers.pending("greedy") != 0; ++i)
    std::this_thread::sleep_for(1ms);
  EXPECT_NE(schedule(timers, "greedy", 1h, [](helm_status) {}), 0u);
}

TEST(TimerService, RefusesNegativeOverlongDelaysAndEmptyCallbacks) {
  TimerService timers(inline_dispatch(), {.max_delay = 10s});
  std::uint64_t id = 1;
  std::string error;
  EXPECT_EQ(timers.schedule(
                "p", -1ms, [](helm_status) {}, id, error),
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(id, 0u);
  EXPECT_EQ(timers.schedule(
                "p", 11s, [](helm_status) {}, id, error),
            HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
  EXPECT_EQ(timers.schedule("p", 1s, nullptr, id, error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, ACallbackThatThrowsDoesNotStopTheService) {
  Log log;  // before the service and the workers: callbacks write to it
  TimerService timers(inline_dispatch());
  schedule(timers, "p", 0ms, [](helm_status) { throw std::runtime_error("plugin bug"); });
  schedule(timers, "p", 10ms, log.record("after"));
  EXPECT_EQ(log.wait_for(1).size(), 1u);
}

TEST(TimerService, ADispatchThatThrowsStillCompletesTheTimer) {
  Log log;  // before the service and the workers: callbacks write to it
  TimerService timers([](std::function<void()>) { throw std::runtime_error("pool stopped"); });
  schedule(timers, "p", 0ms, log.record("a"));
  const auto entries = log.wait_for(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].second, HELM_STATUS_OK);
}

}  // namespace
}  // namespace helm::broker
