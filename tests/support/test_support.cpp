#include "test_support.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace helm::test {
namespace fs = std::filesystem;

namespace {
// A test that writes to a connection the hub just closed (that is often the point) must get
// EPIPE back, not die of SIGPIPE.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string hub_binary() {
  return HELM_HUB_BINARY;
}

HubProcess::HubProcess(HubOptions options) : options_(std::move(options)) {
  static int counter = 0;
  const std::string stem = options_.data_dir + ".hub" + std::to_string(++counter);
  out_file_ = stem + ".out";
  err_file_ = stem + ".err";
  std::vector<std::string> args = {hub_binary(),      "serve",        "--data-dir",
                                   options_.data_dir, "--api-listen", "127.0.0.1:0"};
  for (const auto& a : options_.extra_args)
    args.push_back(a);
  pid_ = ::fork();
  if (pid_ == 0) {
    const int out = ::open(out_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    for (const auto& [k, v] : options_.env)
      ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (!options_.wait_ready) return;
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  static const std::regex port_re("\"msg\":\"api listening\".*\"port\":([0-9]+)");
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string text = log();
    if (std::regex_search(text, m, port_re)) {
      port_ = static_cast<uint16_t>(std::stoi(m[1].str()));
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

HubProcess::~HubProcess() {
  // A clean stop first, so the hub stops its embedded PostgreSQL; SIGKILL only when it hangs.
  if (!exit_code_ && pid_ > 0) stop(SIGTERM, std::chrono::seconds(20));
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  // A killed hub's PostgreSQL gets SIGINT from the kernel (parent-death signal); give it a
  // moment so the data dir can be removed cleanly.
  std::error_code ec;
  fs::remove(out_file_, ec);
  fs::remove(err_file_, ec);
}

std::string HubProcess::base_url() const {
  return "https://127.0.0.1:" + std::to_string(port_);
}
std::string HubProcess::ca_file() const {
  return options_.data_dir + "/tls/hub.crt";
}
std::string HubProcess::log() const {
  return read_file(err_file_);
}
std::string HubProcess::output() const {
  return read_file(out_file_);
}

std::optional<int> HubProcess::wait_exit(std::chrono::seconds limit) {
  if (exit_code_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

int HubProcess::stop(int sig, std::chrono::seconds limit) {
  if (exit_code_) return *exit_code_;
  ::kill(pid_, sig);
  if (auto code = wait_exit(limit)) return *code;
  ::kill(pid_, SIGKILL);
  return wait_exit(std::chrono::seconds(10)).value_or(-1);
}

bool HubProcess::wait_for_log(const std::string& needle, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

namespace {
size_t collect_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}
struct HeaderContext {
  CURL* curl;
  HttpResponse* response;
};
size_t collect_header(char* data, size_t size, size_t n, void* user) {
  auto* ctx = static_cast<HeaderContext*>(user);
  if (ctx->response->tls_version == 0) {
    // The TLS session is only reachable while the transfer runs.
    const curl_tlssessioninfo* info = nullptr;
    if (curl_easy_getinfo(ctx->curl, CURLINFO_TLS_SSL_PTR, &info) == CURLE_OK && info != nullptr &&
        info->backend == CURLSSLBACKEND_OPENSSL && info->internals != nullptr) {
      ctx->response->tls_version = SSL_version(static_cast<SSL*>(info->internals));
    }
  }
  std::string line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
      value.pop_back();
    ctx->response->headers[name] = value;
  }
  return size * n;
}
}  // namespace

HttpResponse https(const std::string& url, const HttpRequestOptions& options) {
  HttpResponse out;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, options.method.c_str());
  if (!options.body.empty() || options.method == "POST" || options.method == "PUT" ||
      options.method == "PATCH") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, options.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(options.body.size()));
  }
  if (options.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_slist* headers = nullptr;
  for (const auto& h : options.headers)
    headers = curl_slist_append(headers, h.c_str());
  if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  if (options.tls12_only) {
    curl_easy_setopt(curl, CURLOPT_SSLVERSION,
                     static_cast<long>(CURL_SSLVERSION_TLSv1_2) |
                         static_cast<long>(CURL_SSLVERSION_MAX_TLSv1_2));
  }
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
  HeaderContext header_ctx{curl, &out};
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &header_ctx);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  } else {
    out.error = curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return out;
}

RawTlsClient::RawTlsClient(const std::string& host, uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd_);
  ctx_ = ctx;
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    return;
  }
  ssl_ = ssl;
}

