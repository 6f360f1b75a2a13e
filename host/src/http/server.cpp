#include "helm/http/server.hpp"

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "helm/http/problem.hpp"
#include "helm/http/router.hpp"
#include "helm/log/logger.hpp"
#include "helm/metrics/registry.hpp"

namespace helm::http {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;

namespace {
class Session;
}

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(ServerOptions o, const Router& r, metrics::Registry& m)
      : options(std::move(o)), router(r), metrics(m) {}

  void accept();
  /// Stops accepting and closes connections: idle ones (drain) or all of them (force).
  void close_listener_and_visit_sessions(bool force);
  void register_session(Session* s, const std::shared_ptr<Session>& sp);
  void unregister_session(Session* s);

  ServerOptions options;
  const Router& router;
  metrics::Registry& metrics;
  net::io_context ioc;
  net::ssl::context ssl{net::ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  net::steady_timer accept_backoff{ioc};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<bool> draining{false};
  std::mutex sessions_mutex;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::atomic<uint64_t> open{0}, accepted{0}, refused{0}, handshake_failures{0}, timeouts{0};
};

namespace {

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket), server->ssl), server_(std::move(server)) {
    beast::error_code ec;
    const auto endpoint = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) {
      remote_ = endpoint.address().to_string();
      auto addr = endpoint.address();
      if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
      }
      loopback_ = addr.is_loopback();
    }
    beast::get_lowest_layer(stream_).socket().set_option(tcp::no_delay(true), ec);
  }

  ~Session() {
    server_->unregister_session(this);
    server_->open.fetch_sub(1);
  }

  void start() {
    server_->register_session(this, shared_from_this());
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->handshake(); });
  }

  // Run on the session's strand.
  void on_drain() {
    if (state_ == State::kIdle) close();
  }
  void force_close() { close(); }

  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  enum class State { kHandshake, kIdle, kReading, kBusy, kWriting, kClosing };

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void handshake() {
    state_ = State::kHandshake;
    lowest().expires_after(milliseconds(server_->options.api.header_timeout_ms));
    stream_.async_handshake(net::ssl::stream_base::server, [self = shared_from_this()](
                                                               beast::error_code ec) {
      if (ec) {
        ++self->server_->handshake_failures;
        log::debug("TLS handshake failed", {{"remote", self->remote_}, {"error", ec.message()}});
        return self->close();
      }
      self->wait_for_request();
    });
  }

  void wait_for_request() {
    if (server_->draining) return graceful_close();
    state_ = State::kIdle;
    if (buffer_.size() > 0) return read_header();
    lowest().expires_after(milliseconds(server_->options.api.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              if (ec) return self->close();
                              self->read_header();
                            });
  }

  void read_header() {
    state_ = State::kReading;
    parser_.emplace();
    parser_->header_limit(server_->options.api.max_header_bytes);
    body_limit_ = server_->options.api.max_body_bytes;
    // Beast checks Content-Length against the limit while parsing the head: allow the largest
    // any route takes; the request's own limit is applied once its route is known.
    parser_->body_limit(std::max<std::uint64_t>(body_limit_, server_->router.max_body_limit()));
    // The whole head must arrive within the header timeout: a client trickling bytes is cut off.
    lowest().expires_after(milliseconds(server_->options.api.header_timeout_ms));
    bhttp::async_read_header(
        stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->fail_read(ec);
          // The head was read with the largest limit of any route;
          // now the limit of this request's route (or the default).
          const auto& head = self->parser_->get();
          const std::string_view target = head.target();
          auto rule = self->server_->router.body_rule(head.method_string(),
                                                      target.substr(0, target.find('?')));
          if (rule.limit > 0) self->body_limit_ = rule.limit;
          const auto length = self->parser_->content_length();
          if (length && *length > self->body_limit_) {
            return self->fail_read(bhttp::error::body_limit);
          }
          self->parser_->body_limit(self->body_limit_);
          // More than the server-wide limit may come: the route's gate
          // decides first whether this caller may send that much.
          const std::uint64_t usual = self->server_->options.api.max_body_bytes;
          const bool large = length ? *length > usual : self->parser_->chunked();
          if (large && rule.gate) return self->ask_gate(rule.gate);
          self->read_body();
        });
  }

  void ask_gate(const BodyGate& gate) {
    Request head;
    fill_head(head);
    auto match = server_->router.match(head.method, head.path);
    head.route = match.pattern;
    head.path_params = std::move(match.params);
    // For the metrics of a refusal; dispatch_request sets them again if the body is read.
    method_ = head.method;
    route_ = match.handler != nullptr ? match.pattern : std::string("(unmatched)");
    started_ = std::chrono::steady_clock::now();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    BodyDecision decide = [self = shared_from_this(), answered](std::optional<Response> refusal) {
      if (answered->exchange(true)) return;
      net::post(self->stream_.get_executor(),
                [self, refusal = std::move(refusal)]() mutable { self->after_gate(refusal); });
    };
    try {
      gate(head, decide);
    } catch (const std::exception& e) {
      log::error("body gate threw", {{"error", e.what()}});
      decide(internal_error());
    }
  }

  void after_gate(std::optional<Response>& refusal) {
    if (!refusal) return read_body();
    // The body stays unread, so the connection cannot be used again.
    write(std::move(*refusal), false);
  }

  void read_body() {
    lowest().expires_after(milliseconds(server_->options.api.body_timeout_ms));
    // A client that asked "Expect: 100-continue" waits for this before sending the body (curl
    // does for large uploads, else it waits a second); a refusal went out instead of it.
    const auto& head = parser_->get();
    const auto expect = head[bhttp::field::expect];
    if (!parser_->is_done() && beast::iequals(expect, "100-continue")) {
      continue_.emplace(bhttp::status::continue_, 11);
      return bhttp::async_write(stream_, *continue_,
                                [self = shared_from_this()](beast::error_code ec, size_t) {
                                  self->continue_.reset();
                                  if (ec) return self->close();
                                  self->read_body_now();
                                });
    }
    read_body_now();
  }

  void read_body_now() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->fail_read(ec);
                        self->dispatch_request();
                      });
  }

  void fail_read(const beast::error_code& ec) {
    method_ = parser_ && parser_->is_header_done() ? std::string(parser_->get().method_string())
                                                   : std::string("-");
    route_ = "(none)";
    started_ = std::chrono::steady_clock::now();
    if (ec == bhttp::error::body_limit) {
      return write(payload_too_large(body_limit_), false);
    }
    if (ec == bhttp::error::header_limit) {
      return write(problem(431, "headers-too-large", "Request Header Fields Too Large",
                           "The request head is larger than " +
                               std::to_string(server_->options.api.max_header_bytes) + " bytes."),
                   false);
    }
    if (ec == beast::error::timeout) {
      ++server_->timeouts;
      log::debug("request read timed out", {{"remote", remote_}});
      return close();
    }
    if (is_parse_error(ec)) {
      return write(bad_request("The request is not valid HTTP/1.1: " + ec.message() + "."), false);
    }
    close();
  }

  // Everything of the request but its body and what the router fills in.
  void fill_head(Request& out) const {
    const auto& msg = parser_->get();
    out.method = std::string(msg.method_string());
    out.target = std::string(msg.target());
    const auto q = out.target.find('?');
    out.path = out.target.substr(0, q);
    if (q != std::string::npos) out.query = out.target.substr(q + 1);
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (auto& ch : name)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      out.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    out.remote_address = remote_;
    out.remote_is_loopback = loopback_;
  }

  void dispatch_request() {
    state_ = State::kBusy;
    started_ = std::chrono::steady_clock::now();
    auto& msg = parser_->get();
    request_ = Request{};
    fill_head(request_);
    request_.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    method_ = request_.method;

    auto match = server_->router.match(request_.method, request_.path);
    if (match.handler == nullptr) {
      route_ = "(unmatched)";
      return write(
          match.allowed_methods.empty() ? not_found() : method_not_allowed(match.allowed_methods),
          keep_alive_);
    }
    route_ = match.pattern;
    request_.route = match.pattern;
    request_.path_params = std::move(match.params);

    auto answered = std::make_shared<std::atomic<bool>>(false);
    Responder respond = [self = shared_from_this(), answered](Response response) {
      if (answered->exchange(true)) return;
      net::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response), self->keep_alive_);
      });
    };
    try {
      (*match.handler)(request_, respond);
    } catch (const std::exception& e) {
      log::error("route handler threw", {{"route", route_}, {"error", e.what()}});
      respond(internal_error());
    }
  }

  void write(Response response, bool keep_alive) {
    state_ = State::kWriting;
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_);
    server_->metrics.observe_request(route_, method_, response.status, elapsed.count());
    keep_alive = keep_alive && !server_->draining;
    auto& res = response_.emplace(static_cast<bhttp::status>(response.status), 11);
    res.set(bhttp::field::server, "helm-hub");
    if (!response.content_type.empty()) res.set(bhttp::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers)
      res.set(name, value);
    const bool head = method_ == "HEAD";
    res.body() = head ? std::string() : std::move(response.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    if (head) res.content_length(response.body.size());
    lowest().expires_after(milliseconds(server_->options.api.body_timeout_ms));
    bhttp::async_write(stream_, res,
                       [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                         self->response_.reset();
                         if (ec) return self->close();
                         if (!keep_alive) return self->linger_then_close();
                         self->wait_for_request();
                       });
  }

  // After an error answer the client may still be sending (an oversized body): read and drop
  // for a moment so closing does not reset the connection before the client reads the answer.
  void linger_then_close() {
    state_ = State::kClosing;
    lowest().expires_after(milliseconds(1000));
    discard_more();
  }

  void discard_more() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(16384),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->discarded_ += n;
                              if (ec || self->discarded_ > (8u << 20))
                                return self->graceful_close();
                              self->discard_more();
                            });
  }

  void graceful_close() {
    state_ = State::kClosing;
    lowest().expires_after(milliseconds(1000));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->close(); });
  }

  void close() {
    state_ = State::kClosing;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;  // "100 Continue" being written
  std::shared_ptr<Server::Impl> server_;
  beast::flat_buffer buffer_{16384};
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::string_body>> response_;
  Request request_;
  std::string remote_;
  bool loopback_ = false;
  bool keep_alive_ = true;
  std::uint64_t body_limit_ = 0;  // of the request being read
  std::string method_;
  std::string route_;
  std::chrono::steady_clock::time_point started_;
  size_t discarded_ = 0;
  State state_ = State::kHandshake;
};

}  // namespace

