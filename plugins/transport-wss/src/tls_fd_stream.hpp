/// @brief A TLS byte stream that drives OpenSSL directly on a non-blocking socket's file
/// descriptor and waits for readiness through Asio: the small stream Beast's WebSocket runs on.
///
/// Why not asio::ssl::stream: its engine keeps a BIO pair and two large buffers per connection
/// (about 50 KiB); here OpenSSL reads and writes the fd itself and, with SSL_MODE_RELEASE_BUFFERS,
/// holds no record buffers while a connection is idle (notes/transport-memory.md).
///
/// Threading: one stream is used from one thread at a time (its io_context's only thread). At
/// most one read and one write operation are outstanding at once, as Beast guarantees; both
/// share the one SSL object, which is safe because they never run concurrently. Operations
/// never complete inside their initiating function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <openssl/ssl.h>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>

namespace helm::transport {

namespace net = boost::asio;
using error_code = boost::system::error_code;
using Socket = net::basic_stream_socket<net::ip::tcp, net::io_context::executor_type>;

class TlsFdStream {
 public:
  using executor_type = net::io_context::executor_type;

  /// Takes the accepted socket (already non-blocking) and a fresh SSL object of the server's
  /// context (owned from now on). `clock` is the owner's coarse clock (ticks, never 0), read
  /// when a teardown starts; it must outlive the stream.
  TlsFdStream(Socket socket, SSL* ssl, const std::uint32_t* clock) noexcept;
  TlsFdStream(const TlsFdStream&) = delete;
  TlsFdStream& operator=(const TlsFdStream&) = delete;
  ~TlsFdStream();

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  Socket& socket() noexcept { return socket_; }
  SSL* ssl() const noexcept { return ssl_; }

  /// Runs the server side of the TLS handshake.
  template <typename Handler>
  auto async_handshake(Handler&& handler) {
    return net::async_compose<Handler, void(error_code, std::size_t)>(
        Op<HandshakeStep>{*this, HandshakeStep{}}, handler, socket_);
  }

  template <typename MutableBuffers, typename Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return net::async_compose<Handler, void(error_code, std::size_t)>(
        Op<ReadStep<MutableBuffers>>{*this, ReadStep<MutableBuffers>{buffers}}, handler, socket_);
  }

