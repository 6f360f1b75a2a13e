// The outbound HTTPS broker against real TLS servers on 127.0.0.1: the hub's own listener with a
// self-signed certificate for localhost, and a small in-test CONNECT proxy.
#include "helm/broker/http_broker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helm/core/task_pool.hpp"
#include "helm/http/router.hpp"
#include "helm/http/server.hpp"
#include "helm/http/tls_files.hpp"
#include "helm/metrics/registry.hpp"
#include "test_support.hpp"

namespace helm::broker {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct Outcome {
  helm_status status = HELM_STATUS_INTERNAL;
  std::optional<OutboundResponse> response;
  std::string message;
  std::thread::id thread;
};

// Collects completions; counts them so "exactly once" can be asserted.
class Collector {
 public:
  Completion completion() {
    return [this](helm_status status, OutboundResponse* response, std::string message) {
      std::lock_guard lock(mutex_);
      Outcome outcome{status, std::nullopt, std::move(message), std::this_thread::get_id()};
      if (response != nullptr) outcome.response = std::move(*response);
      outcomes_.push_back(std::move(outcome));
      changed_.notify_all();
    };
  }
  bool wait_for(std::size_t count, milliseconds limit = milliseconds(20'000)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return outcomes_.size() >= count; });
  }
  std::vector<Outcome> outcomes() {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return outcomes_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Outcome> outcomes_;
};

std::optional<std::string> header(const OutboundResponse& response, std::string_view name) {
  for (const auto& [n, v] : response.headers) {
    if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return v;
    }
  }
  return std::nullopt;
}

// A TCP port on 127.0.0.1 that nobody listens on (bound, then released).
std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// An HTTP CONNECT proxy on 127.0.0.1 that tunnels only to 127.0.0.1 and records what it saw.
class ConnectProxy {
 public:
  ConnectProxy() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~ConnectProxy() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : tunnels_)
      t.join();
    ::close(listen_fd_);
  }
  ConnectProxy(const ConnectProxy&) = delete;
  ConnectProxy& operator=(const ConnectProxy&) = delete;

  std::uint16_t port() const { return port_; }
  int tunnel_count() const { return tunnel_count_.load(); }
  std::vector<std::string> heads() {
    std::lock_guard lock(mutex_);
    return heads_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      tunnels_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int client) {
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return (void)::close(client);
      const ssize_t n = ::read(client, buf, sizeof buf);
      if (n <= 0) return (void)::close(client);
      head.append(buf, static_cast<std::size_t>(n));
    }
    {
      std::lock_guard lock(mutex_);
      heads_.push_back(head);
    }
    // "CONNECT localhost:PORT HTTP/1.1"
    const std::string prefix = "CONNECT localhost:";
    if (head.rfind(prefix, 0) != 0) {
      const std::string no = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
      (void)!::write(client, no.data(), no.size());
      return (void)::close(client);
    }
    const int port = std::stoi(head.substr(prefix.size()));
    const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      const std::string bad = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
      (void)!::write(client, bad.data(), bad.size());
      ::close(upstream);
      return (void)::close(client);
    }
    ++tunnel_count_;
    const std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    (void)!::write(client, ok.data(), ok.size());
    // Bytes after the head (a client that did not wait) go upstream first.
    const std::string rest = head.substr(head.find("\r\n\r\n") + 4);
    if (!rest.empty()) (void)!::write(upstream, rest.data(), rest.size());
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stop_) {
      if (::poll(fds, 2, 50) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          closed = true;
          break;
        }
        const int to = fds[1 - i].fd;
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) {
            closed = true;
            break;
          }
          off += w;
        }
      }
      if (closed) break;
    }
    ::close(upstream);
    ::close(client);
  }

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> tunnel_count_{0};
  std::thread acceptor_;
  std::vector<std::thread> tunnels_;  // touched by the acceptor thread only, joined after it
  std::mutex mutex_;
  std::vector<std::string> heads_;
};

// A one-connection TLS server that streams a chunked body of unknown length, so the broker's cap
// can only be enforced while the body arrives. Records how much it managed to send.
class StreamingTlsServer {
 public:
  StreamingTlsServer(const std::string& cert_file, const std::string& key_file,
                     std::size_t total_bytes)
      : total_(total_bytes) {
    ::signal(SIGPIPE, SIG_IGN);  // the client hangs up mid-body on purpose
    ctx_ = SSL_CTX_new(TLS_server_method());
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM), 1);
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~StreamingTlsServer() {
    thread_.join();
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
  }
  StreamingTlsServer(const StreamingTlsServer&) = delete;
  StreamingTlsServer& operator=(const StreamingTlsServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::size_t sent() const { return sent_.load(); }

 private:
  void serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) return;
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, fd);
    std::string head;
    char buf[4096];
    if (SSL_accept(ssl) == 1) {
      while (head.find("\r\n\r\n") == std::string::npos) {
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
      }
      const std::string start = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      bool ok = SSL_write(ssl, start.data(), static_cast<int>(start.size())) > 0;
      const std::string chunk = "4000\r\n" + std::string(0x4000, 'z') + "\r\n";
      while (ok && sent_ < total_) {
        ok = SSL_write(ssl, chunk.data(), static_cast<int>(chunk.size())) > 0;
        if (ok) sent_ += 0x4000;
      }
      if (ok) SSL_write(ssl, "0\r\n\r\n", 5);
    }
    SSL_free(ssl);
    ::close(fd);
  }

  std::size_t total_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> sent_{0};
  std::thread thread_;
};

class HttpBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tls = http::ensure_development_certificate(dir_.path());
    ASSERT_TRUE(tls.ok()) << tls.error().message;
    ca_pem_ = test::read_file(tls->cert_file);
    cert_file_ = tls->cert_file;
    key_file_ = tls->key_file;

    router_.add("GET", "/echo", echo());
    router_.add("POST", "/echo", echo());
    router_.add("PUT", "/echo", echo());
    router_.add("PATCH", "/echo", echo());
    router_.add("DELETE", "/echo", echo());
    router_.add("GET", "/big", [](http::Request&, http::Responder respond) {
      respond(http::Response::text(200, std::string(1u << 20, 'x')));
    });
    router_.add("GET", "/redirect", [](http::Request&, http::Responder respond) {
      auto response = http::Response::empty(302);
      response.headers.emplace_back("Location", "https://localhost/elsewhere");
      respond(std::move(response));
    });
    router_.add("GET", "/limited", [](http::Request&, http::Responder respond) {
      auto response = http::Response::json(429, R"({"error":"slow down"})");
      response.headers.emplace_back("Retry-After", "7");
      respond(std::move(response));
    });
    // Never answers by itself: the responder is kept until the test ends.
    router_.add("GET", "/slow", [this](http::Request&, http::Responder respond) {
      std::lock_guard lock(slow_mutex_);
      slow_.push_back(std::move(respond));
    });

    http::ServerOptions options;
    options.api.listen.host = "127.0.0.1";
    options.api.listen.port = 0;
    options.api.threads = 2;
    options.cert_file = tls->cert_file;
    options.key_file = tls->key_file;
    server_.emplace(options, router_, metrics_);
    auto port = server_->start();
    ASSERT_TRUE(port.ok()) << port.error().message;
    port_ = *port;
    base_ = "https://localhost:" + std::to_string(port_);
  }

  void TearDown() override {
    {
      std::lock_guard lock(slow_mutex_);
      slow_.clear();
    }
    if (server_) server_->stop();
  }

  static http::Handler echo() {
    return [](http::Request& request, http::Responder respond) {
      std::string body =
          request.method + "\n" + std::string(request.header("x-plugin").value_or("-")) + "\n" +
          std::string(request.header("content-type").value_or("-")) + "\n" + request.body;
      auto response = http::Response::text(201, std::move(body));
      response.headers.emplace_back("X-Reply", "yes");
      respond(std::move(response));
    };
  }

  // A request to the test server that the broker will accept.
  OutboundRequest request(const std::string& path, const std::string& method = "GET") {
    OutboundRequest r;
    r.method = method;
    r.url = base_ + path;
    r.allowed_hosts = {"localhost:" + std::to_string(port_)};
    r.ca_pem = ca_pem_;
    return r;
  }

  Outcome run(HttpBroker& broker, OutboundRequest r) {
    Collector collector;
    auto submitted = broker.submit(std::move(r), collector.completion());
    if (!submitted.ok()) {
      ADD_FAILURE() << "refused: " << submitted.message;
      return {};
    }
    EXPECT_TRUE(collector.wait_for(1));
    const auto outcomes = collector.outcomes();
    return outcomes.empty() ? Outcome{} : outcomes.front();
  }

  std::size_t slow_waiting() {
    std::lock_guard lock(slow_mutex_);
    return slow_.size();
  }

  test::TempDir dir_{"helm-broker"};
  std::string ca_pem_;
  std::string cert_file_;
  std::string key_file_;
  http::Router router_;
  metrics::Registry metrics_;
  std::optional<http::Server> server_;
  std::uint16_t port_ = 0;
  std::string base_;
  std::mutex slow_mutex_;
  std::vector<http::Responder> slow_;
};

