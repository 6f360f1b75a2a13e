/// @brief One agent connection: TLS handshake, the upgrade request (path, subprotocol, bearer
/// token checked by the hub), the WebSocket session with the agent protocol's frames, a bounded
/// send queue, and the close paths. Runs on its worker's thread only, except send_from_host()
/// and close_from_host(), which hand work over to that thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <helm/plugin.hpp>

#include "tls_fd_stream.hpp"

namespace helm::transport {

class Server;
struct Worker;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, Worker& worker, Socket socket, SSL* ssl, std::uint64_t id);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Starts the TLS handshake. Worker thread.
  void start();

  /// Queues a frame from the hub (device_send). Any thread; never blocks.
  sdk::Status send_from_host(std::string frame);
  /// Closes with `code` soon (device_close, supersession). Any thread.
  void close_from_host(std::uint16_t code, std::string reason);

  /// Starts the close handshake with `code`; `drop_queue` discards frames not yet sent.
  /// Before the upgrade there is nothing to close politely: the socket is closed. Worker thread.
  void begin_close(std::uint16_t code, std::string_view reason, bool drop_queue);
  /// Closes the socket now and finishes. Worker thread.
  void abort();
  /// Enforces deadlines (handshake, hello, close, idle); called once a second. Worker thread.
  void sweep(std::uint32_t now);

  std::uint64_t id() const noexcept { return id_; }
  const std::string& device_id() const noexcept { return device_id_; }
  Worker& worker() noexcept { return worker_; }
  /// Position in worker().connections; maintained by the server.
  std::size_t worker_index = 0;

  /// Delivers the hub's answer to the token check. Worker thread.
  void on_authenticated(sdk::Status status, const std::string& device_json);

 private:
  enum class State : std::uint8_t {
    kHandshake,
    kReadingRequest,
    kAuthenticating,
    kResponding,
    kUpgrading,
    kAwaitHello,
    kOpen,
    kFinished,
  };
  struct Upgrade;

  void on_handshake(error_code ec);
  void on_request(error_code ec);
  void respond(unsigned status, std::string_view title, std::string_view detail);
  void on_upgraded(error_code ec);
  void read_next();
  void on_message(error_code ec);
  void handle_frame(std::string_view text, bool is_text);
  void on_hello(std::string_view text);
  void send_error(std::string_view code, std::string_view message, const nlohmann::json& ref);
  /// Queues a frame made here (welcome, hb_ack, error); over the bound the connection is closed.
  void enqueue_local(std::string frame, bool front);
  void push_from_host(std::string frame);
  void pump();
  void on_written(error_code ec);
  void drop_unsent();
  void unaccount(std::size_t bytes) noexcept;
  void finish();

  Server& server_;
  Worker& worker_;
  boost::beast::websocket::stream<TlsFdStream> ws_;
  const std::uint64_t id_;
  std::string device_id_;
  std::unique_ptr<Upgrade> upgrade_;  // only between accept and the upgrade
  boost::beast::flat_buffer rx_;      // emptied and released after every message
  std::vector<std::string> queue_;    // frames to send, from head_ on
  std::size_t head_ = 0;
  std::atomic<std::size_t> queued_frames_{0};
  std::atomic<std::size_t> queued_bytes_{0};
  std::string close_reason_;
  std::uint32_t last_rx_ = 0;
  std::uint32_t deadline_ = 0;  // of the handshake/hello, or of the close handshake
  std::uint32_t heartbeat_s_ = 0;
  std::uint16_t close_code_ = 1000;
  State state_ = State::kHandshake;
  bool writing_ = false;
  bool closing_ = false;
  bool close_started_ = false;
  bool connected_ = false;  // device_event(CONNECTED) was sent
  bool finished_ = false;
};

}  // namespace helm::transport