  template <typename ConstBuffers, typename Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return net::async_compose<Handler, void(error_code, std::size_t)>(
        Op<WriteStep<ConstBuffers>>{*this, WriteStep<ConstBuffers>{buffers}}, handler, socket_);
  }

  /// Sends close_notify (one non-blocking attempt) and shuts down the sending side; reads are
  /// still possible so that the peer's remaining bytes can be drained without a reset.
  void shutdown_send() noexcept;

  /// Closes the socket at once: every pending operation completes with operation_aborted.
  void close() noexcept;

  bool is_open() const noexcept { return socket_.is_open(); }

  /// Reads and discards raw bytes until the peer closes (or close() is called), then closes the
  /// socket and calls handler(error_code). Used by the WebSocket teardown so that a peer still
  /// sending (say, an oversized frame) sees our close frame instead of a TCP reset.
  template <typename Handler>
  void async_drain_and_close(Handler&& handler) {
    teardown_started_ = *clock_;
    net::async_compose<Handler, void(error_code)>(DrainOp{*this}, handler, socket_);
  }

  /// When a teardown (drain) started, in the owner's clock ticks; 0 when none did. The owner
  /// enforces a deadline on it.
  std::uint32_t teardown_started() const noexcept { return teardown_started_; }

 private:
  enum class Want : std::uint8_t { kNothing, kRead, kWrite };

  /// Outcome of one attempt at an SSL call.
  struct Attempt {
    Want want = Want::kNothing;
    error_code ec;
    std::size_t bytes = 0;
  };

  Attempt try_handshake() noexcept;
  Attempt try_read(void* data, std::size_t size) noexcept;
  Attempt try_write(const void* data, std::size_t size) noexcept;
  Attempt classify(int result) noexcept;
  std::size_t drain_some(error_code& ec) noexcept;

  struct HandshakeStep {
    Attempt operator()(TlsFdStream& stream) { return stream.try_handshake(); }
  };

  template <typename Buffers>
  struct ReadStep {
    Buffers buffers;
    /// Whether a read may wait for the socket before trying SSL_read: when OpenSSL holds no
    /// bytes, a read attempt right after the previous message almost always finds the socket
    /// empty (one wasted read() per heartbeat); waiting first is just as correct, because the
    /// wait re-arms the descriptor and so also reports bytes that are already there.
    bool wait_first(TlsFdStream& stream) const { return SSL_has_pending(stream.ssl_) == 0; }
    Attempt operator()(TlsFdStream& stream) {
      for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
           ++it) {
        const net::mutable_buffer buffer(*it);
        if (buffer.size() > 0) return stream.try_read(buffer.data(), buffer.size());
      }
      return Attempt{};
    }
  };

  template <typename Buffers>
  struct WriteStep {
    Buffers buffers;
    Attempt operator()(TlsFdStream& stream) {
      // Coalesce a small header and its payload into one TLS record. The copy is rebuilt from
      // the same buffers on every retry, so OpenSSL sees the same bytes again after WANT_WRITE
      // (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the address to differ).
      thread_local unsigned char scratch[kWriteChunk];
      std::size_t filled = 0;
      std::size_t non_empty = 0;
      const void* only = nullptr;
      std::size_t only_size = 0;
      for (auto it = net::buffer_sequence_begin(buffers);
           it != net::buffer_sequence_end(buffers) && filled < kWriteChunk; ++it) {
        const net::const_buffer buffer(*it);
        if (buffer.size() == 0) continue;
        if (++non_empty == 1) {
          only = buffer.data();
          only_size = buffer.size();
        }
        filled += net::buffer_copy(net::buffer(scratch + filled, kWriteChunk - filled), buffer);
      }
      if (non_empty == 0) return Attempt{};
      if (non_empty == 1) return stream.try_write(only, only_size);
      return stream.try_write(scratch, filled);
    }
  };

  /// One asynchronous SSL call: attempt, wait for the readiness OpenSSL asks for, retry.
  template <typename Step>
  struct Op {
    TlsFdStream& stream;
    Step step;
    enum class Phase : std::uint8_t { kStart, kRunning, kDone } phase = Phase::kStart;
    Attempt result{};

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      if (phase == Phase::kDone) return self.complete(result.ec, result.bytes);
      if (ec) return self.complete(ec, 0);
      const bool first = phase == Phase::kStart;
      phase = Phase::kRunning;
      if constexpr (requires { step.wait_first(stream); }) {
        if (first && stream.handshake_done_ && step.wait_first(stream)) {
          return stream.wait_readable(std::move(self));
        }
      }
      const Attempt attempt = step(stream);
      if (attempt.want == Want::kRead) return stream.wait_readable(std::move(self));
      if (attempt.want == Want::kWrite) {
        return stream.socket_.async_wait(Socket::wait_write, std::move(self));
      }
      if (first) {
        // Never complete inside the initiating function.
        phase = Phase::kDone;
        result = attempt;
        return net::post(stream.get_executor(), std::move(self));
      }
      self.complete(attempt.ec, attempt.bytes);
    }

    /// The end of wait_readable's peek: bytes are there, or the peer closed or failed, which
    /// the SSL call that follows finds out and reports itself.
    template <typename Self>
    void operator()(Self& self, error_code ec, std::size_t /*peeked*/) {
      if (ec == net::error::operation_aborted || ec == net::error::bad_descriptor) {
        return self.complete(ec, 0);
      }
      (*this)(self, error_code{});
    }
  };

  /// Waits until the socket has bytes to read, by peeking at them (they stay in the socket for
  /// OpenSSL). Unlike async_wait, a receive does not re-arm the descriptor with epoll_ctl each
  /// time: Asio's reactor keeps it registered edge-triggered and remembers (from the peek's
  /// short count) that the socket was drained, so the next wait costs no system call until
  /// new bytes arrive. That is one epoll_ctl less per heartbeat.
  template <typename Self>
  void wait_readable(Self&& self) {
    thread_local unsigned char peek[kPeekBytes];  // written by the kernel, never read
    socket_.async_receive(net::buffer(peek), Socket::message_peek, std::forward<Self>(self));
  }

  struct DrainOp {
    TlsFdStream& stream;
    bool waited = false;
    bool finished = false;

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      if (finished) return self.complete(error_code{});
      while (!ec) {
        const std::size_t got = stream.drain_some(ec);
        if (ec == net::error::would_block) {
          waited = true;
          return stream.socket_.async_wait(Socket::wait_read, std::move(self));
        }
        if (got == 0) break;
      }
      stream.close();
      finished = true;
      if (!waited) return net::post(stream.get_executor(), std::move(self));
      self.complete(error_code{});
    }
  };

  static constexpr std::size_t kWriteChunk = 16 * 1024;
  /// More than a heartbeat's record, so that peeking at one reads fewer bytes than asked for,
  /// which is how Asio learns the socket has nothing more.
  static constexpr std::size_t kPeekBytes = 512;

  Socket socket_;
  SSL* ssl_;
  const std::uint32_t* clock_;
  std::uint32_t teardown_started_ = 0;
  bool handshake_done_ = false;
  bool ssl_failed_ = false;  // after a fatal error OpenSSL forbids SSL_shutdown
};

// Customization points for Beast, found by argument-dependent lookup: closing the lowest layer
// (used by its timeout machinery, which this transport leaves off) and the WebSocket teardown.
inline void beast_close_socket(TlsFdStream& stream) {
  stream.close();
}

void teardown(boost::beast::role_type role, TlsFdStream& stream, error_code& ec);

template <typename Handler>
void async_teardown(boost::beast::role_type /*role*/, TlsFdStream& stream, Handler&& handler) {
  stream.shutdown_send();
  stream.async_drain_and_close(std::forward<Handler>(handler));
}

}  // namespace helm::transport
