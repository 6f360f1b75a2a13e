/// @brief A small worker pool standing in for the hub's in the broker service tests: runs
/// dispatched tasks on its own threads and joins on destruction after running its queue.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace helm::broker::test {

class Workers {
 public:
  explicit Workers(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          std::function<void()> task;
          {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            task = std::move(queue_.front());
            queue_.pop_front();
          }
          task();
        }
      });
    }
  }
  ~Workers() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_)
      t.join();
  }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  /// What EventBus and TimerService take as their dispatch function.
  std::function<void(std::function<void()>)> dispatch() {
    return [this](std::function<void()> task) {
      {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(task));
      }
      wake_.notify_one();
    };
  }

 private:
  std::mutex mutex_;  // guards queue_ and stopping_
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace helm::broker::test
