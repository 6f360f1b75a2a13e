#include "server.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <openssl/err.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>

#include "connection.hpp"
#include "tls_settings.hpp"

namespace helm::transport {
namespace {

constexpr auto kSweepInterval = std::chrono::seconds(1);
constexpr auto kStopCloseWait = std::chrono::milliseconds(3000);
constexpr auto kStopAbortWait = std::chrono::milliseconds(1000);
constexpr auto kAuthWait = std::chrono::milliseconds(5000);

std::string openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

Server::Server(sdk::Host host, TransportConfig config) : host_(host), config_(std::move(config)) {}

Server::~Server() {
  stop();
  {
    // The hub calls each accepted device_authenticate back exactly once; that callback is our
    // code, so it must have run before the library can go away.
    std::unique_lock lock(live_mutex_);
    if (!live_changed_.wait_for(lock, kAuthWait, [this] { return pending_auths_ == 0; })) {
      host_.error(
          "transport-wss: destroyed with device_authenticate calls the hub never "
          "completed");
    }
  }
  join_workers();
  {
    std::lock_guard lock(devices_mutex_);
    devices_.clear();
  }
  acceptor_.reset();
  accept_retry_.reset();
  for (auto& worker : workers_)
    worker->connections.clear();
  workers_.clear();  // destroys handlers still queued, then the io_contexts
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

sdk::Result<void> Server::start() {
  if (!host_.offers_transport()) {
    return sdk::Error{sdk::Status::kUnsupported,
                      "this hub does not offer the agent transport functions (plugin ABI 1.1); "
                      "upgrade the hub or grant capabilities.transport"};
  }
  auto settings = host_.transport_settings();
  if (!settings) {
    return sdk::Error{settings.error().status,
                      "reading the hub's transport settings failed: " + settings.error().message};
  }
  const sdk::Config hub(*settings);
  std::string cert_file = config_.tls_cert_file;
  std::string key_file = config_.tls_key_file;
  if (cert_file.empty()) {
    cert_file = hub.get_or<std::string>("tls_cert_file", "");
    key_file = hub.get_or<std::string>("tls_key_file", "");
  }
  if (cert_file.empty() || key_file.empty()) {
    return sdk::Error{sdk::Status::kInvalidInput,
                      "no TLS certificate: the hub gave none in its transport settings; set "
                      "tls_cert_file and tls_key_file in the transport-wss configuration"};
  }
  limits_.heartbeat_s = hub.get_or<std::uint32_t>("heartbeat_s", kDefaultHeartbeatSeconds);
  if (limits_.heartbeat_s == 0) limits_.heartbeat_s = kDefaultHeartbeatSeconds;
  limits_.max_frame_bytes = config_.max_frame_bytes.value_or(
      hub.get_or<std::size_t>("max_frame_bytes", kDefaultMaxFrameBytes));
  // 0 would mean "no limit" to Beast; the protocol always has one.
  if (limits_.max_frame_bytes == 0) limits_.max_frame_bytes = kDefaultMaxFrameBytes;
  limits_.send_queue_max_frames = config_.send_queue_max_frames;
  limits_.send_queue_max_bytes = config_.send_queue_max_bytes;
  limits_.handshake_timeout_s = config_.handshake_timeout_s;
  if (auto loaded = load_tls(cert_file, key_file); !loaded) return loaded;

  for (unsigned i = 0; i < config_.io_threads; ++i)
    workers_.push_back(std::make_unique<Worker>());
  Worker& first = *workers_.front();

  error_code ec;
  net::ip::address address = net::ip::make_address(config_.listen_host, ec);
  if (ec) {
    net::ip::tcp::resolver resolver(first.io);
    const auto results = resolver.resolve(config_.listen_host, "", ec);
    if (ec || results.empty()) {
      return sdk::Error{sdk::Status::kInvalidInput,
                        "cannot resolve the listen host \"" + config_.listen_host +
                            "\": " + (ec ? ec.message() : std::string("no address"))};
    }
    address = results.begin()->endpoint().address();
  }
  const net::ip::tcp::endpoint endpoint(address, config_.listen_port);
  acceptor_ =
      std::make_unique<net::basic_socket_acceptor<net::ip::tcp, net::io_context::executor_type>>(
          first.io.get_executor());
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return sdk::Error{sdk::Status::kUnavailable,
                      "cannot listen on " + endpoint.address().to_string() + ":" +
                          std::to_string(endpoint.port()) + ": " + ec.message() +
                          " (change \"listen\" in the transport-wss configuration)"};
  }
  const auto bound = acceptor_->local_endpoint(ec);
  accept_retry_ = std::make_unique<net::steady_timer>(first.io);

  started_at_ = std::chrono::steady_clock::now();
  running_ = true;
  for (auto& worker : workers_) {
    schedule_sweep(*worker);
    Worker* raw = worker.get();
    worker->thread = std::thread([this, raw] { run_worker(*raw); });
  }
  net::post(first.io, [this] { accept_next(); });

  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                   : bound.address().to_string();
  const std::string url = "wss://" + host + ":" + std::to_string(bound.port()) + "/agent/v1";
  host_.transport_listening(url);
  host_.info("transport-wss: listening for agents at " + url);
  return {};
}

sdk::Result<void> Server::load_tls(const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  tls_ = SSL_CTX_new(TLS_server_method());
  if (tls_ == nullptr) {
    return sdk::Error{sdk::Status::kInternal,
                      "creating the TLS context failed: " + openssl_errors()};
  }
  apply_agent_tls_settings(tls_);
  if (SSL_CTX_use_certificate_chain_file(tls_, cert_file.c_str()) != 1) {
    return sdk::Error{sdk::Status::kInvalidInput, "cannot load the TLS certificate chain " +
                                                      cert_file + ": " + openssl_errors()};
  }
  if (SSL_CTX_use_PrivateKey_file(tls_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return sdk::Error{sdk::Status::kInvalidInput,
                      "cannot load the TLS private key " + key_file + ": " + openssl_errors()};
  }
  if (SSL_CTX_check_private_key(tls_) != 1) {
    return sdk::Error{
        sdk::Status::kInvalidInput,
        "the TLS private key " + key_file + " does not match the certificate " + cert_file};
  }
  return {};
}

void Server::run_worker(Worker& worker) {
  for (;;) {
    try {
      worker.io.run();
      return;
    } catch (const std::exception& exception) {
      host_.error(std::string("transport-wss: an I/O handler threw: ") + exception.what());
    } catch (...) {
      host_.error("transport-wss: an I/O handler threw a non-standard exception");
    }
  }
}

void Server::schedule_sweep(Worker& worker) {
  worker.sweep.expires_after(kSweepInterval);
  worker.sweep.async_wait([this, &worker](error_code ec) {
    if (ec) return;
    const auto elapsed = std::chrono::steady_clock::now() - started_at_;
    worker.clock = 1 + static_cast<std::uint32_t>(
                           std::chrono::duration_cast<std::chrono::seconds>(elapsed).count());
    // Backwards, so that a connection finishing (swap-removed) does not hide another.
    for (std::size_t i = worker.connections.size(); i-- > 0;) {
      if (i < worker.connections.size()) worker.connections[i]->sweep(worker.clock);
    }
    schedule_sweep(worker);
  });
}

void Server::accept_next() {
  if (stopping_) return;
  Worker& target = *workers_[next_worker_];
  next_worker_ = (next_worker_ + 1) % workers_.size();
  acceptor_->async_accept(target.io, [this, &target](error_code ec, Socket socket) {
    if (stopping_) return;
    if (ec) {
      if (ec == net::error::operation_aborted) return;
      // Out of file descriptors and the like: retry shortly instead of spinning.
      host_.warn("transport-wss: accepting a connection failed: " + ec.message());
      accept_retry_->expires_after(std::chrono::milliseconds(100));
      accept_retry_->async_wait([this](error_code wait_ec) {
        if (!wait_ec) accept_next();
      });
      return;
    }
    error_code option_ec;
    socket.non_blocking(true, option_ec);
    socket.set_option(net::ip::tcp::no_delay(true), option_ec);
    SSL* ssl = SSL_new(tls_);
    if (ssl != nullptr && !option_ec) {
      auto connection = std::make_shared<Connection>(*this, target, std::move(socket), ssl,
                                                     next_connection_id_.fetch_add(1));
      {
        std::lock_guard lock(live_mutex_);
        ++live_;
      }
      net::post(target.io, [this, connection, &target] {
        connection->worker_index = target.connections.size();
        target.connections.push_back(connection);
        if (stopping_) {
          connection->abort();  // accepted while stop() was closing the others
        } else {
          connection->start();
        }
      });
    } else if (ssl != nullptr) {
      SSL_free(ssl);
    }
    accept_next();
  });
}

void Server::authenticate(const std::shared_ptr<Connection>& connection, std::string token) {
  {
    std::lock_guard lock(live_mutex_);
    ++pending_auths_;
  }
  auto done = [this](std::shared_ptr<Connection> target, sdk::Status status, std::string json) {
    Worker& worker = target->worker();
    net::post(worker.io, [target = std::move(target), status, json = std::move(json)] {
      target->on_authenticated(status, json);
    });
    std::lock_guard lock(live_mutex_);
    --pending_auths_;
    live_changed_.notify_all();
  };
  auto result = host_.authenticate_device(
      token, [connection, done](sdk::Status status, std::string json) mutable {
        done(std::move(connection), status, std::move(json));
      });
  if (!result) {
    host_.warn("transport-wss: the hub refused to check a device token: " + result.error().message);
    done(connection,
         result.error().status == sdk::Status::kUnauthorized ? sdk::Status::kUnauthorized
                                                             : sdk::Status::kUnavailable,
         result.error().message);
  }
}

void Server::register_device(const std::shared_ptr<Connection>& connection) {
  std::shared_ptr<Connection> older;
  {
    std::lock_guard lock(devices_mutex_);
    older = std::exchange(devices_[connection->device_id()], connection);
  }
  if (older && older != connection) {
    older->close_from_host(4009, "superseded by a newer connection of the same device");
  }
}

void Server::unregister_device(const Connection& connection) {
  if (connection.device_id().empty()) return;
  std::lock_guard lock(devices_mutex_);
  const auto found = devices_.find(connection.device_id());
  if (found != devices_.end() && found->second.get() == &connection) devices_.erase(found);
}

void Server::connection_finished(Connection& connection) {
  auto& list = connection.worker().connections;
  const std::size_t index = connection.worker_index;
  if (index < list.size() && list[index].get() == &connection) {
    if (index + 1 != list.size()) {
      list[index] = std::move(list.back());
      list[index]->worker_index = index;
    }
    list.pop_back();
  }
  std::lock_guard lock(live_mutex_);
  --live_;
  live_changed_.notify_all();
}

sdk::Status Server::send(std::string_view device_id, std::string_view frame_json) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(devices_mutex_);
    const auto found = devices_.find(std::string(device_id));
    if (found != devices_.end()) connection = found->second;
  }
  if (!connection) return sdk::Status::kNotFound;
  return connection->send_from_host(std::string(frame_json));
}

void Server::close(std::string_view device_id, std::uint16_t code, std::string_view reason) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(devices_mutex_);
    const auto found = devices_.find(std::string(device_id));
    if (found != devices_.end()) connection = found->second;
  }
  if (connection) connection->close_from_host(code, std::string(reason));
}