void Server::Impl::register_session(Session* s, const std::shared_ptr<Session>& sp) {
  std::lock_guard lock(sessions_mutex);
  sessions[s] = sp;
}

void Server::Impl::unregister_session(Session* s) {
  std::lock_guard lock(sessions_mutex);
  sessions.erase(s);
}

void Server::Impl::accept() {
  acceptor.async_accept(
      net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !self->acceptor.is_open()) return;
        if (ec) {
          // Out of file descriptors and the like: back off instead of spinning.
          log::warn("accept failed", {{"error", ec.message()}});
          self->accept_backoff.expires_after(milliseconds(100));
          self->accept_backoff.async_wait([self](beast::error_code) { self->accept(); });
          return;
        }
        if (self->open.load() >= self->options.api.max_connections) {
          ++self->refused;
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          ++self->open;
          ++self->accepted;
          std::make_shared<Session>(std::move(socket), self)->start();
        }
        self->accept();
      });
}

Server::Server(ServerOptions options, const Router& router, metrics::Registry& metrics)
    : impl_(std::make_shared<Impl>(std::move(options), router, metrics)) {}

Server::~Server() {
  stop();
}

Expected<uint16_t> Server::start() {
  auto& ctx = impl_->ssl;
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_compression);
  beast::error_code ec;
  ctx.use_certificate_chain_file(impl_->options.cert_file, ec);
  if (ec) {
    return Error{"cannot load TLS certificate '" + impl_->options.cert_file + "': " + ec.message()};
  }
  ctx.use_private_key_file(impl_->options.key_file, net::ssl::context::pem, ec);
  if (ec) return Error{"cannot load TLS key '" + impl_->options.key_file + "': " + ec.message()};
  if (SSL_CTX_check_private_key(native) != 1) {
    return Error{"TLS key '" + impl_->options.key_file + "' does not match the certificate"};
  }

  const auto& listen = impl_->options.api.listen;
  auto address = net::ip::make_address(listen.host, ec);
  if (ec) return Error{"api.listen host '" + listen.host + "' is not an IP address"};
  tcp::endpoint endpoint(address, listen.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error{"cannot listen on " + listen.host + ":" + std::to_string(listen.port) + ": " +
                 ec.message()};
  }
  const uint16_t port = acceptor.local_endpoint().port();
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->accept();
  for (uint32_t i = 0; i < impl_->options.api.threads; ++i) {
    impl_->threads.emplace_back([impl = impl_] { impl->ioc.run(); });
  }
  return port;
}

void Server::Impl::close_listener_and_visit_sessions(bool force) {
  draining = true;
  net::post(ioc, [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor.close(ec);
    self->accept_backoff.cancel();
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(sessions_mutex);
    for (auto& [raw, weak] : sessions) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) {
    net::post(s->executor(), [s, force] { force ? s->force_close() : s->on_drain(); });
  }
}

void Server::begin_drain() {
  impl_->close_listener_and_visit_sessions(false);
}

bool Server::wait_drained(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (impl_->open.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

void Server::stop() {
  if (!impl_ || impl_->threads.empty()) return;
  // Idle or not, every connection closes now; handlers still running finish into the void.
  impl_->close_listener_and_visit_sessions(true);
  // Let the I/O threads run out of work by themselves: every handler (each holding the server
  // or a connection) then completes and nothing is left queued. Only a handler that will not
  // finish in time is abandoned by stopping the context.
  impl_->work.reset();
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(2000);
  while (!impl_->ioc.stopped() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
}

ServerStats Server::stats() const {
  return ServerStats{impl_->open.load(), impl_->accepted.load(), impl_->refused.load(),
                     impl_->handshake_failures.load(), impl_->timeouts.load()};
}

}  // namespace helm::http
