// example-echo: returns its input, at once ("echo") or after a delay from the plugin's own thread
// ("echo.delayed"). It shows the whole contract in a small space: configuration read in the
// constructor and changed at run time, asynchronous completion, cancellation, and a stop that
// completes every outstanding call.
#include <helm/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using helm::sdk::Call;
using helm::sdk::Config;
using helm::sdk::Error;
using helm::sdk::Host;
using helm::sdk::Result;
using helm::sdk::Status;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kDefaultMaxDelayMs = 60000;
constexpr std::uint32_t kLimitMaxDelayMs = 600000;

std::uint32_t read_max_delay(const Config& config) {
  const auto value = config.get_or<std::uint32_t>("max_delay_ms", kDefaultMaxDelayMs);
  if (value > kLimitMaxDelayMs) {
    throw helm::sdk::Failure(Status::kInvalidInput,
                             "max_delay_ms must be at most " + std::to_string(kLimitMaxDelayMs));
  }
  return value;
}

class EchoPlugin final : public helm::sdk::Plugin {
 public:
  EchoPlugin(Host host, const Config& config)
      : Plugin(host), max_delay_ms_(read_max_delay(config)) {}

  ~EchoPlugin() override { stop_worker(); }

  Result<void> start() override {
    const std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = true;
    worker_ = std::thread([this] { run(); });
    host().info("example-echo started");
    return {};
  }

  void stop() override {
    stop_worker();
    host().info("example-echo stopped");
  }

  Result<void> configure(const Config& config) override {
    max_delay_ms_.store(read_max_delay(config));
    return {};
  }

  void invoke(Call call) override {
    if (call.op() == "echo") {
      call.complete(call.input());
      return;
    }
    if (call.op() == "echo.delayed") {
      delay(std::move(call));
      return;
    }
    call.fail(Status::kUnsupported, "example-echo has no operation \"" + call.op() + "\"");
  }

  void cancel(std::uint64_t call_id) override {
    std::vector<Call> cancelled;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto found = std::find_if(pending_.begin(), pending_.end(),
                                      [&](const Pending& p) { return p.call.id() == call_id; });
      if (found == pending_.end()) return;  // unknown or already completed
      cancelled.push_back(std::move(found->call));
      pending_.erase(found);
    }
    cancelled.front().fail(Status::kCancelled, "echo.delayed was cancelled");
  }

 private:
  struct Pending {
    Clock::time_point due;
    Call call;
  };

  void delay(Call call) {
    // The host has validated the input against the manifest's schema; check anyway, because
    // a plugin must not trust that every host version does.
    const nlohmann::json& input = call.input();
    const auto delay_ms = input.is_object() ? input.find("delay_ms") : input.end();
    if (delay_ms == input.end() || !delay_ms->is_number_unsigned()) {
      call.fail(Status::kInvalidInput, "delay_ms must be a non-negative integer");
      return;
    }
    const auto milliseconds = delay_ms->get<std::uint64_t>();
    const std::uint32_t limit = max_delay_ms_.load();
    if (milliseconds > limit) {
      call.fail(Status::kInvalidInput, "delay_ms " + std::to_string(milliseconds) +
                                           " exceeds max_delay_ms " + std::to_string(limit));
      return;
    }
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (accepting_) {
        pending_.push_back(
            Pending{Clock::now() + std::chrono::milliseconds(milliseconds), std::move(call)});
        wake_.notify_one();
        return;
      }
    }
    call.fail(Status::kUnavailable, "example-echo is not running");
  }

  // The worker completes due calls outside the lock, so a slow host callback never blocks
  // invoke() or cancel().
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (accepting_) {
      if (pending_.empty()) {
        wake_.wait(lock);
        continue;
      }
      const auto earliest =
          std::min_element(pending_.begin(), pending_.end(),
                           [](const Pending& a, const Pending& b) { return a.due < b.due; });
      if (earliest->due > Clock::now()) {
        // A copy: wait_until reads the time point again after waking, and by then invoke() may
        // have grown pending_ and moved the element it came from.
        const Clock::time_point wake_at = earliest->due;
        wake_.wait_until(lock, wake_at);
        continue;
      }
      Call due = std::move(earliest->call);
      pending_.erase(earliest);
      lock.unlock();
      due.complete(due.input());
      lock.lock();
    }
  }

  // Stops accepting, joins the worker and cancels whatever is still waiting. Idempotent.
  void stop_worker() {
    std::vector<Pending> leftover;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      accepting_ = false;
      leftover.swap(pending_);
      wake_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
    for (Pending& pending : leftover) {
      pending.call.fail(Status::kCancelled, "example-echo is stopping");
    }
  }

  std::atomic<std::uint32_t> max_delay_ms_;
  std::mutex mutex_;  // guards accepting_ and pending_
  std::condition_variable wake_;
  bool accepting_ = false;
  std::vector<Pending> pending_;
  std::thread worker_;
};

}  // namespace

HELM_EXPORT_PLUGIN(EchoPlugin, "example-echo")