TEST(HostAllowed, ExactNamesMatchCaseInsensitivelyOnTheDefaultPort) {
  const std::vector<std::string> allowed = {"api.example.com"};
  EXPECT_TRUE(host_allowed("api.example.com", 443, allowed));
  EXPECT_TRUE(host_allowed("API.Example.COM", 443, allowed));
  EXPECT_TRUE(host_allowed("api.example.com.", 443, allowed));
  EXPECT_FALSE(host_allowed("api.example.com", 8443, allowed));
  EXPECT_FALSE(host_allowed("x.api.example.com", 443, allowed));
  EXPECT_FALSE(host_allowed("api.example.com.evil.test", 443, allowed));
  EXPECT_FALSE(host_allowed("example.com", 443, allowed));
}

TEST(HostAllowed, WildcardMatchesSubdomainsButNotTheBareName) {
  const std::vector<std::string> allowed = {"*.example.com"};
  EXPECT_TRUE(host_allowed("a.example.com", 443, allowed));
  EXPECT_TRUE(host_allowed("a.b.example.com", 443, allowed));
  EXPECT_FALSE(host_allowed("example.com", 443, allowed));
  EXPECT_FALSE(host_allowed("badexample.com", 443, allowed));
  EXPECT_FALSE(host_allowed(".example.com", 443, allowed));
  EXPECT_FALSE(host_allowed("a.example.com", 8443, allowed));
}

TEST(HostAllowed, ExplicitPortIsTheOnlyPortAllowed) {
  const std::vector<std::string> allowed = {"login.acme.example:8443", "*.psa.example:9443"};
  EXPECT_TRUE(host_allowed("login.acme.example", 8443, allowed));
  EXPECT_FALSE(host_allowed("login.acme.example", 443, allowed));
  EXPECT_TRUE(host_allowed("eu.psa.example", 9443, allowed));
  EXPECT_FALSE(host_allowed("eu.psa.example", 443, allowed));
}

TEST(HostAllowed, MalformedPatternsMatchNothing) {
  for (const char* pattern : {"", "*", "*.", "**.example.com", "a.*.example.com", ":443",
                              "example.com:0", "example.com:70000", "example.com:", "x:y"}) {
    EXPECT_FALSE(host_allowed("example.com", 443, {pattern})) << pattern;
    EXPECT_FALSE(host_allowed("a.example.com", 443, {pattern})) << pattern;
  }
  EXPECT_FALSE(host_allowed("", 443, {"*.example.com"}));
}

TEST(HttpBrokerOptionsValidation, RejectsNonsense) {
  HttpBrokerOptions options;
  EXPECT_TRUE(validate_options(options).ok());
  options.proxy = "socks5://127.0.0.1:1080";
  EXPECT_FALSE(validate_options(options).ok());
  options.proxy = "127.0.0.1:3128";
  EXPECT_FALSE(validate_options(options).ok());
  options.proxy = "http://127.0.0.1:3128";
  EXPECT_TRUE(validate_options(options).ok());
  options.default_timeout = milliseconds(200'000);
  EXPECT_FALSE(validate_options(options).ok());
  EXPECT_THROW(HttpBroker{options}, std::invalid_argument);
}

TEST_F(HttpBrokerTest, GetRoundTripCarriesHeadersBothWays) {
  HttpBroker broker({});
  auto r = request("/echo");
  r.headers = {{"X-Plugin", "get-value"}, {"Accept", "text/plain"}};
  const auto outcome = run(broker, std::move(r));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  ASSERT_TRUE(outcome.response);
  EXPECT_EQ(outcome.response->status_code, 201);
  EXPECT_EQ(outcome.response->body, "GET\nget-value\n-\n");
  EXPECT_EQ(header(*outcome.response, "x-reply"), "yes");
  EXPECT_EQ(header(*outcome.response, "content-type"), "text/plain; charset=utf-8");
  EXPECT_TRUE(outcome.message.empty());
}

TEST_F(HttpBrokerTest, ObserverSeesEachFinishedRequestWithoutItsPath) {
  std::mutex mutex;
  std::vector<std::string> seen;
  HttpBrokerOptions options;
  options.observe = [&](const TransferRecord& record) {
    std::lock_guard lock(mutex);
    seen.push_back(std::string(record.method) + " " + std::string(record.host_port) + " " +
                   std::to_string(record.status) + " " + std::to_string(record.status_code) + " " +
                   std::to_string(record.response_bytes) +
                   (record.duration.count() > 0 ? " timed" : " untimed"));
  };
  HttpBroker broker(options);
  ASSERT_EQ(run(broker, request("/limited?api_key=secret")).status, HELM_STATUS_OK);
  auto slow = request("/slow");
  slow.timeout = milliseconds(100);
  ASSERT_EQ(run(broker, std::move(slow)).status, HELM_STATUS_TIMEOUT);
  std::lock_guard lock(mutex);
  const std::string where = "localhost:" + std::to_string(port_);
  EXPECT_EQ(seen, (std::vector<std::string>{"GET " + where + " 0 429 21 timed",
                                            "GET " + where + " 10 0 0 timed"}));
}

TEST_F(HttpBrokerTest, PostPutPatchDeleteSendTheirBodyAndMethod) {
  HttpBroker broker({});
  for (const std::string method : {"POST", "PUT", "PATCH", "DELETE"}) {
    auto r = request("/echo", method);
    r.headers = {{"Content-Type", "application/json"}, {"X-Plugin", method}};
    r.body = R"({"ticket":42})";
    const auto outcome = run(broker, std::move(r));
    ASSERT_EQ(outcome.status, HELM_STATUS_OK) << method << ": " << outcome.message;
    EXPECT_EQ(outcome.response->body,
              method + "\n" + method + "\napplication/json\n{\"ticket\":42}");
  }
}

TEST_F(HttpBrokerTest, PostWithoutContentTypeSendsNoneAndEmptyDeleteWorks) {
  HttpBroker broker({});
  auto post = request("/echo", "POST");
  post.body = "raw";
  auto outcome = run(broker, std::move(post));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->body, "POST\n-\n-\nraw");  // no form-urlencoded added by libcurl
  outcome = run(broker, request("/echo", "DELETE"));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->body, "DELETE\n-\n-\n");
}

