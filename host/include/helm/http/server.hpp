/// @brief The API listener: HTTPS (TLS 1.3 only) with HTTP/1.1 keep-alive, request limits and
/// timeouts, dispatching to a Router and recording metrics. Beast stays behind this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "helm/config/hub_config.hpp"
#include "helm/core/expected.hpp"

namespace helm::metrics {
class Registry;
}

namespace helm::http {

class Router;

struct ServerOptions {
  config::ApiConfig api;
  std::string cert_file;
  std::string key_file;
};

struct ServerStats {
  uint64_t connections_open = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_refused = 0;  ///< over max_connections
  uint64_t handshake_failures = 0;
  uint64_t timeouts = 0;
};

class Server {
 public:
  /// `router` and `metrics` must outlive the server.
  Server(ServerOptions options, const Router& router, metrics::Registry& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Loads the certificate, binds, and starts the I/O threads. Returns the bound port.
  Expected<uint16_t> start();

  /// Stops accepting; idle keep-alive connections close now, busy ones after their response.
  void begin_drain();
  /// Waits until every connection closed, or the time is up. True when drained.
  bool wait_drained(std::chrono::milliseconds limit);
  /// Closes everything and joins the I/O threads.
  void stop();

  ServerStats stats() const;

  struct Impl;  ///< opaque; public only so the connection code in server.cpp can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace helm::http
