/// @brief What integration tests share: temp dirs, the real helm-hub binary as a child process,
/// an HTTPS client (libcurl) and a raw TLS socket for misbehaving-client tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace helm::test {

/// A fresh directory under /tmp, removed with everything in it when destroyed.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "helm-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

struct HubOptions {
  std::string data_dir;
  std::vector<std::string> extra_args;
  std::map<std::string, std::string> env;  ///< added to the inherited environment
  bool wait_ready = true;                  ///< wait for the "api listening" log line
  std::chrono::seconds timeout{90};
};

/// The real helm-hub binary (`serve`) as a child process with its output captured to files.
class HubProcess {
 public:
  explicit HubProcess(HubOptions options);
  ~HubProcess();  ///< SIGKILL if still running
  HubProcess(const HubProcess&) = delete;
  HubProcess& operator=(const HubProcess&) = delete;

  bool ready() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string base_url() const;
  std::string ca_file() const;  ///< the development certificate in the data dir
  std::string log() const;      ///< stderr so far
  std::string output() const;   ///< stdout so far

  /// Sends `sig` and waits for the exit. Returns the exit code (128+signal when killed).
  int stop(int sig = 15, std::chrono::seconds limit = std::chrono::seconds(60));
  /// Waits for the process to exit by itself; nullopt if it is still running after `limit`.
  std::optional<int> wait_exit(std::chrono::seconds limit);
  /// Waits until `needle` appears in the log.
  bool wait_for_log(const std::string& needle, std::chrono::seconds limit);

 private:
  HubOptions options_;
  std::string out_file_;
  std::string err_file_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::optional<int> exit_code_;
};

/// Path of the built helm-hub binary.
std::string hub_binary();

struct HttpResponse {
  long status = 0;  ///< 0 when the request failed below HTTP
  std::string body;
  std::map<std::string, std::string> headers;  ///< lower-case names
  std::string error;                           ///< libcurl's message when status is 0
  long tls_version = 0;                        ///< OpenSSL's version code of the session
};

struct HttpRequestOptions {
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;
  std::string ca_file;
  bool tls12_only = false;
  long timeout_ms = 10'000;
};

HttpResponse https(const std::string& url, const HttpRequestOptions& options);

/// A raw client TLS connection (TLS 1.3 allowed), for clients that misbehave on purpose.
class RawTlsClient {
 public:
  RawTlsClient(const std::string& host, uint16_t port);
  ~RawTlsClient();
  RawTlsClient(const RawTlsClient&) = delete;
  RawTlsClient& operator=(const RawTlsClient&) = delete;
  bool connected() const { return ssl_ != nullptr; }
  bool send(const std::string& data);
  /// Reads what arrives until the peer closes, `limit` passes, or `until` (if given) has
  /// arrived; sets `closed` when the peer closed.
  std::string read_some(std::chrono::milliseconds limit, bool* closed = nullptr,
                        const std::string& until = "");

 private:
  int fd_ = -1;
  void* ctx_ = nullptr;
  void* ssl_ = nullptr;
};

/// Environment that makes the hub hash passwords cheaply (argon2id, 1 pass, 8 MiB), so tests that
/// log in many times stay fast. Production defaults are exercised by the unit tests.
extern const std::map<std::string, std::string> kFastPasswordEnv;

/// Runs `helm-hub admin bootstrap` (with kFastPasswordEnv) and the password on stdin; returns its
/// exit code and, in `output`, what it printed.
int bootstrap_hub(const std::string& data_dir, const std::string& org, const std::string& email,
                  const std::string& password, std::string* output = nullptr);

/// Runs a shell command and returns its exit status.
int run_command(const std::string& command);

/// What a command-line program run by run_cli() did.
struct CliResult {
  int code = -1;  ///< exit status; -1 when it did not exit normally
  std::string out;
  std::string err;
};

/// Runs `binary` with `args` and `input` on stdin, in this environment minus HELM_*, HOME and
/// XDG_CONFIG_HOME, with HOME set to `home` (where files for stdin/stdout/stderr are kept) and
/// `env` added; waits for it.
CliResult run_cli(const std::string& binary, const std::vector<std::string>& args,
                  const std::string& home, const std::string& input = "",
                  const std::map<std::string, std::string>& env = {});

/// "exit N", then stdout and stderr, for assertion messages.
std::string describe(const CliResult& r);

}  // namespace helm::test
