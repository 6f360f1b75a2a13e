#include "helm/hub/data_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <pqxx/pqxx>

#include "helm/log/logger.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"

namespace helm::hub {
namespace fs = std::filesystem;

Expected<int> lock_data_dir(const std::string& dir) {
  const fs::path path = fs::path(dir) / "hub.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot open " + path.string()};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    return Error{"another helm-hub is already running on data dir " + dir +
                 (n > 0 ? " (pid " + std::string(buf, static_cast<size_t>(n)) + ")" : "")};
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    log::warn("cannot record pid in hub.lock");
  }
  return fd;
}

AdminDatabase::~AdminDatabase() {
  if (server) server->stop();
  if (lock_fd >= 0) ::close(lock_fd);
}

Expected<std::unique_ptr<AdminDatabase>> open_admin_database(const std::string& data_dir,
                                                             const std::string& database_url) {
  auto db = std::make_unique<AdminDatabase>();
  if (!database_url.empty()) {
    db->conninfo = database_url;
  } else {
    if (data_dir.empty()) return Error{"give --data-dir DIR or --database-url URL"};
    std::error_code ec;
    fs::create_directories(data_dir, ec);
    ::chmod(data_dir.c_str(), 0711);
    const std::string dir = fs::canonical(data_dir, ec).string();
    if (ec) return Error{"cannot use data dir " + data_dir + ": " + ec.message()};
    auto lock = lock_data_dir(dir);
    if (lock) {
      // No hub runs here: start the embedded server for this command, holding the lock so a
      // hub cannot start on the same cluster meanwhile.
      db->lock_fd = *lock;
      auto pg = storage::EmbeddedPostgres::start({.data_dir = dir, .supervise = false});
      if (!pg) return pg.error();
      db->server = std::move(pg).value();
      db->conninfo = db->server->connection_string();
    } else {
      if (storage::EmbeddedPostgres::running_server_pid(dir) == 0) {
        return Error{lock.error().message +
                     ", but its embedded PostgreSQL is not running; "
                     "if that hub uses --database-url, pass the same URL"};
      }
      db->conninfo = storage::EmbeddedPostgres::connection_string_for(dir);
    }
  }
  try {
    pqxx::connection conn(db->conninfo);
    auto report = storage::apply_migrations(conn, storage::builtin_migrations());
    if (!report) return report.error();
  } catch (const std::exception& e) {
    return Error{std::string("cannot connect to the database: ") + e.what()};
  }
  return db;
}

}  // namespace helm::hub
