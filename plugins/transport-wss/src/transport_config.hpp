/// @brief The transport-wss configuration (manifest config_schema) with its defaults, and the
/// parsing of the "listen" address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <helm/plugin.hpp>

namespace helm::transport {

struct TransportConfig {
  /// Address and port to listen on; port 0 picks a free port (tests).
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 7443;
  /// PEM certificate chain and key; empty: the hub's (transport_settings).
  std::string tls_cert_file;
  std::string tls_key_file;
  /// Largest frame an agent may send; nullopt: the hub's max_frame_bytes, else 1 MiB.
  std::optional<std::size_t> max_frame_bytes;
  /// Bound of each connection's send queue; a connection that exceeds it is closed.
  std::size_t send_queue_max_frames = 1024;
  std::size_t send_queue_max_bytes = 8 * 1024 * 1024;
  /// I/O threads, each with its own io_context and share of the connections.
  unsigned io_threads = 1;
  /// Time from TCP accept to the agent's hello, and for a close handshake.
  std::uint32_t handshake_timeout_s = 20;

  /// Reads and checks the configuration; throws sdk::Failure(kInvalidInput) naming the key.
  static TransportConfig parse(const sdk::Config& config);
};

constexpr std::size_t kDefaultMaxFrameBytes = 1024 * 1024;
constexpr std::uint32_t kDefaultHeartbeatSeconds = 30;

}  // namespace helm::transport
