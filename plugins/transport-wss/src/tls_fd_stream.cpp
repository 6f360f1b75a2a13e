#include "tls_fd_stream.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <climits>

#include <openssl/err.h>

namespace helm::transport {

TlsFdStream::TlsFdStream(Socket socket, SSL* ssl, const std::uint32_t* clock) noexcept
    : socket_(std::move(socket)), ssl_(ssl), clock_(clock) {
  SSL_set_fd(ssl_, socket_.native_handle());
}

TlsFdStream::~TlsFdStream() {
  SSL_free(ssl_);
}

TlsFdStream::Attempt TlsFdStream::classify(int result) noexcept {
  Attempt out;
  const int code = SSL_get_error(ssl_, result);
  switch (code) {
    case SSL_ERROR_WANT_READ:
      out.want = Want::kRead;
      break;
    case SSL_ERROR_WANT_WRITE:
      out.want = Want::kWrite;
      break;
    case SSL_ERROR_ZERO_RETURN:
      out.ec = net::error::eof;
      break;
    case SSL_ERROR_SYSCALL: {
      const int saved = errno;
      ssl_failed_ = true;
      out.ec = saved == 0 ? error_code(net::error::eof)
                          : error_code(saved, boost::system::system_category());
      break;
    }
    default:
      ssl_failed_ = true;
      out.ec = net::error::connection_aborted;
      break;
  }
  ERR_clear_error();
  return out;
}

TlsFdStream::Attempt TlsFdStream::try_handshake() noexcept {
  if (!socket_.is_open()) return Attempt{Want::kNothing, net::error::bad_descriptor, 0};
  ERR_clear_error();
  const int result = SSL_accept(ssl_);
  if (result == 1) {
    handshake_done_ = true;
    return Attempt{};
  }
  return classify(result);
}

TlsFdStream::Attempt TlsFdStream::try_read(void* data, std::size_t size) noexcept {
  if (!socket_.is_open()) return Attempt{Want::kNothing, net::error::bad_descriptor, 0};
  if (ssl_failed_) return Attempt{Want::kNothing, net::error::connection_aborted, 0};
  ERR_clear_error();
  const int result = SSL_read(ssl_, data, size > INT_MAX ? INT_MAX : static_cast<int>(size));
  if (result > 0) return Attempt{Want::kNothing, {}, static_cast<std::size_t>(result)};
  return classify(result);
}

TlsFdStream::Attempt TlsFdStream::try_write(const void* data, std::size_t size) noexcept {
  if (!socket_.is_open()) return Attempt{Want::kNothing, net::error::bad_descriptor, 0};
  if (ssl_failed_) return Attempt{Want::kNothing, net::error::connection_aborted, 0};
  ERR_clear_error();
  const int result = SSL_write(ssl_, data, size > INT_MAX ? INT_MAX : static_cast<int>(size));
  if (result > 0) return Attempt{Want::kNothing, {}, static_cast<std::size_t>(result)};
  return classify(result);
}

void TlsFdStream::shutdown_send() noexcept {
  if (!socket_.is_open()) return;
  if (handshake_done_ && !ssl_failed_) {
    ERR_clear_error();
    // One non-blocking attempt: close_notify is a courtesy, the WebSocket close already ended
    // the session.
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  error_code ignored;
  socket_.shutdown(Socket::shutdown_send, ignored);
}

void TlsFdStream::close() noexcept {
  error_code ignored;
  socket_.close(ignored);
}

std::size_t TlsFdStream::drain_some(error_code& ec) noexcept {
  if (!socket_.is_open()) {
    ec = net::error::bad_descriptor;
    return 0;
  }
  thread_local unsigned char sink[4096];
  const ssize_t got = ::recv(socket_.native_handle(), sink, sizeof sink, MSG_DONTWAIT);
  if (got > 0) return static_cast<std::size_t>(got);
  if (got == 0) return 0;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    ec = net::error::would_block;
  } else if (errno != EINTR) {
    ec = error_code(errno, boost::system::system_category());
  }
  return 0;
}

void teardown(boost::beast::role_type /*role*/, TlsFdStream& stream, error_code& ec) {
  stream.shutdown_send();
  stream.close();
  ec = {};
}

}  // namespace helm::transport