TEST_F(HttpBrokerTest, HeadReturnsHeadersWithoutBody) {
  HttpBroker broker({});
  const auto outcome = run(broker, request("/echo", "HEAD"));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->status_code, 201);
  EXPECT_TRUE(outcome.response->body.empty());
  EXPECT_EQ(header(*outcome.response, "x-reply"), "yes");
}

TEST_F(HttpBrokerTest, UndeclaredHostIsForbiddenWithoutConnecting) {
  Collector collector;
  HttpBroker broker({});
  auto r = request("/echo");
  r.allowed_hosts = {"api.example.com", "*.localhost"};
  const auto result = broker.submit(std::move(r), collector.completion());
  EXPECT_EQ(result.status, HELM_STATUS_FORBIDDEN);
  EXPECT_EQ(result.id, 0u);
  EXPECT_NE(result.message.find("localhost:" + std::to_string(port_)), std::string::npos)
      << result.message;
  EXPECT_NE(result.message.find("capabilities.outbound_hosts"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(collector.count(), 0u);
  EXPECT_EQ(server_->stats().connections_accepted, 0u);
}

TEST_F(HttpBrokerTest, DeclaredNameOnAnotherPortIsForbidden) {
  Collector collector;
  HttpBroker broker({});
  auto r = request("/echo");
  r.allowed_hosts = {"localhost", "localhost:" + std::to_string(port_ == 1 ? 2 : port_ - 1)};
  EXPECT_EQ(broker.submit(std::move(r), collector.completion()).status, HELM_STATUS_FORBIDDEN);
  r = request("/echo");
  r.allowed_hosts = {"LOCALHOST:" + std::to_string(port_)};
  EXPECT_EQ(run(broker, std::move(r)).status, HELM_STATUS_OK);
}

TEST_F(HttpBrokerTest, MalformedRequestsAreRefusedAsInvalidInput) {
  Collector collector;
  HttpBroker broker({});
  auto refused = [&](OutboundRequest r) {
    return broker.submit(std::move(r), collector.completion());
  };
  auto with = [&](auto change) {
    auto r = request("/echo");
    change(r);
    return refused(std::move(r));
  };
  auto http =
      with([&](OutboundRequest& r) { r.url = "http://localhost:" + std::to_string(port_); });
  EXPECT_EQ(http.status, HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(http.message.find("https"), std::string::npos);
  EXPECT_EQ(with([&](OutboundRequest& r) {
              r.url = "https://user:pw@localhost:" + std::to_string(port_) + "/echo";
            }).status,
            HELM_STATUS_INVALID_INPUT);
  const auto unicode = with([](OutboundRequest& r) {
    r.url =
        "https://b\xC3\xBC"
        "cher.example/";
    r.allowed_hosts = {
        "b\xC3\xBC"
        "cher.example",
        "xn--bcher-kva.example"};
  });
  EXPECT_EQ(unicode.status, HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(unicode.message.find('\n'), std::string::npos);
  const auto injected = with([](OutboundRequest& r) { r.headers = {{"X-A\r\nX-B", "v"}}; });
  EXPECT_EQ(injected.message.find('\n'), std::string::npos) << injected.message;
  EXPECT_EQ(with([&](OutboundRequest& r) { r.url = "localhost/echo"; }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([&](OutboundRequest& r) { r.url += " x"; }).status, HELM_STATUS_INVALID_INPUT);
  for (const char* method : {"get", "TRACE", "CONNECT", "OPTIONS", ""}) {
    EXPECT_EQ(with([&](OutboundRequest& r) { r.method = method; }).status,
              HELM_STATUS_INVALID_INPUT)
        << method;
  }
  for (const char* name : {"Host", "content-length", "CONNECTION", "Transfer-Encoding"}) {
    const auto result = with([&](OutboundRequest& r) { r.headers = {{name, "x"}}; });
    EXPECT_EQ(result.status, HELM_STATUS_INVALID_INPUT) << name;
    EXPECT_NE(result.message.find(name), std::string::npos) << result.message;
  }
  EXPECT_EQ(with([](OutboundRequest& r) {
              r.headers = {{"X-A", "v\r\nX-Injected: 1"}};
            }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([](OutboundRequest& r) {
              r.headers = {{"X-A", "v\nw"}};
            }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([](OutboundRequest& r) {
              r.headers = {{"X-A\r\nX-B", "v"}};
            }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([](OutboundRequest& r) {
              r.headers = {{"X A", "v"}};
            }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([](OutboundRequest& r) {
              r.method = "HEAD";
              r.body = "x";
            }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(with([](OutboundRequest& r) { r.ca_pem = "not a certificate"; }).status,
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(broker.submit(request("/echo"), nullptr).status, HELM_STATUS_INVALID_INPUT);
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(collector.count(), 0u);
  EXPECT_EQ(broker.in_flight(), 0u);
}

TEST_F(HttpBrokerTest, OversizedRequestBodyIsRefused) {
  HttpBrokerOptions options;
  options.max_request_body = 1024;
  Collector collector;
  HttpBroker broker(options);
  auto r = request("/echo", "POST");
  r.body = std::string(1025, 'b');
  const auto result = broker.submit(std::move(r), collector.completion());
  EXPECT_EQ(result.status, HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(result.message.find("1024"), std::string::npos);
}

TEST_F(HttpBrokerTest, UntrustedCertificateFailsVerification) {
  HttpBroker broker({});
  auto r = request("/echo");
  r.ca_pem.clear();  // the system store does not know the test's self-signed certificate
  const auto outcome = run(broker, std::move(r));
  EXPECT_EQ(outcome.status, HELM_STATUS_UPSTREAM_UNAVAILABLE);
  EXPECT_FALSE(outcome.response);
  EXPECT_NE(outcome.message.find("verification"), std::string::npos) << outcome.message;
  EXPECT_NE(outcome.message.find("localhost:" + std::to_string(port_)), std::string::npos);
}

TEST_F(HttpBrokerTest, TrustForOneRequestIsNotInheritedThroughConnectionReuse) {
  HttpBroker broker({});
  ASSERT_EQ(run(broker, request("/echo")).status, HELM_STATUS_OK);  // connection now cached
  auto r = request("/echo");
  r.ca_pem.clear();
  EXPECT_EQ(run(broker, std::move(r)).status, HELM_STATUS_UPSTREAM_UNAVAILABLE);
  EXPECT_EQ(run(broker, request("/echo")).status, HELM_STATUS_OK);
}

TEST_F(HttpBrokerTest, ConnectionsAreReused) {
  HttpBroker broker({});
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(run(broker, request("/echo")).status, HELM_STATUS_OK);
  EXPECT_EQ(server_->stats().connections_accepted, 1u);
}

TEST_F(HttpBrokerTest, SlowServerTimesOutWithinBounds) {
  HttpBroker broker({});
  auto r = request("/slow");
  r.timeout = milliseconds(300);
  const auto start = steady_clock::now();
  const auto outcome = run(broker, std::move(r));
  const auto elapsed = steady_clock::now() - start;
  EXPECT_EQ(outcome.status, HELM_STATUS_TIMEOUT) << outcome.message;
  EXPECT_GE(elapsed, milliseconds(280));
  EXPECT_LT(elapsed, milliseconds(3000));
  EXPECT_NE(outcome.message.find("300 ms"), std::string::npos) << outcome.message;
}

TEST_F(HttpBrokerTest, RequestTimeoutIsCappedByTheBroker) {
  HttpBrokerOptions options;
  options.default_timeout = milliseconds(200);
  options.max_timeout = milliseconds(400);
  HttpBroker broker(options);
  auto r = request("/slow");
  r.timeout = std::chrono::hours(1);
  const auto start = steady_clock::now();
  EXPECT_EQ(run(broker, std::move(r)).status, HELM_STATUS_TIMEOUT);
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
}

TEST_F(HttpBrokerTest, ResponseOverTheCapIsResourceExhausted) {
  HttpBrokerOptions options;
  options.max_response_bytes = 64 * 1024;
  HttpBroker broker(options);
  const auto outcome = run(broker, request("/big"));
  EXPECT_EQ(outcome.status, HELM_STATUS_RESOURCE_EXHAUSTED) << outcome.message;
  EXPECT_FALSE(outcome.response);
  EXPECT_NE(outcome.message.find("65536"), std::string::npos) << outcome.message;
  // HEAD announces the large size but carries no body: nothing to refuse.
  const auto head = run(broker, request("/big", "HEAD"));
  ASSERT_EQ(head.status, HELM_STATUS_OK) << head.message;
  EXPECT_EQ(header(*head.response, "content-length"), std::to_string(1u << 20));
  options.max_response_bytes = 2u << 20;
  HttpBroker roomy(options);
  const auto fits = run(roomy, request("/big"));
  ASSERT_EQ(fits.status, HELM_STATUS_OK) << fits.message;
  EXPECT_EQ(fits.response->body.size(), 1u << 20);
}

TEST_F(HttpBrokerTest, StreamedResponseIsAbortedOnceItPassesTheCap) {
  constexpr std::size_t kOffered = 64u << 20;
  StreamingTlsServer streaming(cert_file_, key_file_, kOffered);
  HttpBrokerOptions options;
  options.max_response_bytes = 64 * 1024;
  HttpBroker broker(options);
  OutboundRequest r;
  r.method = "GET";
  r.url = "https://localhost:" + std::to_string(streaming.port()) + "/export";
  r.allowed_hosts = {"localhost:" + std::to_string(streaming.port())};
  r.ca_pem = ca_pem_;
  const auto outcome = run(broker, std::move(r));
  EXPECT_EQ(outcome.status, HELM_STATUS_RESOURCE_EXHAUSTED) << outcome.message;
  EXPECT_FALSE(outcome.response);
  EXPECT_NE(outcome.message.find("larger than the host allows"), std::string::npos);
  broker.shutdown();
  // The broker hung up early: far less than the server offered went out (socket buffers only).
  EXPECT_LT(streaming.sent(), kOffered / 4);
}

TEST_F(HttpBrokerTest, RedirectIsReturnedNotFollowed) {
  HttpBroker broker({});
  const auto outcome = run(broker, request("/redirect"));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->status_code, 302);
  EXPECT_EQ(header(*outcome.response, "location"), "https://localhost/elsewhere");
}

TEST_F(HttpBrokerTest, RateLimitPassesThroughWithRetryAfter) {
  HttpBroker broker({});
  const auto outcome = run(broker, request("/limited"));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->status_code, 429);
  EXPECT_EQ(header(*outcome.response, "Retry-After"), "7");
  EXPECT_EQ(outcome.response->body, R"({"error":"slow down"})");
}

TEST_F(HttpBrokerTest, ConnectionRefusedIsUpstreamUnavailableOffTheCallersThread) {
  HttpBroker broker({});
  const std::uint16_t closed = unused_port();
  OutboundRequest r;
  r.method = "GET";
  r.url = "https://localhost:" + std::to_string(closed) + "/";
  r.allowed_hosts = {"localhost:" + std::to_string(closed)};
  const auto outcome = run(broker, std::move(r));
  EXPECT_EQ(outcome.status, HELM_STATUS_UPSTREAM_UNAVAILABLE) << outcome.message;
  EXPECT_NE(outcome.message.find("localhost:" + std::to_string(closed)), std::string::npos);
  EXPECT_NE(outcome.thread, std::this_thread::get_id());
}

TEST_F(HttpBrokerTest, CancelCompletesOnceWithCancelled) {
  Collector collector;
  HttpBroker broker({});
  const auto submitted = broker.submit(request("/slow"), collector.completion());
  ASSERT_TRUE(submitted.ok()) << submitted.message;
  EXPECT_NE(submitted.id, 0u);
  const auto deadline = steady_clock::now() + milliseconds(5000);
  while (slow_waiting() == 0 && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(5));
  broker.cancel(submitted.id);
  ASSERT_TRUE(collector.wait_for(1));
  broker.cancel(submitted.id);
  broker.cancel(987654);
  std::this_thread::sleep_for(milliseconds(200));
  const auto outcomes = collector.outcomes();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, HELM_STATUS_CANCELLED);
  EXPECT_FALSE(outcomes[0].response);
  EXPECT_EQ(broker.in_flight(), 0u);
}

TEST_F(HttpBrokerTest, CancelOwnerCancelsOnlyThatOwnersRequests) {
  Collector stopping;
  Collector other;
  HttpBroker broker({});
  for (int i = 0; i < 3; ++i) {
    auto r = request("/slow");
    r.owner = 7;
    ASSERT_TRUE(broker.submit(std::move(r), stopping.completion()).ok());
  }
  auto r = request("/slow");
  r.owner = 8;
  const auto kept = broker.submit(std::move(r), other.completion());
  ASSERT_TRUE(kept.ok());
  broker.cancel_owner(7);
  ASSERT_TRUE(stopping.wait_for(3));
  for (const auto& outcome : stopping.outcomes())
    EXPECT_EQ(outcome.status, HELM_STATUS_CANCELLED);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(other.count(), 0u);
  EXPECT_EQ(broker.in_flight(), 1u);
  broker.cancel(kept.id);
  ASSERT_TRUE(other.wait_for(1));
  EXPECT_EQ(stopping.count(), 3u);
}

TEST_F(HttpBrokerTest, TwoHundredConcurrentRequestsEachCompleteExactlyOnce) {
  TaskPool pool(4);
  HttpBrokerOptions options;
  options.dispatch = [&pool](std::function<void()> task) { pool.post(std::move(task)); };
  std::mutex mutex;
  std::map<std::string, int> seen;
  std::set<std::thread::id> threads;
  std::atomic<int> done{0};
  std::atomic<int> ok{0};
  HttpBroker broker(options);  // after what its completions touch: destroyed before them
  constexpr int kRequests = 200;
  std::atomic<bool> sampling{true};
  std::atomic<std::uint64_t> peak_open{0};
  std::thread sampler([&] {
    while (sampling) {
      const std::uint64_t now = server_->stats().connections_open;
      if (now > peak_open) peak_open = now;
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  for (int i = 0; i < kRequests; ++i) {
    auto r = request("/echo", "POST");
    r.body = "n=" + std::to_string(i);
    const auto submitted = broker.submit(
        std::move(r), [&](helm_status status, OutboundResponse* response, std::string) {
          std::lock_guard lock(mutex);
          if (status == HELM_STATUS_OK) {
            ++ok;
            ++seen[response->body];
          }
          threads.insert(std::this_thread::get_id());
          ++done;
        });
    ASSERT_TRUE(submitted.ok()) << submitted.message;
  }
  const auto deadline = steady_clock::now() + milliseconds(60'000);
  while (done.load() < kRequests && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(10));
  std::this_thread::sleep_for(milliseconds(200));
  sampling = false;
  sampler.join();
  EXPECT_EQ(done.load(), kRequests);
  EXPECT_EQ(ok.load(), kRequests);
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kRequests));
  for (const auto& [body, count] : seen)
    EXPECT_EQ(count, 1) << body;
  EXPECT_LE(peak_open.load(), 8u);  // per-host connection limit
  EXPECT_GT(peak_open.load(), 1u);  // and the requests did run in parallel
  RecordProperty("connections_accepted", std::to_string(server_->stats().connections_accepted));
  EXPECT_EQ(broker.in_flight(), 0u);
  broker.shutdown();
  pool.stop();
}

TEST_F(HttpBrokerTest, CancelRacingCompletionStillCompletesEachRequestOnce) {
  std::mutex mutex;
  std::map<std::uint64_t, std::vector<helm_status>> outcomes;
  std::vector<std::uint64_t> ids;
  HttpBroker broker({});
  for (int i = 0; i < 100; ++i) {
    auto id = std::make_shared<std::uint64_t>(0);
    std::unique_lock lock(mutex);  // the completion may run before *id is set otherwise
    const auto submitted =
        broker.submit(request("/echo"),
                      [&mutex, &outcomes, id](helm_status status, OutboundResponse*, std::string) {
                        std::lock_guard inner(mutex);
                        outcomes[*id].push_back(status);
                      });
    ASSERT_TRUE(submitted.ok()) << submitted.message;
    *id = submitted.id;
    ids.push_back(submitted.id);
    lock.unlock();
    if (i % 3 != 0) broker.cancel(submitted.id);
  }
  const auto deadline = steady_clock::now() + milliseconds(20'000);
  while (broker.in_flight() > 0 && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(5));
  for (const auto id : ids)
    broker.cancel(id);  // all finished: nothing may happen any more
  std::this_thread::sleep_for(milliseconds(200));
  std::lock_guard lock(mutex);
  ASSERT_EQ(outcomes.size(), ids.size());
  for (const auto& [id, statuses] : outcomes) {
    ASSERT_EQ(statuses.size(), 1u) << "request " << id;
    EXPECT_TRUE(statuses[0] == HELM_STATUS_OK || statuses[0] == HELM_STATUS_CANCELLED);
  }
}

TEST_F(HttpBrokerTest, CompletionMaySubmitTheNextRequest) {
  Collector second;
  std::promise<SubmitResult> chained;
  HttpBroker broker({});
  auto first =
      broker.submit(request("/limited"), [&](helm_status status, OutboundResponse*, std::string) {
        ASSERT_EQ(status, HELM_STATUS_OK);
        chained.set_value(broker.submit(request("/echo"), second.completion()));
      });
  ASSERT_TRUE(first.ok());
  auto future = chained.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(future.get().ok());
  ASSERT_TRUE(second.wait_for(1));
  EXPECT_EQ(second.outcomes()[0].status, HELM_STATUS_OK);
}

TEST_F(HttpBrokerTest, InFlightLimitRefusesBeyondIt) {
  HttpBrokerOptions options;
  options.max_in_flight = 2;
  Collector collector;
  HttpBroker broker(options);
  ASSERT_TRUE(broker.submit(request("/slow"), collector.completion()).ok());
  ASSERT_TRUE(broker.submit(request("/slow"), collector.completion()).ok());
  const auto third = broker.submit(request("/slow"), collector.completion());
  EXPECT_EQ(third.status, HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_EQ(broker.in_flight(), 2u);
}

TEST_F(HttpBrokerTest, PerOwnerLimitLeavesRoomForOtherPlugins) {
  HttpBrokerOptions options;
  options.max_in_flight_per_owner = 2;
  Collector collector;
  HttpBroker broker(options);
  auto slow_for = [&](std::uint64_t owner) {
    auto r = request("/slow");
    r.owner = owner;
    return broker.submit(std::move(r), collector.completion());
  };
  ASSERT_TRUE(slow_for(1).ok());
  const auto second = slow_for(1);
  ASSERT_TRUE(second.ok());
  const auto third = slow_for(1);
  EXPECT_EQ(third.status, HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(third.message.find("this plugin"), std::string::npos);
  EXPECT_TRUE(slow_for(2).ok());
  broker.cancel(second.id);
  ASSERT_TRUE(collector.wait_for(1));
  EXPECT_TRUE(slow_for(1).ok());  // the slot came back
}

TEST_F(HttpBrokerTest, ShutdownCancelsEverythingInFlightAndRefusesMore) {
  Collector collector;
  HttpBroker broker({});
  constexpr std::size_t kRequests = 20;
  for (std::size_t i = 0; i < kRequests; ++i)
    ASSERT_TRUE(broker.submit(request("/slow"), collector.completion()).ok());
  std::this_thread::sleep_for(milliseconds(100));
  broker.shutdown();
  // Completions run on the broker thread by default, so all of them ran before the join.
  EXPECT_EQ(collector.count(), kRequests);
  for (const auto& outcome : collector.outcomes())
    EXPECT_EQ(outcome.status, HELM_STATUS_CANCELLED);
  const auto late = broker.submit(request("/echo"), collector.completion());
  EXPECT_EQ(late.status, HELM_STATUS_UNAVAILABLE);
  broker.cancel(1);
  broker.shutdown();
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(collector.count(), kRequests);
  EXPECT_EQ(broker.in_flight(), 0u);
}

TEST_F(HttpBrokerTest, ProxyTunnelsTheRequestWithoutSeeingPluginHeaders) {
  ConnectProxy proxy;
  HttpBrokerOptions options;
  options.proxy = "http://127.0.0.1:" + std::to_string(proxy.port());
  HttpBroker broker(options);
  auto r = request("/echo");
  r.headers = {{"Authorization", "Bearer vendor-secret"}, {"X-Plugin", "via-proxy"}};
  const auto outcome = run(broker, std::move(r));
  ASSERT_EQ(outcome.status, HELM_STATUS_OK) << outcome.message;
  EXPECT_EQ(outcome.response->body, "GET\nvia-proxy\n-\n");
  EXPECT_EQ(outcome.response->status_code, 201);
  EXPECT_TRUE(header(*outcome.response, "x-reply"));
  EXPECT_EQ(proxy.tunnel_count(), 1);
  const auto heads = proxy.heads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].rfind("CONNECT localhost:" + std::to_string(port_) + " ", 0), 0u);
  EXPECT_EQ(heads[0].find("vendor-secret"), std::string::npos);
  EXPECT_EQ(heads[0].find("via-proxy"), std::string::npos);
}

TEST_F(HttpBrokerTest, ProxyIsNotTakenFromTheEnvironmentUnlessAsked) {
  ConnectProxy proxy;
  const std::string url = "http://127.0.0.1:" + std::to_string(proxy.port());
  ::unsetenv("NO_PROXY");  // a runner's NO_PROXY=localhost would bypass the proxy under test
  ::unsetenv("no_proxy");
  ::setenv("HTTPS_PROXY", url.c_str(), 1);
  ::setenv("https_proxy", url.c_str(), 1);
  {
    HttpBroker broker({});
    EXPECT_EQ(run(broker, request("/echo")).status, HELM_STATUS_OK);
    EXPECT_EQ(proxy.tunnel_count(), 0);
    HttpBrokerOptions options;
    options.proxy_from_environment = true;
    HttpBroker from_env(options);
    EXPECT_EQ(run(from_env, request("/echo")).status, HELM_STATUS_OK);
    EXPECT_EQ(proxy.tunnel_count(), 1);
  }
  ::unsetenv("HTTPS_PROXY");
  ::unsetenv("https_proxy");
}

}  // namespace
}  // namespace helm::broker
