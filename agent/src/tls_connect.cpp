#include "tls_connect.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <vector>

namespace helm::agent::detail {
namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::optional<CertPin> der_hash(X509* cert) {
  if (!cert) return std::nullopt;
  const int len = i2d_X509(cert, nullptr);
  if (len <= 0) return std::nullopt;
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  std::uint8_t* out = der.data();
  i2d_X509(cert, &out);
  return sha256_of(der);
}

bool is_ip_address(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string describe(const boost::system::error_code& ec) {
  std::string text = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    text += " (" + std::to_string(ec.value()) + ")";
  }
  return text;
}

}  // namespace

Expected<std::shared_ptr<asio::ssl::context>> make_client_context(const TlsTrust& trust) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1) {
    return Error{"this OpenSSL cannot restrict connections to TLS 1.3"};
  }
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  boost::system::error_code ec;
  if (!trust.ca_file.empty()) {
    ctx->load_verify_file(trust.ca_file, ec);
    if (ec) return Error{"cannot load CA file " + trust.ca_file + ": " + ec.message()};
  } else if (!trust.pin) {
    ctx->set_default_verify_paths(ec);
    if (ec) return Error{"cannot load the system trust store: " + ec.message()};
  }
  ctx->set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

asio::awaitable<Status> connect_tls(TlsStream& stream, const Url& target,
                                    const std::optional<ProxyConfig>& proxy, const TlsTrust& trust,
                                    std::chrono::seconds timeout) {
  auto& tcp = stream.next_layer();
  tcp.expires_after(timeout);
  asio::ip::tcp::resolver resolver(stream.get_executor());
  const std::string connect_host = proxy ? proxy->host : target.host;
  const std::string connect_port = std::to_string(proxy ? proxy->port : target.port);
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(connect_host, connect_port, kTuple);
  if (resolve_ec) {
    co_return Error{"cannot resolve " + connect_host + ": " + resolve_ec.message()};
  }
  auto [connect_ec, endpoint] = co_await tcp.async_connect(endpoints, kTuple);
  if (connect_ec) {
    co_return Error{"cannot connect to " + connect_host + ":" + connect_port +
                    (proxy ? " (proxy)" : "") + ": " + connect_ec.message()};
  }
  (void)endpoint;
  // The agent writes small frames back to back (`ack`, then `result`): with Nagle's algorithm
  // the second waits for the hub's delayed ACK, 40 ms on Linux.
  boost::system::error_code nodelay_ec;
  tcp.socket().set_option(asio::ip::tcp::no_delay(true), nodelay_ec);
  if (proxy) {
    std::string request =
        "CONNECT " + target.authority() + " HTTP/1.1\r\nHost: " + target.authority() + "\r\n";
    if (!proxy->authorization.empty()) {
      request += "Proxy-Authorization: " + proxy->authorization + "\r\n";
    }
    request += "\r\n";
    auto [write_ec, written] = co_await asio::async_write(tcp, asio::buffer(request), kTuple);
    if (write_ec) co_return Error{"proxy CONNECT failed: " + write_ec.message()};
    beast::flat_buffer buffer;
    beast::http::response_parser<beast::http::empty_body> parser;
    parser.skip(true);  // a 2xx answer to CONNECT has no body: the tunnel follows
    auto [read_ec, read] = co_await beast::http::async_read_header(tcp, buffer, parser, kTuple);
    if (read_ec) co_return Error{"proxy CONNECT failed: " + read_ec.message()};
    const auto status = parser.get().result_int();
    if (status / 100 != 2) {
      co_return Error{"proxy refused CONNECT " + target.authority() + " with HTTP " +
                      std::to_string(status)};
    }
    if (buffer.size() != 0) co_return Error{"proxy sent data before the TLS handshake"};
  }

  SSL* ssl = stream.native_handle();
  const bool ip = is_ip_address(target.host);
  if (!ip) {
    // SSL_set_tlsext_host_name is a macro with a C cast.
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(target.host.c_str()));
  }
  auto pin_mismatch = std::make_shared<bool>(false);
  if (trust.pin) {
    // Only the leaf certificate's hash counts; it is checked during the handshake, so a
    // mismatch aborts it before the caller can send any token or key.
    const CertPin pin = *trust.pin;
    stream.set_verify_callback([pin, pin_mismatch](bool, asio::ssl::verify_context& vctx) {
      X509* leaf = X509_STORE_CTX_get0_cert(vctx.native_handle());
      const auto hash = der_hash(leaf);
      if (hash && *hash == pin) return true;
      *pin_mismatch = true;
      return false;
    });
  } else {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, target.host.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, target.host.c_str(), 0);
    if (set != 1) co_return Error{"cannot verify host name " + target.host};
  }
  auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (handshake_ec) {
    const long verify = SSL_get_verify_result(ssl);
    std::string why = describe(handshake_ec);
    if (*pin_mismatch) {
      why = "the hub's certificate does not match the pinned SHA-256";
    } else if (verify != X509_V_OK) {
      why =
          std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
    }
    co_return Error{"TLS handshake with " + target.authority() + " failed: " + why};
  }
  if (trust.pin) {
    X509* peer = SSL_get1_peer_certificate(ssl);
    const auto hash = der_hash(peer);
    X509_free(peer);
    if (!hash || *hash != *trust.pin) {
      co_return Error{"TLS handshake with " + target.authority() +
                      " failed: the hub's certificate does not match the pinned SHA-256"};
    }
  }
  if (SSL_version(ssl) != TLS1_3_VERSION) co_return Error{"the hub did not negotiate TLS 1.3"};
  tcp.expires_never();
  co_return Status{};
}

}  // namespace helm::agent::detail
