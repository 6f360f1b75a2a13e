// End to end with the real binaries: helm-hub (with the transport-wss plugin) and helm-agent /
// helm-loadgen as child processes on loopback. Covers enrollment with a certificate pin, commands
// through REST, the durable outbox across agent and hub restarts, exactly-once run_script,
// expiry, deletion (4001), a second connection (4009), an impostor hub, and an HTTP CONNECT proxy.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kPassword = "owner password 123";

std::string hex(const unsigned char* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

std::string pin_of(X509* cert) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert, &der);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), digest);
  OPENSSL_free(der);
  return hex(digest, sizeof digest);
}

// SHA-256 of the DER of the first certificate in a PEM file, hex (what `--pin` takes).
std::string pin_of_pem(const std::string& file) {
  FILE* f = std::fopen(file.c_str(), "r");
  if (f == nullptr) return "";
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) return "";
  std::string pin = pin_of(cert);
  X509_free(cert);
  return pin;
}

// A port that is free now and lies below the kernel's ephemeral range (32768-60999 here), so
// that the many outgoing connections of tests running alongside (loadgen, PostgreSQL clients)
// cannot take it as their source port before the hub binds it.
uint16_t free_port() {
  static std::mt19937 random(std::random_device{}());
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<uint16_t>(20000 + random() % 12000);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (bound) return port;
  }
  return 0;
}

int listen_loopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// Accepts with a short poll so the owner can stop the loop.
int accept_or_timeout(int listen_fd, int timeout_ms) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return -1;
  return ::accept(listen_fd, nullptr, nullptr);
}

bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

size_t count_lines(const std::string& file) {
  const std::string text = read_file(file);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// A child process (helm-agent, helm-loadgen) with stdout and stderr in one log file. Proxy
// variables of the test's own environment are not passed on.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string log_file,
        const std::map<std::string, std::string>& env = {})
      : log_file_(std::move(log_file)) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      for (const char* name : {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY",
                               "no_proxy", "ALL_PROXY", "all_proxy", "HELM_ENROLLMENT_KEY"}) {
        ::unsetenv(name);
      }
      for (const auto& [k, v] : env)
        ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<std::string> copy = args;
      std::vector<char*> argv;
      for (auto& a : copy)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (!exit_code_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const { return read_file(log_file_); }
  bool running() { return !wait_exit(0ms).has_value(); }

  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    if (exit_code_) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(20ms);
    }
  }

  int stop(int sig, std::chrono::milliseconds limit = 15s) {
    if (exit_code_) return *exit_code_;
    ::kill(pid_, sig);
    if (auto code = wait_exit(limit)) return *code;
    ::kill(pid_, SIGKILL);
    return wait_exit(10s).value_or(-1);
  }

  bool wait_for_log(const std::string& needle, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    return log().find(needle) != std::string::npos;
  }

 private:
  std::string log_file_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// A minimal HTTP CONNECT proxy on 127.0.0.1 that counts the tunnels it opens.
class ConnectProxy {
 public:
  ConnectProxy() {
    listen_fd_ = listen_loopback(&port_);
    acceptor_ = std::thread([this] {
      while (!stop_) {
        const int fd = accept_or_timeout(listen_fd_, 100);
        if (fd < 0) continue;
        std::lock_guard lock(mutex_);
        workers_.emplace_back([this, fd] { serve(fd); });
      }
    });
  }
  ~ConnectProxy() {
    stop_ = true;
    acceptor_.join();
    std::vector<std::thread> workers;
    {
      std::lock_guard lock(mutex_);
      workers.swap(workers_);
    }
    for (auto& t : workers)
      t.join();
    ::close(listen_fd_);
  }
  ConnectProxy(const ConnectProxy&) = delete;
  ConnectProxy& operator=(const ConnectProxy&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int tunnels() const { return tunnels_; }
  std::multiset<std::string> targets() const {
    std::lock_guard lock(mutex_);
    return targets_;
  }

 private:
  void serve(int client) {
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192 && !stop_) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      const ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n <= 0) break;
      head.append(buf, static_cast<size_t>(n));
    }
    const auto end = head.find("\r\n\r\n");
    const auto space = head.find(' ');
    const auto space2 = head.find(' ', space + 1);
    if (end == std::string::npos || head.rfind("CONNECT ", 0) != 0 || space2 == std::string::npos) {
      const std::string refused = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
      write_all(client, refused.data(), refused.size());
      ::close(client);
      return;
    }
    const std::string target = head.substr(space + 1, space2 - space - 1);
    const auto colon = target.rfind(':');
    const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(target.substr(colon + 1))));
    const std::string host = target.substr(0, colon);
    if (::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) !=
            1 ||
        ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      const std::string bad = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
      write_all(client, bad.data(), bad.size());
      ::close(upstream);
      ::close(client);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      targets_.insert(target);
    }
    ++tunnels_;
    const std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    write_all(client, ok.data(), ok.size());
    if (head.size() > end + 4) write_all(upstream, head.data() + end + 4, head.size() - end - 4);
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stop_) {
      if (::poll(fds, 2, 200) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0 || !write_all(fds[1 - i].fd, buf, static_cast<size_t>(n))) done = true;
      }
      if (done) break;
    }
    ::close(upstream);
    ::close(client);
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> tunnels_{0};
  mutable std::mutex mutex_;
  std::multiset<std::string> targets_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

