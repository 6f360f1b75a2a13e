/// @brief A private PostgreSQL server inside the hub's data directory: initdb on first start, a
/// Unix socket only (no TCP port), crash recovery, supervision and a clean stop.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "helm/core/expected.hpp"

namespace helm::storage {

struct EmbeddedPostgresOptions {
  std::string data_dir;             ///< the hub's data dir; the cluster lives in DATA_DIR/pg
  std::string os_user = "helm-pg";  ///< used when running as root (postgres refuses root)
  std::string database = "helm";
  int ready_timeout_s = 60;
  bool supervise = true;  ///< restart the server when it dies unexpectedly
};

class EmbeddedPostgres {
 public:
  /// Initializes the cluster if needed, stops a server orphaned by a killed hub, starts the
  /// server, waits until it accepts connections and makes sure the database exists.
  static Expected<std::unique_ptr<EmbeddedPostgres>> start(EmbeddedPostgresOptions options);

  /// libpq connection string for the hub's database on the private socket.
  static std::string connection_string_for(const std::string& data_dir,
                                           const std::string& database = "helm");

  /// Pid of a live server already running on this data dir's cluster, or 0.
  static pid_t running_server_pid(const std::string& data_dir);

  ~EmbeddedPostgres();
  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  const std::string& connection_string() const { return connection_string_; }
  pid_t pid() const { return pid_.load(); }

  /// Fast shutdown; waits for the server to exit. Idempotent.
  void stop();

 private:
  explicit EmbeddedPostgres(EmbeddedPostgresOptions options);
  Status launch();
  void supervise();

  EmbeddedPostgresOptions options_;
  std::string bindir_;
  std::string connection_string_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool drop_privileges_ = false;
  std::atomic<pid_t> pid_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace helm::storage