RawTlsClient::~RawTlsClient() {
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

bool RawTlsClient::send(const std::string& data) {
  if (ssl_ == nullptr) return false;
  return SSL_write(static_cast<SSL*>(ssl_), data.data(), static_cast<int>(data.size())) ==
         static_cast<int>(data.size());
}

std::string RawTlsClient::read_some(std::chrono::milliseconds limit, bool* closed,
                                    const std::string& until) {
  std::string out;
  if (closed != nullptr) *closed = false;
  if (ssl_ == nullptr) {
    if (closed != nullptr) *closed = true;
    return out;
  }
  auto* ssl = static_cast<SSL*>(ssl_);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  // Non-blocking while reading: readable bytes may be only a TLS 1.3 session ticket, after which
  // a blocking SSL_read would wait for application data past the deadline.
  const int flags = ::fcntl(fd_, F_GETFL);
  ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  struct Restore {
    int fd, flags;
    ~Restore() { ::fcntl(fd, F_SETFL, flags); }
  } restore{fd_, flags};
  for (;;) {
    if (SSL_pending(ssl) == 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return out;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out;
    }
    char buf[4096];
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) {
      const int err = SSL_get_error(ssl, n);
      if (err == SSL_ERROR_WANT_READ) continue;
      if (closed != nullptr) *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
    if (!until.empty() && out.find(until) != std::string::npos) return out;
  }
}

const std::map<std::string, std::string> kFastPasswordEnv = {
    {"HELM_IDENTITY_PASSWORD_OPSLIMIT", "1"}, {"HELM_IDENTITY_PASSWORD_MEMLIMIT_KIB", "8192"}};

int bootstrap_hub(const std::string& data_dir, const std::string& org, const std::string& email,
                  const std::string& password, std::string* output) {
  TempDir scratch("helm-bootstrap");
  const std::string out_file = scratch.file("out");
  std::string cmd;
  for (const auto& [k, v] : kFastPasswordEnv)
    cmd += k + "=" + v + " ";
  cmd += hub_binary() + " admin bootstrap --data-dir " + data_dir + " --org '" + org +
         "' --email " + email + " --password-stdin >" + out_file + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "w");
  std::fputs((password + "\n").c_str(), p);
  const int status = ::pclose(p);
  if (output != nullptr) *output = read_file(out_file);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_command(const std::string& command) {
  const int status = std::system(command.c_str());  // NOLINT(concurrency-mt-unsafe)
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

CliResult run_cli(const std::string& binary, const std::vector<std::string>& args,
                  const std::string& home, const std::string& input,
                  const std::map<std::string, std::string>& env) {
  static std::atomic<int> counter{0};
  const std::string base = home + "/run" + std::to_string(++counter);
  write_file(base + ".in", input);
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("HELM_", 0) == 0 || entry.rfind("HOME=", 0) == 0 ||
        entry.rfind("XDG_CONFIG_HOME=", 0) == 0)
      continue;
    envs.push_back(entry);
  }
  envs.push_back("HOME=" + home);
  for (const auto& [k, v] : env)
    envs.push_back(k + "=" + v);
  std::vector<char*> argv{const_cast<char*>(binary.c_str())};
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : envs)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string in = base + ".in", out = base + ".out", err = base + ".err";
  posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  CliResult r;
  if (posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data()) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string describe(const CliResult& r) {
  return "exit " + std::to_string(r.code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

}  // namespace helm::test
