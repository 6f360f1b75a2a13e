#include "helm/storage/embedded_postgres.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "helm/log/logger.hpp"

namespace helm::storage {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxSocketPath = 100;  // sun_path is 108 bytes; ".s.PGSQL.5432" is appended

std::string quote_conninfo(const std::string& value) {
  std::string out = "'";
  for (char ch : value) {
    if (ch == '\'' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  out.push_back('\'');
  return out;
}

std::string read_tail(const fs::path& file, size_t max_bytes = 2000) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  const size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}

int version_of(const fs::path& dir) {
  try {
    return std::stoi(dir.filename().string());
  } catch (...) {
    return -1;
  }
}

Expected<std::string> find_bindir() {
  if (const char* env = std::getenv("HELM_PG_BINDIR"); env != nullptr && *env != '\0') {
    if (fs::exists(fs::path(env) / "postgres")) return std::string(env);
    return Error{std::string("HELM_PG_BINDIR=") + env + " holds no 'postgres' binary"};
  }
  std::vector<fs::path> candidates;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(entry.path() / "bin" / "postgres") &&
        fs::exists(entry.path() / "bin" / "initdb")) {
      candidates.push_back(entry.path());
    }
  }
  if (candidates.empty()) {
    return Error{
        "PostgreSQL server binaries (initdb, postgres) were not found under /usr/lib/postgresql. "
        "Install them with 'apt-get install postgresql' (Debian), or give the hub an external "
        "server with --database-url"};
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const fs::path& a, const fs::path& b) { return version_of(a) < version_of(b); });
  return (candidates.back() / "bin").string();
}

struct OsUser {
  uid_t uid;
  gid_t gid;
};

Expected<OsUser> ensure_os_user(const std::string& name) {
  if (struct passwd* pw = getpwnam(name.c_str()); pw != nullptr)
    return OsUser{pw->pw_uid, pw->pw_gid};
  const std::string cmd =
      "useradd --system --no-create-home --home-dir /nonexistent "
      "--shell /usr/sbin/nologin " +
      name + " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());  // NOLINT(concurrency-mt-unsafe): start-up only
  if (struct passwd* pw = getpwnam(name.c_str()); pw != nullptr)
    return OsUser{pw->pw_uid, pw->pw_gid};
  return Error{
      "the hub runs as root, so PostgreSQL needs an unprivileged user, and creating user '" + name +
      "' failed (useradd exit " + std::to_string(rc) +
      "); create it yourself or run the hub as a normal user"};
}

// The server runs as another user, so every directory above the data dir must let it pass.
Status check_traversable(const fs::path& dir, uid_t uid) {
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) break;
    if (st.st_uid != uid && (st.st_mode & S_IXOTH) == 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
      return Error{"PostgreSQL runs as an unprivileged user, which cannot reach '" + dir.string() +
                   "' because '" + p.string() + "' is not searchable by others (mode " + mode +
                   "). Choose a data dir such as /var/lib/helm-hub, run 'chmod o+x " + p.string() +
                   "', or use --database-url"};
    }
    if (p == p.root_path()) break;
  }
  return {};
}

// Runs `argv` as the given user; stdout and stderr go to `log_fd`. Returns the child's pid.
Expected<pid_t> spawn(const std::vector<std::string>& argv, bool drop, uid_t uid, gid_t gid,
                      int log_fd) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Error{std::string("fork failed: ") + std::strerror(errno)};
  if (pid == 0) {
    // Child: own process group (a terminal's Ctrl-C goes to the hub, which stops us in order),
    // and a fast shutdown if the hub dies without stopping us.
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the hub blocks SIGTERM/SIGINT for sigwait
    prctl(PR_SET_PDEATHSIG, SIGINT);
    if (getppid() != parent) _exit(1);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (drop) {
      if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

bool process_alive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

bool is_postgres_process(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmd;
  std::getline(in, cmd, '\0');
  return cmd.find("postgres") != std::string::npos;
}

pid_t pid_from_file(const fs::path& pid_file) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  return static_cast<pid_t>(pid);
}

bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    waitpid(pid, &status, WNOHANG);  // reaps it if it is our child; harmless otherwise
    if (!process_alive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return !process_alive(pid);
}

void stop_process(pid_t pid) {
  kill(pid, SIGINT);  // fast shutdown: abort transactions, checkpoint, exit
  if (wait_gone(pid, std::chrono::seconds(30))) return;
  kill(pid, SIGQUIT);  // immediate shutdown; crash recovery on next start
  if (wait_gone(pid, std::chrono::seconds(5))) return;
  kill(pid, SIGKILL);
  wait_gone(pid, std::chrono::seconds(5));
}

Status run_to_completion(const std::vector<std::string>& argv, bool drop, uid_t uid, gid_t gid,
                         const fs::path& log_file) {
  int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot open " + log_file.string() + ": " + std::strerror(errno)};
  auto pid = spawn(argv, drop, uid, gid, fd);
  close(fd);
  if (!pid) return pid.error();
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return Error{argv[0] + " failed (see " + log_file.string() + "):\n" + read_tail(log_file)};
}

}  // namespace

