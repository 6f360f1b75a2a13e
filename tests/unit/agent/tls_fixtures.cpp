#include "tls_fixtures.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>

#include <stdexcept>

namespace helm::agent::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

tcp::acceptor loopback_acceptor(asio::io_context& ioc) {
  return tcp::acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

void unblock(tcp::acceptor& acceptor) {
  // Wakes a thread blocked in accept() on Linux.
  ::shutdown(acceptor.native_handle(), SHUT_RDWR);
}

std::shared_ptr<asio::ssl::context> server_context(const TestCert& cert) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->use_certificate_chain(asio::buffer(cert.cert_pem));
  ctx->use_private_key(asio::buffer(cert.key_pem), asio::ssl::context::pem);
  return ctx;
}

}  // namespace

TestCert make_self_signed_cert() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) throw std::runtime_error("EC key generation failed");
  X509* x509 = X509_new();
  X509_set_version(x509, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
  X509_gmtime_adj(X509_getm_notBefore(x509), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x509), 24 * 3600);
  X509_set_pubkey(x509, key);
  X509_NAME* name = X509_get_subject_name(x509);
  const std::string cn = "localhost";
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x509, name);
  X509V3_CTX v3{};
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x509, x509, nullptr, nullptr, 0);
  std::string san = "IP:127.0.0.1,DNS:localhost";
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.data());
  X509_add_ext(x509, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x509, key, EVP_sha256());

  TestCert out;
  BIO* cert_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cert_bio, x509);
  out.cert_pem = bio_text(cert_bio);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = bio_text(key_bio);
  BIO_free(key_bio);
  const int len = i2d_X509(x509, nullptr);
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  std::uint8_t* p = der.data();
  i2d_X509(x509, &p);
  out.pin = sha256_of(der);
  X509_free(x509);
  EVP_PKEY_free(key);
  return out;
}

// ---------------------------------------------------------------------------------------------
struct ConnectProxy::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor = loopback_acceptor(ioc);
  std::thread accept_thread;
  mutable std::mutex mutex;
  std::vector<std::string> lines;
  std::string client_bytes;
  std::vector<std::shared_ptr<tcp::socket>> sockets;
  std::vector<std::thread> relays;

  void relay(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to, bool record) {
    char buf[16384];
    boost::system::error_code ec;
    for (;;) {
      const std::size_t n = from->read_some(asio::buffer(buf), ec);
      if (ec) break;
      if (record) {
        std::lock_guard lock(mutex);
        client_bytes.append(buf, n);
      }
      asio::write(*to, asio::buffer(buf, n), ec);
      if (ec) break;
    }
    to->shutdown(tcp::socket::shutdown_send, ec);
  }

  void serve(std::shared_ptr<tcp::socket> client) {
    boost::system::error_code ec;
    asio::streambuf request;
    asio::read_until(*client, request, "\r\n\r\n", ec);
    if (ec) return;
    std::string head(asio::buffers_begin(request.data()), asio::buffers_end(request.data()));
    const std::string line = head.substr(0, head.find("\r\n"));
    {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    }
    // "CONNECT host:port HTTP/1.1"
    const auto first = line.find(' ');
    const auto second = line.find(' ', first + 1);
    const std::string authority = line.substr(first + 1, second - first - 1);
    const auto colon = authority.rfind(':');
    auto upstream = std::make_shared<tcp::socket>(ioc);
    {
      std::lock_guard lock(mutex);
      sockets.push_back(upstream);
    }
    tcp::resolver resolver(ioc);
    auto endpoints = resolver.resolve(authority.substr(0, colon), authority.substr(colon + 1), ec);
    if (!ec) asio::connect(*upstream, endpoints, ec);
    if (line.rfind("CONNECT ", 0) != 0 || ec) {
      asio::write(*client, asio::buffer(std::string("HTTP/1.1 502 Bad Gateway\r\n\r\n")), ec);
      return;
    }
    asio::write(*client, asio::buffer(std::string("HTTP/1.1 200 Connection established\r\n\r\n")),
                ec);
    std::thread back([this, upstream, client] { relay(upstream, client, false); });
    relay(client, upstream, true);
    back.join();
  }
};

ConnectProxy::ConnectProxy() : impl_(std::make_unique<Impl>()) {
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([impl = impl_.get()] {
    for (;;) {
      auto client = std::make_shared<tcp::socket>(impl->ioc);
      boost::system::error_code ec;
      impl->acceptor.accept(*client, ec);
      if (ec) return;
      std::lock_guard lock(impl->mutex);
      impl->sockets.push_back(client);
      impl->relays.emplace_back([impl, client] { impl->serve(client); });
    }
  });
}

ConnectProxy::~ConnectProxy() {
  unblock(impl_->acceptor);
  impl_->accept_thread.join();
  std::vector<std::thread> relays;
  {
    std::lock_guard lock(impl_->mutex);
    for (auto& s : impl_->sockets)
      ::shutdown(s->native_handle(), SHUT_RDWR);
    relays = std::move(impl_->relays);
  }
  for (auto& t : relays)
    t.join();
}