// A TLS server with a certificate of its own (not the hub's): counts connections, completed
// handshakes and the application bytes a client sends after the handshake.
class ImpostorTlsServer {
 public:
  ImpostorTlsServer() {
    key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256"));
    cert_ = X509_new();
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 4242);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 86400);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert_, name);
    X509_sign(cert_, key_, EVP_sha256());
    ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx_, cert_);
    SSL_CTX_use_PrivateKey(ctx_, key_);
    listen_fd_ = listen_loopback(&port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        const int fd = accept_or_timeout(listen_fd_, 100);
        if (fd < 0) continue;
        ++connections_;
        timeval tv{3, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        SSL* ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
          ++handshakes_;
          char buf[4096];
          int n = 0;
          while ((n = SSL_read(ssl, buf, sizeof buf)) > 0)
            app_bytes_ += n;
        }
        SSL_free(ssl);
        ::close(fd);
        ERR_clear_error();
      }
    });
  }
  ~ImpostorTlsServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  ImpostorTlsServer(const ImpostorTlsServer&) = delete;
  ImpostorTlsServer& operator=(const ImpostorTlsServer&) = delete;

  uint16_t port() const { return port_; }
  std::string pin() const { return pin_of(cert_); }
  int connections() const { return connections_; }
  int app_bytes() const { return app_bytes_; }

 private:
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0}, handshakes_{0}, app_bytes_{0};
  std::thread thread_;
};

class AgentEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(std::string(HELM_BUILD_PLUGINS_DIR) + "/transport-wss"));
    dir_ = new TempDir("helm-e2e-agents");
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    transport_port_ = free_port();
    start_hub();
    ASSERT_TRUE(hub_->ready()) << hub_->log();
    login();
    // A fixed free loopback port (not 7443, not 0): it must survive a hub restart, because the
    // agents keep the transport URL they were enrolled with. Another process may still take it
    // between the check and the bind: then the next one.
    // (The transport may also have failed at start: its default port 7443 is taken whenever
    // another hub of a test running alongside has it; the PATCH starts it then.)
    bool listening = false;
    std::string answers;
    for (int attempt = 0; attempt < 3 && !listening; ++attempt) {
      if (attempt > 0) transport_port_ = free_port();
      auto patched = call("PATCH", "/api/v1/plugins/transport-wss",
                          {{"config", {{"listen", transport_address()}}}});
      answers += std::to_string(patched.status) + " " + patched.body + "\n";
      listening =
          patched.status == 200 && hub_->wait_for_log(transport_address() + "/agent/v1", 30s);
    }
    ASSERT_TRUE(listening) << answers << hub_->log();
    auto client = call("POST", org() + "/clients", {{"name", "Acme"}});
    ASSERT_EQ(client.status, 201) << client.body;
    client_id_ = json::parse(client.body)["id"];
    auto site = call("POST", org() + "/clients/" + client_id_ + "/sites", {{"name", "HQ"}});
    ASSERT_EQ(site.status, 201) << site.body;
    site_id_ = json::parse(site.body)["id"];
  }

  static void TearDownTestSuite() {
    // A clean stop also stops the hub's embedded PostgreSQL (a killed hub may leave it running).
    if (hub_ != nullptr) hub_->stop();
    delete hub_;
    delete dir_;
    hub_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(hub_, nullptr);
    ASSERT_TRUE(hub_->ready());
    work_ = std::make_unique<TempDir>("helm-e2e-agent");
  }

  void TearDown() override {
    agents_.clear();  // SIGKILL whatever still runs
    if (HasFailure() && hub_ != nullptr) {
      const std::string log = hub_->log();
      std::cerr << "---- hub log (tail) ----\n"
                << log.substr(log.size() > 6000 ? log.size() - 6000 : 0) << "\n";
    }
  }

  static void start_hub() {
    auto env = kFastPasswordEnv;
    env["HELM_PLUGINS_PATH"] = HELM_BUILD_PLUGINS_DIR;
    env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "true";  // builds without the dev signing key
    hub_ = new HubProcess({.data_dir = dir_->path(), .env = env});
  }

  static void login() {
    auto r = call("POST", "/api/v1/auth/login",
                  {{"email", "owner@a.test"}, {"password", kPassword}}, false);
    ASSERT_EQ(r.status, 200) << r.body;
    owner_ = json::parse(r.body)["token"];
    org_id_ = json::parse(r.body)["technician"]["org_id"];
  }

  static std::string transport_address() { return "127.0.0.1:" + std::to_string(transport_port_); }
  static std::string org() { return "/api/v1/orgs/" + org_id_; }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const json& body = nullptr, bool auth = true) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    if (!body.is_null()) o.body = body.dump();
    if (auth) o.headers.push_back("Authorization: Bearer " + owner_);
    o.headers.push_back("Content-Type: application/json");
    return https(hub_->base_url() + path, o);
  }

  // {id, key} of a new enrollment key.
  static std::pair<std::string, std::string> new_key(int uses = 1) {
    auto r = call("POST", org() + "/enrollment-keys",
                  {{"client_id", client_id_}, {"site_id", site_id_}, {"uses", uses}});
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return {};
    const auto j = json::parse(r.body);
    return {j["id"].get<std::string>(), j["key"].get<std::string>()};
  }

  static std::string hub_pin() { return pin_of_pem(hub_->ca_file()); }

  std::string next_log(const std::string& what) {
    return work_->file(what + "-" + std::to_string(++children_) + ".log");
  }

  // Runs `helm-agent enroll` to the end; returns its exit code, its output in `log`.
  int enroll(const std::string& state_dir, const std::string& key, const std::string& pin,
             std::string* log = nullptr, const std::vector<std::string>& extra = {},
             std::string server = "") {
    if (server.empty()) server = hub_->base_url();
    std::vector<std::string> args = {HELM_AGENT_BINARY, "enroll", "--server", server,
                                     "--key",           key,      "--pin",    pin,
                                     "--state-dir",     state_dir};
    args.insert(args.end(), extra.begin(), extra.end());
    Child child(args, next_log("enroll"));
    const int code = child.wait_exit(60s).value_or(-1);
    if (log != nullptr) *log = child.log();
    return code;
  }

  // Enrolls a fresh state dir with a new one-use key; returns the state dir ("" on failure).
  std::string enrolled_agent(const std::string& name) {
    const std::string state_dir = work_->file(name);
    const auto [id, key] = new_key();
    std::string log;
    const int code = enroll(state_dir, key, hub_pin(), &log);
    EXPECT_EQ(code, 0) << log;
    if (code != 0) return "";
    return state_dir;
  }

  static std::string device_id_of(const std::string& state_dir) {
    const auto text = read_file(state_dir + "/state.json");
    const auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("device_id")) return "";
    return j["device_id"];
  }

  Child& run_agent(const std::string& state_dir, const std::vector<std::string>& extra = {},
                   const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {HELM_AGENT_BINARY, "run",         "--state-dir",
                                     state_dir,         "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    agents_.push_back(std::make_unique<Child>(args, next_log("agent"), env));
    return *agents_.back();
  }

  static json device(const std::string& id) {
    auto r = call("GET", org() + "/devices/" + id);
    if (r.status != 200) return json{{"http_status", r.status}, {"body", r.body}};
    return json::parse(r.body);
  }

  static bool wait_online(const std::string& id, bool online, std::chrono::seconds limit = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (device(id).value("online", !online) == online) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  static std::string post_command(const std::string& device_id, const std::string& kind,
                                  const json& args = json::object(), int deadline_s = 0) {
    json body = {{"kind", kind}, {"args", args}};
    if (deadline_s > 0) body["deadline_s"] = deadline_s;
    auto r = call("POST", org() + "/devices/" + device_id + "/commands", body);
    EXPECT_EQ(r.status, 202) << r.body;
    if (r.status != 202) return "";
    return json::parse(r.body)["id"];
  }

  static json command(const std::string& id) {
    auto r = call("GET", org() + "/commands/" + id);
    if (r.status != 200) return json{{"http_status", r.status}, {"body", r.body}};
    return json::parse(r.body);
  }

  // Polls the command until its state is one of `states`; returns the last answer.
  static json wait_command(const std::string& id, const std::set<std::string>& states,
                           std::chrono::seconds limit = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = command(id);
      if (states.count(last.value("state", ""))) return last;
      std::this_thread::sleep_for(100ms);
    }
    return last;
  }

  static void write_policy(const std::string& state_dir) {
    write_file(state_dir + "/policy.json",
               R"({"allowed_interpreters": ["/bin/sh"], "output_cap_bytes": 65536,)"
               R"( "max_timeout_s": 60})");
  }

  static inline TempDir* dir_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string owner_, org_id_, client_id_, site_id_;
  static inline uint16_t transport_port_ = 0;
  std::unique_ptr<TempDir> work_;
  std::vector<std::unique_ptr<Child>> agents_;
  int children_ = 0;
};