std::string EmbeddedPostgres::connection_string_for(const std::string& data_dir,
                                                    const std::string& database) {
  const fs::path dir = fs::absolute(data_dir);
  return "host=" + quote_conninfo((dir / "run").string()) + " dbname=" + quote_conninfo(database) +
         " user=helm connect_timeout=5";
}

pid_t EmbeddedPostgres::running_server_pid(const std::string& data_dir) {
  const pid_t pid = pid_from_file(fs::absolute(data_dir) / "pg" / "postmaster.pid");
  return pid != 0 && process_alive(pid) && is_postgres_process(pid) ? pid : 0;
}

EmbeddedPostgres::EmbeddedPostgres(EmbeddedPostgresOptions options)
    : options_(std::move(options)) {}

EmbeddedPostgres::~EmbeddedPostgres() {
  stop();
}

Expected<std::unique_ptr<EmbeddedPostgres>> EmbeddedPostgres::start(
    EmbeddedPostgresOptions options) {
  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  if (ec) return Error{"cannot create data dir '" + options.data_dir + "': " + ec.message()};
  options.data_dir = fs::canonical(options.data_dir).string();
  const fs::path dir = options.data_dir;
  if ((dir / "run").string().size() > kMaxSocketPath) {
    return Error{"data dir path '" + dir.string() + "' is too long for a Unix socket path (" +
                 std::to_string(kMaxSocketPath) + " bytes at most); choose a shorter one"};
  }

  std::unique_ptr<EmbeddedPostgres> pg(new EmbeddedPostgres(options));
  auto bindir = find_bindir();
  if (!bindir) return bindir.error();
  pg->bindir_ = *bindir;

  if (geteuid() == 0) {
    auto user = ensure_os_user(options.os_user);
    if (!user) return user.error();
    pg->drop_privileges_ = true;
    pg->uid_ = user->uid;
    pg->gid_ = user->gid;
    // The data dir keeps 0700-class secrets in files of their own; the directory itself only
    // needs to be searchable so the server can reach its own subdirectories.
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
      ::chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH);
    }
    if (auto st2 = check_traversable(dir, pg->uid_); !st2) return st2.error();
  }

  const fs::path pgdata = dir / "pg";
  const fs::path rundir = dir / "run";
  const fs::path log_file = dir / "postgres.log";
  fs::create_directories(rundir, ec);
  ::chmod(rundir.c_str(), 0700);
  if (pg->drop_privileges_) {
    if (::chown(rundir.c_str(), pg->uid_, pg->gid_) != 0) {
      return Error{"cannot chown " + rundir.string() + ": " + std::strerror(errno)};
    }
  }

  if (!fs::exists(pgdata / "PG_VERSION")) {
    // initdb into a scratch directory and rename: a crash half-way never leaves a broken cluster.
    const fs::path scratch = dir / "pg.initdb";
    fs::remove_all(scratch, ec);
    fs::create_directories(scratch, ec);
    ::chmod(scratch.c_str(), 0700);
    if (pg->drop_privileges_ && ::chown(scratch.c_str(), pg->uid_, pg->gid_) != 0) {
      return Error{"cannot chown " + scratch.string() + ": " + std::strerror(errno)};
    }
    log::info("initializing embedded PostgreSQL cluster", {{"dir", pgdata.string()}});
    auto st = run_to_completion({pg->bindir_ + "/initdb", "-D", scratch.string(), "-U", "helm",
                                 "-A", "trust", "-E", "UTF8", "--no-locale"},
                                pg->drop_privileges_, pg->uid_, pg->gid_, log_file);
    if (!st) return st.error();
    fs::remove_all(pgdata, ec);
    fs::rename(scratch, pgdata, ec);
    if (ec) return Error{"cannot move the new cluster into place: " + ec.message()};
  }

  // A hub killed with SIGKILL can leave its server running (or still shutting down): stop it.
  if (const pid_t orphan = running_server_pid(dir.string()); orphan != 0) {
    log::warn("stopping a PostgreSQL server left behind by an earlier hub", {{"pid", orphan}});
    stop_process(orphan);
  }

  pg->connection_string_ = connection_string_for(dir.string(), options.database);
  if (auto st = pg->launch(); !st) return st.error();
  if (options.supervise) pg->supervisor_ = std::thread([p = pg.get()] { p->supervise(); });
  return pg;
}

