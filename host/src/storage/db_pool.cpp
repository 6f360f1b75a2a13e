#include "helm/storage/db_pool.hpp"

#include <poll.h>

#include <future>
#include <memory>
#include <pqxx/pqxx>

#include "helm/log/logger.hpp"

namespace helm::storage {
namespace {

// An idle connection whose socket turned readable was closed by the server (restart,
// termination) or got an error message: either way it is dead and must be replaced before use,
// so the first request after a database restart does not fail needlessly.
bool idle_connection_is_dead(pqxx::connection_base& conn) {
  if (!conn.is_open()) return true;
  const int fd = conn.sock();
  if (fd < 0) return true;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

}  // namespace

DbPool::DbPool(DbPoolOptions options) : options_(std::move(options)) {
  workers_.reserve(options_.size);
  for (size_t i = 0; i < options_.size; ++i)
    workers_.emplace_back([this] { worker_loop(); });
}

DbPool::~DbPool() {
  stop();
}

void DbPool::submit(Job job, Done done) {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    ++failed_unavailable_;
    lock.unlock();
    done(DbError{DbErrorKind::kUnavailable, "database pool is stopping"});
    return;
  }
  if (queue_.size() >= options_.max_queue) {
    lock.unlock();
    done(DbError{DbErrorKind::kOverloaded, "database queue is full"});
    return;
  }
  queue_.push_back(Task{std::move(job), std::move(done)});
  lock.unlock();
  work_available_.notify_one();
}

std::optional<DbError> DbPool::run(const Job& job) {
  auto promise = std::make_shared<std::promise<std::optional<DbError>>>();
  auto result = promise->get_future();
  submit(job, [promise](std::optional<DbError> err) { promise->set_value(std::move(err)); });
  return result.get();
}

DbPoolStats DbPool::stats() const {
  std::lock_guard lock(mutex_);
  return DbPoolStats{options_.size,       busy_,        queue_.size(), connected_, completed_,
                     failed_unavailable_, failed_query_};
}

void DbPool::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  work_available_.notify_all();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
}

void DbPool::worker_loop() {
  std::unique_ptr<pqxx::connection> conn;
  auto last_failed_connect = std::chrono::steady_clock::now() - std::chrono::hours(1);
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mutex_);
      work_available_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }

    std::optional<DbError> error;
    if (conn && idle_connection_is_dead(*conn)) {
      conn.reset();
      std::lock_guard lock(mutex_);
      --connected_;
    }
    if (!conn) {
      // After a failed attempt, fail fast for a moment instead of hammering a down server.
      if (std::chrono::steady_clock::now() - last_failed_connect < std::chrono::milliseconds(200)) {
        error = DbError{DbErrorKind::kUnavailable, "database unavailable (recent connect failed)"};
      } else {
        try {
          conn = std::make_unique<pqxx::connection>(options_.conninfo);
          std::lock_guard lock(mutex_);
          ++connected_;
        } catch (const std::exception& e) {
          last_failed_connect = std::chrono::steady_clock::now();
          error = DbError{DbErrorKind::kUnavailable, std::string("cannot connect: ") + e.what()};
        }
      }
    }
    if (!error) {
      try {
        task.job(*conn);
      } catch (const pqxx::broken_connection& e) {
        error = DbError{DbErrorKind::kUnavailable, std::string("connection lost: ") + e.what()};
      } catch (const pqxx::in_doubt_error& e) {
        error = DbError{DbErrorKind::kUnavailable, std::string("commit in doubt: ") + e.what()};
      } catch (const std::exception& e) {
        error = DbError{DbErrorKind::kQuery, e.what()};
      }
      if (error && error->kind == DbErrorKind::kUnavailable && conn) {
        conn.reset();
        std::lock_guard lock(mutex_);
        --connected_;
      }
    }
    {
      std::lock_guard lock(mutex_);
      --busy_;
      ++completed_;
      if (error && error->kind == DbErrorKind::kUnavailable) ++failed_unavailable_;
      if (error && error->kind == DbErrorKind::kQuery) ++failed_query_;
    }
    if (task.done) task.done(std::move(error));
  }
  if (conn) {
    std::lock_guard lock(mutex_);
    --connected_;
  }
}

}  // namespace helm::storage