TEST_F(AgentEndToEnd, EnrollsWithThePinComesOnlineAndAnswersPingAndInventory) {
  const std::string state_dir = enrolled_agent("a1");
  ASSERT_FALSE(state_dir.empty());
  struct stat st {};
  ASSERT_EQ(::stat((state_dir + "/state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the state file holds the device token";
  const auto state = json::parse(read_file(state_dir + "/state.json"));
  EXPECT_EQ(state["transport_url"], "wss://" + transport_address() + "/agent/v1");
  EXPECT_EQ(state["device_token"].get<std::string>().rfind("hdt_", 0), 0u);
  const std::string device_id = device_id_of(state_dir);
  ASSERT_FALSE(device_id.empty());
  EXPECT_EQ(device(device_id).value("online", true), false);

  auto& agent = run_agent(state_dir);
  ASSERT_TRUE(wait_online(device_id, true)) << agent.log();

  // The agents' listener speaks TLS 1.3 only (a plain HTTPS GET there is 426, no upgrade).
  HttpRequestOptions tls;
  tls.ca_file = hub_->ca_file();
  EXPECT_EQ(https("https://" + transport_address() + "/agent/v1", tls).status, 426);
  tls.tls12_only = true;
  const auto tls12 = https("https://" + transport_address() + "/agent/v1", tls);
  EXPECT_EQ(tls12.status, 0) << "TLS 1.2 was accepted: " << tls12.body;

  const std::string ping = post_command(device_id, "ping");
  const std::string inventory = post_command(device_id, "inventory");
  ASSERT_FALSE(ping.empty());
  ASSERT_FALSE(inventory.empty());
  auto done = wait_command(ping, {"done", "expired"});
  EXPECT_EQ(done["state"], "done") << done.dump() << agent.log();
  EXPECT_EQ(done["result"]["status"], "ok") << done.dump();
  EXPECT_EQ(done["result"]["data"]["pong"], true) << done.dump();

  done = wait_command(inventory, {"done", "expired"});
  EXPECT_EQ(done["state"], "done") << done.dump() << agent.log();
  EXPECT_EQ(done["result"]["status"], "ok") << done.dump();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(done["result"]["data"]["hostname"], std::string(host)) << done.dump();
  EXPECT_TRUE(done["result"]["data"].contains("memory")) << done.dump();

  EXPECT_EQ(agent.stop(SIGTERM), 0) << agent.log();
  EXPECT_TRUE(wait_online(device_id, false, 10s)) << device(device_id).dump();
}

TEST_F(AgentEndToEnd, AnOfflineAgentGetsItsQueuedCommandOnReconnectAndAnExpiredOneNever) {
  const std::string state_dir = enrolled_agent("a2");
  ASSERT_FALSE(state_dir.empty());
  const std::string device_id = device_id_of(state_dir);
  {
    auto& first = run_agent(state_dir);
    ASSERT_TRUE(wait_online(device_id, true)) << first.log();
    EXPECT_EQ(first.stop(SIGTERM), 0) << first.log();
  }
  ASSERT_TRUE(wait_online(device_id, false, 10s)) << device(device_id).dump();

  const std::string queued = post_command(device_id, "ping");
  const std::string expiring = post_command(device_id, "ping", json::object(), 1);
  ASSERT_FALSE(queued.empty());
  ASSERT_FALSE(expiring.empty());
  auto expired = wait_command(expiring, {"expired", "done"}, 15s);
  EXPECT_EQ(expired["state"], "expired") << expired.dump();
  EXPECT_EQ(command(queued)["state"], "queued") << "still waiting for its agent";

  auto& second = run_agent(state_dir);
  auto done = wait_command(queued, {"done"});
  EXPECT_EQ(done["state"], "done") << done.dump() << second.log();
  EXPECT_EQ(done["result"]["data"]["pong"], true) << done.dump();
  std::this_thread::sleep_for(1s);
  expired = command(expiring);
  EXPECT_EQ(expired["state"], "expired") << expired.dump();
  EXPECT_FALSE(expired.contains("result") && !expired["result"].is_null()) << expired.dump();
  EXPECT_EQ(second.log().find(expiring), std::string::npos)
      << "the expired command was sent to the agent:\n"
      << second.log();
}

TEST_F(AgentEndToEnd, HubKilledWithCommandsQueuedDeliversEachOnceAfterRestart) {
  const std::string state_dir = enrolled_agent("a3");
  ASSERT_FALSE(state_dir.empty());
  write_policy(state_dir);
  const std::string device_id = device_id_of(state_dir);
  const std::string counter = work_->file("hub-restart-counter");
  {
    auto& first = run_agent(state_dir);
    ASSERT_TRUE(wait_online(device_id, true)) << first.log();
    EXPECT_EQ(first.stop(SIGTERM), 0) << first.log();
  }
  ASSERT_TRUE(wait_online(device_id, false, 10s));
  const std::string ping = post_command(device_id, "ping");
  const std::string script =
      post_command(device_id, "run_script",
                   {{"interpreter", "/bin/sh"},
                    {"script", "echo ran >> '" + counter + "'\necho counted\n"},
                    {"timeout_s", 30}});
  ASSERT_FALSE(ping.empty());
  ASSERT_FALSE(script.empty());

  EXPECT_EQ(hub_->stop(SIGKILL), 128 + SIGKILL);
  delete hub_;
  hub_ = nullptr;
  start_hub();
  ASSERT_TRUE(hub_->ready()) << hub_->log();
  ASSERT_TRUE(hub_->wait_for_log(transport_address() + "/agent/v1", 60s))
      << "the transport did not come back on its configured port\n"
      << hub_->log();
  login();
  EXPECT_EQ(command(ping)["state"], "queued") << command(ping).dump();
  EXPECT_EQ(command(script)["state"], "queued") << command(script).dump();

  auto& second = run_agent(state_dir);
  auto done = wait_command(ping, {"done"});
  EXPECT_EQ(done["state"], "done") << done.dump() << second.log();
  EXPECT_EQ(done["result"]["data"]["pong"], true) << done.dump();
  done = wait_command(script, {"done"});
  EXPECT_EQ(done["state"], "done") << done.dump() << second.log();
  EXPECT_EQ(done["result"]["status"], "ok") << done.dump();
  EXPECT_EQ(done["result"]["stdout"], "counted\n") << done.dump();
  EXPECT_EQ(count_lines(counter), 1u);

  // Neither a reconnect nor an agent restart runs it again.
  EXPECT_EQ(second.stop(SIGTERM), 0) << second.log();
  auto& third = run_agent(state_dir);
  ASSERT_TRUE(wait_online(device_id, true)) << third.log();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(count_lines(counter), 1u) << third.log();
}

TEST_F(AgentEndToEnd, AnAgentKilledMidScriptDoesNotRunItAgainAfterItsRestart) {
  const std::string state_dir = enrolled_agent("a4");
  ASSERT_FALSE(state_dir.empty());
  write_policy(state_dir);
  const std::string device_id = device_id_of(state_dir);
  const std::string counter = work_->file("mid-script-counter");
  auto& first = run_agent(state_dir);
  ASSERT_TRUE(wait_online(device_id, true)) << first.log();

  const std::string script =
      post_command(device_id, "run_script",
                   {{"interpreter", "/bin/sh"},
                    {"script", "echo ran >> '" + counter + "'\nsleep 2\necho finished\n"},
                    {"timeout_s", 30}});
  ASSERT_FALSE(script.empty());
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (count_lines(counter) == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  ASSERT_EQ(count_lines(counter), 1u) << first.log();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(first.stop(SIGKILL), 128 + SIGKILL);

  auto& second = run_agent(state_dir);
  auto done = wait_command(script, {"done", "expired"});
  EXPECT_EQ(done["state"], "done") << done.dump() << second.log();
  const std::string status = done["result"].value("status", "");
  EXPECT_TRUE(status == "error" || status == "ok") << done.dump();
  EXPECT_NE(second.log().find("interrupted"), std::string::npos) << second.log();
  // Past the end of the orphaned script (it sleeps 2 s), and a little more for a rerun.
  std::this_thread::sleep_until(started + 4s);
  EXPECT_EQ(count_lines(counter), 1u) << "the script ran twice\n" << second.log();
}

TEST_F(AgentEndToEnd, ADeletedDeviceGets4001AndItsAgentStopsRetrying) {
  const std::string state_dir = enrolled_agent("a5");
  ASSERT_FALSE(state_dir.empty());
  const std::string device_id = device_id_of(state_dir);
  auto& agent = run_agent(state_dir);
  ASSERT_TRUE(wait_online(device_id, true)) << agent.log();

  ASSERT_EQ(call("DELETE", org() + "/devices/" + device_id).status, 204);
  const auto code = agent.wait_exit(15s);
  ASSERT_TRUE(code.has_value()) << "the agent still runs after its device was deleted\n"
                                << agent.log();
  EXPECT_EQ(*code, 3) << agent.log();
  EXPECT_NE(agent.log().find("4001"), std::string::npos) << agent.log();
  EXPECT_EQ(device(device_id).value("http_status", 0), 404) << device(device_id).dump();
  EXPECT_NE(read_file(state_dir + "/state.json").find("revoked"), std::string::npos);

  // Started again it does not even try (exit 3 at once) until enrolled again.
  auto& again = run_agent(state_dir);
  const auto again_code = again.wait_exit(10s);
  ASSERT_TRUE(again_code.has_value()) << again.log();
  EXPECT_EQ(*again_code, 3) << again.log();
}

TEST_F(AgentEndToEnd, ASecondConnectionOfTheSameDeviceClosesTheFirstWith4009) {
  const std::string state_dir = enrolled_agent("a6");
  ASSERT_FALSE(state_dir.empty());
  const std::string device_id = device_id_of(state_dir);
  const std::string twin_dir = work_->file("a6-twin");
  fs::copy(state_dir, twin_dir, fs::copy_options::recursive);
  ::chmod(twin_dir.c_str(), 0700);
  ::chmod((twin_dir + "/state.json").c_str(), 0600);
  auto& first = run_agent(state_dir);
  ASSERT_TRUE(wait_online(device_id, true)) << first.log();
  ASSERT_TRUE(first.wait_for_log("connected to the hub", 10s)) << first.log();
  auto& twin = run_agent(twin_dir);
  ASSERT_TRUE(twin.wait_for_log("connected to the hub", 15s)) << twin.log();
  EXPECT_TRUE(first.wait_for_log("\"close_code\":4009", 10s)) << first.log();
  // Whether the superseded agent then retries with backoff or stops is the agent's choice; the
  // newer connection is the one the hub keeps.
  EXPECT_TRUE(wait_online(device_id, true, 10s)) << twin.log();
}

TEST_F(AgentEndToEnd, AHubWithAnUnexpectedCertificateGetsNothing) {
  ImpostorTlsServer impostor;
  const auto [key_id, key] = new_key();
  ASSERT_FALSE(key.empty());

  // The right pin, the wrong server: the key must not leave the agent.
  const std::string state_dir = work_->file("a7");
  std::string log;
  EXPECT_NE(enroll(state_dir, key, hub_pin(), &log, {},
                   "https://127.0.0.1:" + std::to_string(impostor.port())),
            0)
      << log;
  EXPECT_GE(impostor.connections(), 1) << "the agent never tried the impostor\n" << log;
  EXPECT_EQ(impostor.app_bytes(), 0) << "the agent sent data to a server it could not verify";
  EXPECT_FALSE(fs::exists(state_dir + "/state.json"));

  // The right server, the wrong pin.
  EXPECT_NE(enroll(state_dir, key, impostor.pin(), &log), 0) << log;
  EXPECT_FALSE(fs::exists(state_dir + "/state.json"));
  auto keys = call("GET", org() + "/enrollment-keys");
  ASSERT_EQ(keys.status, 200);
  bool seen = false;
  const auto listed = json::parse(keys.body);
  for (const auto& item : listed["items"]) {
    if (item["id"] != key_id) continue;
    seen = true;
    EXPECT_EQ(item["uses_left"], 1) << "the key reached the hub: " << item.dump();
  }
  EXPECT_TRUE(seen) << key_id << " not in " << keys.body;

  // The key itself was good all along.
  ASSERT_EQ(enroll(state_dir, key, hub_pin(), &log), 0) << log;
  const std::string device_id = device_id_of(state_dir);

  // `run` holds to the pin too: with the impostor's pin in its state it never gets connected.
  auto state = json::parse(read_file(state_dir + "/state.json"));
  state["ca_pin"] = impostor.pin();
  write_file(state_dir + "/state.json", state.dump());
  ::chmod((state_dir + "/state.json").c_str(), 0600);
  auto& agent = run_agent(state_dir);
  EXPECT_FALSE(wait_online(device_id, true, 4s)) << agent.log();
  EXPECT_EQ(agent.log().find("connected to the hub"), std::string::npos) << agent.log();
  EXPECT_TRUE(agent.running()) << agent.log();
}

TEST_F(AgentEndToEnd, EnrollsAndRunsThroughAnHttpConnectProxy) {
  ConnectProxy proxy;
  const auto [key_id, key] = new_key();
  const std::string state_dir = work_->file("a8");
  std::string log;
  ASSERT_EQ(enroll(state_dir, key, hub_pin(), &log, {"--proxy", proxy.url()}), 0) << log;
  const std::string api_target = "127.0.0.1:" + std::to_string(hub_->port());
  EXPECT_EQ(proxy.targets().count(api_target), 1u) << "enrollment went around the proxy";
  const std::string device_id = device_id_of(state_dir);

  // The WebSocket, with the proxy from the environment this time.
  auto& agent = run_agent(state_dir, {}, {{"HTTPS_PROXY", proxy.url()}});
  ASSERT_TRUE(wait_online(device_id, true)) << agent.log();
  EXPECT_GE(proxy.targets().count(transport_address()), 1u) << agent.log();
  const std::string ping = post_command(device_id, "ping");
  auto done = wait_command(ping, {"done"});
  EXPECT_EQ(done["state"], "done") << done.dump() << agent.log();
  EXPECT_EQ(done["result"]["data"]["pong"], true) << done.dump();
  EXPECT_GE(proxy.tunnels(), 2) << agent.log();
}

TEST_F(AgentEndToEnd, LoadgenSmallFleetConnectsAndAnswersWithoutErrors) {
  const auto [key_id, key] = new_key(20);
  ASSERT_FALSE(key.empty());
  Child loadgen({HELM_LOADGEN_BINARY, "--server", hub_->base_url(), "--key", key, "--agents", "20",
                 "--pin", hub_pin(), "--duration", "3", "--rate", "200", "--hub-pid",
                 std::to_string(hub_->pid()), "--json"},
                next_log("loadgen"));
  const auto code = loadgen.wait_exit(120s);
  ASSERT_TRUE(code.has_value()) << loadgen.log();
  EXPECT_EQ(*code, 0) << loadgen.log();
  // stdout (the summary, one line with --json) and stderr (log lines) share the file.
  const std::string out = loadgen.log();
  json summary;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("connect_rate_per_s")) summary = j;
  }
  ASSERT_TRUE(summary.is_object()) << out;
  EXPECT_EQ(summary.value("connected", 0), 20) << summary.dump();
  EXPECT_TRUE(summary.contains("errors")) << summary.dump();
}

}  // namespace
}  // namespace helm::test
