/// @brief A small pool of PostgreSQL connections whose blocking calls run on the pool's own
/// worker threads, never on an I/O thread; survives a database restart without a hub restart.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pqxx {
class connection_base;  // libpqxx 6 (Debian 12): the base of every connection type
}

namespace helm::storage {

enum class DbErrorKind {
  kUnavailable,  ///< no connection could be had, or it broke mid-call: answer 503
  kQuery,        ///< the statement failed (constraint, syntax …): a bug or a conflict
  kOverloaded,   ///< the queue is full
};

struct DbError {
  DbErrorKind kind;
  std::string message;  ///< for logs; never shown to API clients verbatim
};

struct DbPoolOptions {
  std::string conninfo;
  size_t size = 4;
  size_t max_queue = 10'000;
};

struct DbPoolStats {
  size_t size = 0;
  size_t busy = 0;
  size_t queued = 0;
  size_t connected = 0;
  uint64_t completed = 0;
  uint64_t failed_unavailable = 0;
  uint64_t failed_query = 0;
};

class DbPool {
 public:
  using Job = std::function<void(pqxx::connection_base&)>;
  using Done = std::function<void(std::optional<DbError>)>;

  explicit DbPool(DbPoolOptions options);
  ~DbPool();
  DbPool(const DbPool&) = delete;
  DbPool& operator=(const DbPool&) = delete;

  /// Queues `job`; `done` runs afterwards on the same worker thread with nullopt on success.
  /// A job may throw pqxx exceptions; they become DbErrors. Thread-safe.
  void submit(Job job, Done done);

  /// Runs `job` and waits for it; for start-up and command-line tools, not for I/O threads.
  std::optional<DbError> run(const Job& job);

  DbPoolStats stats() const;

  /// Finishes queued jobs, then joins the workers. Later submits fail as unavailable.
  void stop();

 private:
  struct Task {
    Job job;
    Done done;
  };
  void worker_loop();

  DbPoolOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  size_t busy_ = 0;
  size_t connected_ = 0;
  uint64_t completed_ = 0;
  uint64_t failed_unavailable_ = 0;
  uint64_t failed_query_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace helm::storage
