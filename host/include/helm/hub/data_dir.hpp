/// @brief The hub's data directory: one running hub per directory, enforced with a lock file,
/// and how admin commands reach the database of a data dir whether or not a hub runs on it.
#pragma once

#include <memory>
#include <string>

#include "helm/core/expected.hpp"

namespace helm::storage {
class EmbeddedPostgres;
}

namespace helm::hub {

/// Takes DIR/hub.lock (held until the fd is closed or the process dies). Error when a running
/// hub holds it; the message names its pid.
Expected<int> lock_data_dir(const std::string& dir);

/// A database connection string for an admin command, plus whatever it had to start.
struct AdminDatabase {
  std::string conninfo;
  int lock_fd = -1;                                   ///< held when no hub runs on the dir
  std::unique_ptr<storage::EmbeddedPostgres> server;  ///< started for this command, if any
  ~AdminDatabase();
};

/// With a URL: that server. With a data dir: the running hub's embedded PostgreSQL if a hub holds
/// the dir, otherwise the embedded server started just for this command. Migrations applied.
Expected<std::unique_ptr<AdminDatabase>> open_admin_database(const std::string& data_dir,
                                                             const std::string& database_url);

}  // namespace helm::hub
