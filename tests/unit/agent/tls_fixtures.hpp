/// @brief Loopback test servers for the agent: a self-signed certificate made in-process, a tiny
/// HTTP CONNECT proxy, an HTTPS server and a minimal WSS hub, all on 127.0.0.1.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "helm/agent/pin.hpp"

namespace helm::agent::testing {

struct TestCert {
  std::string cert_pem;
  std::string key_pem;
  CertPin pin;  // SHA-256 of the certificate's DER
};

/// EC P-256, CN=localhost, subjectAltName IP:127.0.0.1 and DNS:localhost, valid for a day.
TestCert make_self_signed_cert();

/// HTTP CONNECT proxy: records each CONNECT line and every byte the client sent into tunnels.
class ConnectProxy {
 public:
  ConnectProxy();
  ~ConnectProxy();
  std::uint16_t port() const { return port_; }
  std::vector<std::string> connect_lines() const;
  std::string client_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

/// HTTPS server answering every request with `handler(target, body)` -> {status, json body}.
/// Counts completed TLS handshakes and the requests it read.
class HttpsServer {
 public:
  using Handler = std::function<std::pair<int, std::string>(const std::string& target,
                                                            const std::string& body)>;
  HttpsServer(const TestCert& cert, Handler handler);
  ~HttpsServer();
  std::uint16_t port() const { return port_; }
  int handshakes() const { return handshakes_; }
  int requests() const { return requests_; }
  std::vector<std::string> bodies() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
  std::atomic<int> handshakes_{0};
  std::atomic<int> requests_{0};
};

/// One upgraded hub-side WebSocket connection, driven synchronously by a test script.
class HubSession {
 public:
  virtual ~HubSession() = default;
  /// The next frame that is not a heartbeat; heartbeats are answered with hb_ack and counted.
  virtual nlohmann::json next() = 0;
  /// The next frame of any type; a heartbeat is answered and counted before it is returned.
  virtual nlohmann::json next_any() = 0;
  /// The next frame, heartbeats left unanswered (a hub that stopped responding).
  virtual nlohmann::json next_unanswered() = 0;
  virtual void send(const nlohmann::json& frame) = 0;
  virtual void close(std::uint16_t code, const std::string& reason) = 0;
  virtual int heartbeats() const = 0;
  virtual std::string authorization() const = 0;
  virtual std::string subprotocol() const = 0;
};

/// Accepts one WSS connection on /agent/v1 (answering subprotocol helm.agent.v1) and runs
/// `script` on it in a thread. Failures inside the script are recorded as `error()`.
class FakeHub {
 public:
  FakeHub(const TestCert& cert, std::function<void(HubSession&)> script);
  /// Accepts `connections` connections one after the other; `script` gets the 0-based index.
  FakeHub(const TestCert& cert, int connections, std::function<void(HubSession&, int)> script);
  ~FakeHub();
  std::uint16_t port() const { return port_; }
  void join();
  std::string error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

}  // namespace helm::agent::testing