std::vector<std::string> ConnectProxy::connect_lines() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->lines;
}

std::string ConnectProxy::client_bytes() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->client_bytes;
}

// ---------------------------------------------------------------------------------------------
struct HttpsServer::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor = loopback_acceptor(ioc);
  std::shared_ptr<asio::ssl::context> ctx;
  std::thread thread;
  mutable std::mutex mutex;
  std::vector<std::string> bodies;
};

HttpsServer::HttpsServer(const TestCert& cert, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->ctx = server_context(cert);
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->thread = std::thread([this, handler = std::move(handler)] {
    for (;;) {
      tcp::socket socket(impl_->ioc);
      boost::system::error_code ec;
      impl_->acceptor.accept(socket, ec);
      if (ec) return;
      asio::ssl::stream<tcp::socket> stream(std::move(socket), *impl_->ctx);
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (ec) continue;
      ++handshakes_;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(stream, buffer, req, ec);
      if (ec) continue;
      ++requests_;
      {
        std::lock_guard lock(impl_->mutex);
        impl_->bodies.push_back(req.body());
      }
      const auto [status, body] = handler(std::string(req.target()), req.body());
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, "application/json");
      res.body() = body;
      res.prepare_payload();
      http::write(stream, res, ec);
      stream.shutdown(ec);
    }
  });
}

HttpsServer::~HttpsServer() {
  unblock(impl_->acceptor);
  impl_->thread.join();
}

std::vector<std::string> HttpsServer::bodies() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->bodies;
}

// ---------------------------------------------------------------------------------------------
namespace {

class WssHubSession : public HubSession {
 public:
  explicit WssHubSession(websocket::stream<asio::ssl::stream<tcp::socket>>& ws) : ws_(ws) {}

  nlohmann::json next() override {
    for (;;) {
      auto frame = next_any();
      if (frame.value("t", "") != "hb") return frame;
    }
  }
  nlohmann::json next_unanswered() override {
    beast::flat_buffer buffer;
    ws_.read(buffer);
    return nlohmann::json::parse(beast::buffers_to_string(buffer.data()));
  }
  nlohmann::json next_any() override {
    beast::flat_buffer buffer;
    ws_.read(buffer);
    auto frame = nlohmann::json::parse(beast::buffers_to_string(buffer.data()));
    if (frame.value("t", "") == "hb") {
      ++heartbeats_;
      send({{"t", "hb_ack"}, {"seq", frame["seq"]}});
    }
    return frame;
  }
  void send(const nlohmann::json& frame) override {
    ws_.text(true);
    ws_.write(asio::buffer(frame.dump()));
  }
  void close(std::uint16_t code, const std::string& reason) override {
    ws_.close(websocket::close_reason(static_cast<websocket::close_code>(code), reason));
  }
  int heartbeats() const override { return heartbeats_; }
  std::string authorization() const override { return authorization_; }
  std::string subprotocol() const override { return subprotocol_; }

  std::string authorization_;
  std::string subprotocol_;

 private:
  websocket::stream<asio::ssl::stream<tcp::socket>>& ws_;
  int heartbeats_ = 0;
};

}  // namespace

struct FakeHub::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor = loopback_acceptor(ioc);
  std::shared_ptr<asio::ssl::context> ctx;
  std::thread thread;
  mutable std::mutex mutex;
  std::string error;
};

FakeHub::FakeHub(const TestCert& cert, std::function<void(HubSession&)> script)
    : FakeHub(cert, 1, [script = std::move(script)](HubSession& s, int) { script(s); }) {}

FakeHub::FakeHub(const TestCert& cert, int connections,
                 std::function<void(HubSession&, int)> script)
    : impl_(std::make_unique<Impl>()) {
  impl_->ctx = server_context(cert);
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->thread = std::thread([impl = impl_.get(), connections, script = std::move(script)] {
    for (int index = 0; index < connections; ++index)
      try {
        tcp::socket socket(impl->ioc);
        impl->acceptor.accept(socket);
        websocket::stream<asio::ssl::stream<tcp::socket>> ws(std::move(socket), *impl->ctx);
        ws.next_layer().handshake(asio::ssl::stream_base::server);
        beast::flat_buffer buffer;
        http::request<http::string_body> req;
        http::read(ws.next_layer(), buffer, req);
        WssHubSession session(ws);
        session.authorization_ = std::string(req[http::field::authorization]);
        session.subprotocol_ = std::string(req[http::field::sec_websocket_protocol]);
        if (req.target() != "/agent/v1") throw std::runtime_error("unexpected target");
        ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
          res.set(http::field::sec_websocket_protocol, "helm.agent.v1");
        }));
        ws.accept(req);
        script(session, index);
      } catch (const std::exception& e) {
        std::lock_guard lock(impl->mutex);
        impl->error = e.what();
      }
  });
}

FakeHub::~FakeHub() {
  unblock(impl_->acceptor);
  join();
}

void FakeHub::join() {
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string FakeHub::error() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->error;
}

}  // namespace helm::agent::testing
