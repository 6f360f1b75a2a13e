/// @brief The agent transport server: a TLS 1.3 listener, one io_context per I/O thread with
/// its share of the connections and one periodic sweep timer (no per-connection timers or
/// strands), and the registry of the one live connection per device.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <openssl/ssl.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <helm/plugin.hpp>

#include "tls_fd_stream.hpp"
#include "transport_config.hpp"

namespace helm::transport {

class Connection;

/// One I/O thread and everything it owns. Touched only from its thread, except where noted.
struct Worker {
  net::io_context io{1};
  net::steady_timer sweep{io};
  /// The connections this thread runs; each knows its index (swap-removed when finished).
  std::vector<std::shared_ptr<Connection>> connections;
  /// Coarse clock: whole seconds since the server started, plus 1 (so 0 means "never").
  std::uint32_t clock = 1;
  std::thread thread;
};

/// Limits and facts every connection reads; fixed once the server started.
struct ConnectionLimits {
  std::size_t max_frame_bytes = kDefaultMaxFrameBytes;
  std::size_t send_queue_max_frames = 1024;
  std::size_t send_queue_max_bytes = 8 * 1024 * 1024;
  std::uint32_t heartbeat_s = kDefaultHeartbeatSeconds;
  std::uint32_t handshake_timeout_s = 20;
};

class Server {
 public:
  Server(sdk::Host host, TransportConfig config);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  /// Stops if still running and joins every thread.
  ~Server();

  /// Reads the hub's settings, loads the certificate, binds, starts the I/O threads and tells
  /// the hub the transport URL.
  sdk::Result<void> start();
  /// Stops accepting, closes every connection with 1012 (waiting briefly for the close
  /// handshakes), and joins the I/O threads. Idempotent.
  void stop();

  sdk::Status send(std::string_view device_id, std::string_view frame_json);
  void close(std::string_view device_id, std::uint16_t code, std::string_view reason);

  // ---- for connections (their own I/O thread unless noted) ----
  const sdk::Host& host() const noexcept { return host_; }
  const ConnectionLimits& limits() const noexcept { return limits_; }
  /// Asks the hub to check a token; the connection hears back on its own thread. Any thread.
  void authenticate(const std::shared_ptr<Connection>& connection, std::string token);
  /// Makes `connection` its device's live connection; the older one is closed with 4009.
  void register_device(const std::shared_ptr<Connection>& connection);
  /// Forgets `connection` as its device's live connection (if it still is). Any thread.
  void unregister_device(const Connection& connection);
  /// A connection finished; removes it from its worker.
  void connection_finished(Connection& connection);

 private:
  void run_worker(Worker& worker);
  void schedule_sweep(Worker& worker);
  void accept_next();
  sdk::Result<void> load_tls(const std::string& cert_file, const std::string& key_file);
  bool wait_for_no_connections(std::chrono::milliseconds timeout);
  void join_workers();

  sdk::Host host_;
  TransportConfig config_;
  ConnectionLimits limits_;
  SSL_CTX* tls_ = nullptr;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<net::basic_socket_acceptor<net::ip::tcp, net::io_context::executor_type>>
      acceptor_;
  std::unique_ptr<net::steady_timer> accept_retry_;
  std::size_t next_worker_ = 0;  // acceptor thread only
  std::chrono::steady_clock::time_point started_at_;
  std::atomic<std::uint64_t> next_connection_id_{1};
  std::atomic<bool> stopping_{false};
  bool running_ = false;

  std::mutex devices_mutex_;  // guards devices_
  std::unordered_map<std::string, std::shared_ptr<Connection>> devices_;

  std::mutex live_mutex_;  // guards live_ and pending_auths_, with live_changed_
  std::condition_variable live_changed_;
  std::size_t live_ = 0;
  std::size_t pending_auths_ = 0;
};

}  // namespace helm::transport