Status EmbeddedPostgres::launch() {
  const fs::path dir = options_.data_dir;
  const fs::path log_file = dir / "postgres.log";
  int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot open " + log_file.string() + ": " + std::strerror(errno)};
  auto pid = spawn({bindir_ + "/postgres", "-D", (dir / "pg").string(), "-c",
                    "listen_addresses=", "-c", "unix_socket_directories=" + (dir / "run").string(),
                    "-c", "unix_socket_permissions=0700", "-c", "max_connections=200"},
                   drop_privileges_, uid_, gid_, fd);
  close(fd);
  if (!pid) return pid.error();
  pid_ = *pid;

  const std::string admin_conn =
      "host=" + quote_conninfo((dir / "run").string()) + " dbname=postgres user=helm";
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options_.ready_timeout_s);
  while (PQping(admin_conn.c_str()) != PQPING_OK) {
    int status = 0;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      pid_ = 0;
      return Error{"PostgreSQL exited during start-up (see " + log_file.string() + "):\n" +
                   read_tail(log_file)};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop_process(*pid);
      pid_ = 0;
      return Error{"PostgreSQL did not accept connections within " +
                   std::to_string(options_.ready_timeout_s) + " s (see " + log_file.string() + ")"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }

  PGconn* conn = PQconnectdb(admin_conn.c_str());
  std::string failure;
  if (PQstatus(conn) != CONNECTION_OK) {
    failure = PQerrorMessage(conn);
  } else {
    const char* params[] = {options_.database.c_str()};
    PGresult* r = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, nullptr,
                               params, nullptr, nullptr, 0);
    const bool exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    if (!exists) {
      char* ident = PQescapeIdentifier(conn, options_.database.c_str(), options_.database.size());
      PGresult* c = PQexec(conn, (std::string("CREATE DATABASE ") + ident).c_str());
      PQfreemem(ident);
      if (PQresultStatus(c) != PGRES_COMMAND_OK) failure = PQresultErrorMessage(c);
      PQclear(c);
    }
  }
  PQfinish(conn);
  if (!failure.empty()) return Error{"embedded PostgreSQL: cannot create the database: " + failure};
  log::info("embedded PostgreSQL ready",
            {{"pid", pid_.load()}, {"socket_dir", (dir / "run").string()}});
  return {};
}

void EmbeddedPostgres::supervise() {
  auto backoff = std::chrono::milliseconds(500);
  for (;;) {
    const pid_t pid = pid_.load();
    int status = 0;
    if (pid > 0) {
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    std::unique_lock lock(mutex_);
    pid_ = 0;
    if (stopping_) return;
    log::error("embedded PostgreSQL exited unexpectedly; restarting",
               {{"pid", pid}, {"status", status}, {"retry_in_ms", backoff.count()}});
    if (wake_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    lock.unlock();
    if (auto st = launch(); !st) {
      log::error("embedded PostgreSQL restart failed", {{"error", st.error().message}});
      backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
      std::this_thread::sleep_for(backoff);
    } else {
      backoff = std::chrono::milliseconds(500);
    }
  }
}

void EmbeddedPostgres::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  const pid_t pid = pid_.load();
  if (pid > 0) {
    log::info("stopping embedded PostgreSQL", {{"pid", pid}});
    kill(pid, SIGINT);
  }
  if (supervisor_.joinable()) {
    supervisor_.join();
  } else if (pid > 0) {
    stop_process(pid);
  }
  pid_ = 0;
}

}  // namespace helm::storage