bool Server::wait_for_no_connections(std::chrono::milliseconds timeout) {
  std::unique_lock lock(live_mutex_);
  return live_changed_.wait_for(lock, timeout, [this] { return live_ == 0; });
}

void Server::stop() {
  if (!running_ || stopping_.exchange(true)) return;
  net::post(workers_.front()->io, [this] {
    error_code ignored;
    acceptor_->close(ignored);
    accept_retry_->cancel();
  });
  for (auto& worker : workers_) {
    net::post(worker->io, [raw = worker.get()] {
      const auto connections = raw->connections;  // begin_close may finish and remove some
      for (const auto& connection : connections) {
        connection->begin_close(1012, "hub restarting", false);
      }
    });
  }
  if (!wait_for_no_connections(kStopCloseWait)) {
    for (auto& worker : workers_) {
      net::post(worker->io, [raw = worker.get()] {
        const auto connections = raw->connections;
        for (const auto& connection : connections)
          connection->abort();
      });
    }
    wait_for_no_connections(kStopAbortWait);
  }
  join_workers();
  // Nothing runs any more: finish what is left here, so the hub hears every DISCONNECTED.
  for (auto& worker : workers_) {
    const auto connections = worker->connections;
    for (const auto& connection : connections)
      connection->abort();
  }
}

void Server::join_workers() {
  for (auto& worker : workers_) {
    if (!worker->thread.joinable()) continue;
    net::post(worker->io, [raw = worker.get()] {
      error_code ignored;
      raw->sweep.cancel();
      raw->io.stop();
    });
    worker->thread.join();
  }
}

}  // namespace helm::transport
