// transport-wss against real sockets: the built transport-wss.so is loaded with dlopen, driven
// through its entry table with a fake host, and spoken to by Beast WebSocket clients over TLS.
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include "fake_transport_host.hpp"
#include "test_certificate.hpp"

namespace helm::transport::testing {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using error_code = boost::system::error_code;
using nlohmann::json;
using namespace std::chrono_literals;

// ---- the plugin, loaded from disk ----

const helm_plugin_v1& plugin_table() {
  static const helm_plugin_v1* table = [] {
    void* library = dlopen(HELM_TRANSPORT_WSS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      ADD_FAILURE() << dlerror();
      return static_cast<const helm_plugin_v1*>(nullptr);
    }
    const auto entry =
        reinterpret_cast<helm_plugin_entry_fn>(dlsym(library, HELM_PLUGIN_ENTRY_SYMBOL));
    return entry == nullptr ? nullptr : entry();
  }();
  if (table == nullptr) throw std::runtime_error("transport-wss.so did not load");
  return *table;
}

class RunningTransport {
 public:
  RunningTransport(FakeTransportHost& host, const json& config) : table_(plugin_table()) {
    helm_error error{};
    error.struct_size = sizeof error;
    const std::string text = config.dump();
    status_ = table_.create(&host.api(), text.data(), text.size(), &instance_, &error);
    if (status_ != HELM_STATUS_OK) {
      message_ = error.message;
      return;
    }
    status_ = table_.start(instance_, &error);
    if (status_ != HELM_STATUS_OK) {
      message_ = error.message;
      table_.destroy(instance_);
      instance_ = nullptr;
      return;
    }
    started_ = true;
    const std::string url = host.listening_url();
    port_ = static_cast<unsigned short>(std::stoi(url.substr(url.rfind(':') + 1)));
  }
  ~RunningTransport() {
    if (instance_ == nullptr) return;
    if (started_) stop();
    table_.destroy(instance_);
  }
  void stop() {
    if (!started_) return;
    started_ = false;
    table_.stop(instance_);
  }

  helm_status status() const { return status_; }
  const std::string& message() const { return message_; }
  unsigned short port() const { return port_; }

  helm_status send(const std::string& device_id, const std::string& frame) {
    return table_.device_send(instance_, device_id.data(), device_id.size(), frame.data(),
                              frame.size());
  }
  void close(const std::string& device_id, std::uint16_t code, const std::string& reason) {
    table_.device_close(instance_, device_id.data(), device_id.size(), code, reason.data(),
                        reason.size());
  }

 private:
  const helm_plugin_v1& table_;
  helm_plugin_instance* instance_ = nullptr;
  helm_status status_ = HELM_STATUS_INTERNAL;
  std::string message_;
  bool started_ = false;
  unsigned short port_ = 0;
};

// ---- an agent-side client ----

class Client {
 public:
  explicit Client(net::io_context& io, int max_tls_version = TLS1_3_VERSION)
      : io_(io), tls_(ssl::context::tls_client) {
    tls_.set_verify_mode(ssl::verify_none);
    SSL_CTX_set_max_proto_version(tls_.native_handle(), max_tls_version);
    ws_.emplace(io_, tls_);
  }

  /// Connects and upgrades; the upgrade response is kept in response().
  error_code connect(unsigned short port, const std::string& token,
                     const std::string& target = "/agent/v1") {
    error_code ec;
    beast::get_lowest_layer(*ws_).connect({net::ip::make_address("127.0.0.1"), port}, ec);
    if (ec) return ec;
    ec = run([&](auto done) { ws_->next_layer().async_handshake(ssl::stream_base::client, done); });
    if (ec) return ec;
    ws_->set_option(websocket::stream_base::decorator([token](websocket::request_type& request) {
      if (!token.empty()) request.set(http::field::authorization, "Bearer " + token);
      request.set(http::field::sec_websocket_protocol, "helm.agent.v1");
    }));
    ws_->read_message_max(64 * 1024 * 1024);
    return run([&](auto done) { ws_->async_handshake(response_, "localhost", target, done); });
  }

  /// Connects, says hello and returns the welcome (empty on failure).
  json join(unsigned short port, const std::string& token) {
    if (connect(port, token)) return {};
    if (send(json{{"t", "hello"}, {"agent_version", "1.0.0"}, {"hostname", "pc-1"}}.dump())) {
      return {};
    }
    const auto welcome = read();
    return welcome ? json::parse(*welcome, nullptr, false) : json();
  }

  error_code send(const std::string& text, std::chrono::milliseconds timeout = 5s) {
    ws_->text(true);
    return run([&](auto done) { ws_->async_write(net::buffer(text), done); }, timeout);
  }

  /// The next message, or nullopt (error in last_error(): closed, timed out, ...).
  std::optional<std::string> read(std::chrono::milliseconds timeout = 5s) {
    beast::flat_buffer buffer;
    last_error_ = run([&](auto done) { ws_->async_read(buffer, done); }, timeout);
    if (last_error_) return std::nullopt;
    return beast::buffers_to_string(buffer.data());
  }
  json read_json(std::chrono::milliseconds timeout = 5s) {
    const auto text = read(timeout);
    return text ? json::parse(*text, nullptr, false) : json();
  }

  /// Reads until the connection closes; returns the close code the server sent (0: none).
  int wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (!read(std::chrono::duration_cast<std::chrono::milliseconds>(
              until - std::chrono::steady_clock::now()))) {
        return last_error_ == websocket::error::closed ? static_cast<int>(ws_->reason().code) : 0;
      }
    }
    return -1;
  }

  const websocket::response_type& response() const { return response_; }
  const error_code& last_error() const { return last_error_; }
  void drop() {
    error_code ignored;
    beast::get_lowest_layer(*ws_).close(ignored);
  }

 private:
  /// Runs one asynchronous operation on io_ for at most `timeout`.
  template <typename Start>
  error_code run(Start start, std::chrono::milliseconds timeout = 5s) {
    bool finished = false;
    error_code result;
    start([&](error_code ec, auto&&...) {
      finished = true;
      result = ec;
    });
    io_.restart();
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!finished && std::chrono::steady_clock::now() < until)
      io_.run_one_until(until);
    if (finished) return result;
    drop();  // cancels the operation; let it finish before its state goes
    io_.restart();
    while (!finished)
      io_.run_one_for(1s);
    return net::error::timed_out;
  }

  net::io_context& io_;
  ssl::context tls_;
  std::optional<websocket::stream<ssl::stream<net::ip::tcp::socket>>> ws_;
  websocket::response_type response_;
  error_code last_error_;
};

// ---- fixture ----

class TransportWss : public ::testing::Test {
 protected:
  TransportWss()
      : host_(json{{"tls_cert_file", certificate().cert_file},
                   {"tls_key_file", certificate().key_file},
                   {"heartbeat_s", 30},
                   {"max_frame_bytes", 1024 * 1024}}
                  .dump()) {
    host_.add_device("token-a", "dev-a");
    host_.add_device("token-b", "dev-b");
  }

  // Every connection the hub heard CONNECTED for was DISCONNECTED exactly once, after it.
  void TearDown() override {
    transport_.reset();
    std::map<std::uint64_t, std::pair<int, int>> seen;  // connection -> (connected, disconnected)
    for (const auto& event : host_.events()) {
      auto& [connected, disconnected] = seen[event.connection_id];
      if (event.kind == HELM_DEVICE_CONNECTED) {
        EXPECT_EQ(connected + disconnected, 0) << "connection " << event.connection_id;
        ++connected;
      } else if (event.kind == HELM_DEVICE_DISCONNECTED) {
        ++disconnected;
      } else {
        EXPECT_EQ(connected - disconnected, 1)
            << "frame outside connection " << event.connection_id;
      }
    }
    for (const auto& [id, counts] : seen) {
      EXPECT_EQ(counts.first, 1) << "connection " << id;
      EXPECT_EQ(counts.second, 1) << "connection " << id;
    }
  }

  void start(json config = json::object()) {
    config["listen"] = "127.0.0.1:0";
    transport_ = std::make_unique<RunningTransport>(host_, config);
    ASSERT_EQ(transport_->status(), HELM_STATUS_OK) << transport_->message();
  }

  unsigned short port() const { return transport_->port(); }

  bool wait_for_event(const std::string& device, helm_device_event_kind kind, std::size_t count = 1,
                      std::chrono::milliseconds timeout = 5s) {
    return host_.wait_for_events(
        [&](const std::vector<RecordedEvent>& events) {
          std::size_t seen = 0;
          for (const auto& event : events) {
            if (event.device_id == device && event.kind == kind) ++seen;
          }
          return seen >= count;
        },
        timeout);
  }

  std::size_t count_events(const std::string& device, helm_device_event_kind kind) {
    std::size_t seen = 0;
    for (const auto& event : host_.events_of(device))
      seen += event.kind == kind ? 1 : 0;
    return seen;
  }

  net::io_context io_;
  FakeTransportHost host_;
  std::unique_ptr<RunningTransport> transport_;
};

TEST_F(TransportWss, TellsTheHubWhereItListens) {
  start();
  EXPECT_EQ(host_.listening_url(), "wss://127.0.0.1:" + std::to_string(port()) + "/agent/v1");
}

TEST_F(TransportWss, RefusesUnknownOrMissingTokenWith401BeforeTheUpgrade) {
  start();
  Client unknown(io_);
  EXPECT_EQ(unknown.connect(port(), "token-nobody"), websocket::error::upgrade_declined);
  EXPECT_EQ(unknown.response().result_int(), 401);
  Client missing(io_);
  EXPECT_EQ(missing.connect(port(), ""), websocket::error::upgrade_declined);
  EXPECT_EQ(missing.response().result_int(), 401);
  EXPECT_TRUE(host_.events().empty());
}

TEST_F(TransportWss, Answers503WhenTheHubCannotCheckTokens) {
  start();
  Client client(io_);
  EXPECT_EQ(client.connect(port(), "unavailable"), websocket::error::upgrade_declined);
  EXPECT_EQ(client.response().result_int(), 503);
}

TEST_F(TransportWss, RefusesOtherPathsWith404) {
  start();
  Client client(io_);
  EXPECT_EQ(client.connect(port(), "token-a", "/agent/v2"), websocket::error::upgrade_declined);
  EXPECT_EQ(client.response().result_int(), 404);
  EXPECT_EQ(host_.auth_calls(), 0u);
}

TEST_F(TransportWss, WelcomesHelloEchoesSubprotocolAndReportsConnected) {
  start();
  Client client(io_);
  const json welcome = client.join(port(), "token-a");
  EXPECT_EQ(client.response()[http::field::sec_websocket_protocol], "helm.agent.v1");
  ASSERT_TRUE(welcome.is_object()) << welcome;
  EXPECT_EQ(welcome["t"], "welcome");
  EXPECT_EQ(welcome["device_id"], "dev-a");
  EXPECT_EQ(welcome["heartbeat_s"], 30);
  EXPECT_TRUE(welcome["server_time"].is_string());
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_CONNECTED));
  const auto events = host_.events_of("dev-a");
  EXPECT_NE(events.front().connection_id, 0u);
  EXPECT_EQ(json::parse(events.front().frame)["t"], "hello");
}

TEST_F(TransportWss, AnswersHeartbeatsItselfWithoutTellingTheHub) {
  start();
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  ASSERT_FALSE(client.send(R"({"t":"hb","seq":41})"));
  const json ack = client.read_json();
  EXPECT_EQ(ack, json({{"t", "hb_ack"}, {"seq", 41}}));
  // Both key orders of the common shape take the quick path; every other spelling the general
  // one; the answers are the same either way.
  const std::vector<std::pair<std::string, json>> cases = {
      {R"({"seq":42,"t":"hb"})", 42},
      {R"({"t":"hb","seq":0})", 0},
      {R"({"t":"hb","seq":123456789012345})", 123456789012345},
      {R"({"t":"hb","seq":12345678901234567})", 12345678901234567},
      {R"({ "t" : "hb", "seq" : 7 })", 7},
      {R"({"t":"hb","seq":007})", nullptr},  // not JSON: an error frame instead
      {R"({"t":"hb","seq":1.5})", 1.5},
      {R"({"t":"hb","seq":"x"})", "x"},
      {R"({"t":"hb"})", nullptr},
      {R"({"seq":9,"t":"hb","extra":true})", 9},
  };
  for (const auto& [frame, seq] : cases) {
    ASSERT_FALSE(client.send(frame));
    const json answer = client.read_json();
    if (frame.find("007") != std::string::npos) {
      EXPECT_EQ(answer["t"], "error") << frame;
      continue;
    }
    json expected = {{"t", "hb_ack"}};
    if (!seq.is_null()) expected["seq"] = seq;
    EXPECT_EQ(answer, expected) << frame;
  }
  for (const auto& event : host_.events())
    EXPECT_NE(event.kind, HELM_DEVICE_FRAME);
}

TEST_F(TransportWss, PassesAckResultAndEventFramesToTheHub) {
  start();
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  const std::vector<std::string> frames = {
      R"({"t":"ack","id":"c1"})",
      R"({"t":"result","id":"c1","status":"ok","exit_code":0,"data":{"pong":true}})",
      R"({"t":"event","kind":"alert","data":{"x":1}})"};
  for (const auto& frame : frames)
    ASSERT_FALSE(client.send(frame));
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_FRAME, 3));
  std::vector<std::string> seen;
  for (const auto& event : host_.events_of("dev-a")) {
    if (event.kind == HELM_DEVICE_FRAME) seen.push_back(event.frame);
  }
  EXPECT_EQ(seen, frames);
}

TEST_F(TransportWss, AnswersUnknownTypesAndNonObjectsWithErrorFramesAndStaysOpen) {
  start();
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  ASSERT_FALSE(client.send(R"({"t":"teleport","id":"x9"})"));
  json error = client.read_json();
  EXPECT_EQ(error["t"], "error");
  EXPECT_EQ(error["code"], "unknown_type");
  EXPECT_EQ(error["ref"], "x9");
  EXPECT_TRUE(error["message"].is_string());
  ASSERT_FALSE(client.send("this is not json"));
  error = client.read_json();
  EXPECT_EQ(error["t"], "error");
  EXPECT_EQ(error["code"], "bad_frame");
  ASSERT_FALSE(client.send("[1,2]"));
  EXPECT_EQ(client.read_json()["code"], "bad_frame");
  ASSERT_FALSE(client.send(R"({"t":"hb","seq":1})"));
  EXPECT_EQ(client.read_json()["t"], "hb_ack");
}

TEST_F(TransportWss, ClosesWith1008WhenTheFirstFrameIsNotHello) {
  start();
  Client client(io_);
  ASSERT_FALSE(client.connect(port(), "token-a"));
  ASSERT_FALSE(client.send(R"({"t":"hb","seq":1})"));
  EXPECT_EQ(client.wait_closed(), 1008);
  EXPECT_EQ(count_events("dev-a", HELM_DEVICE_CONNECTED), 0u);
}

TEST_F(TransportWss, ClosesWith1009OnAFrameLargerThanTheLimit) {
  start();
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  const std::string big = R"({"t":"event","data":")" + std::string(2 * 1024 * 1024, 'x') + R"("})";
  client.send(big, 10s);  // may fail once the server has closed
  EXPECT_EQ(client.wait_closed(), 1009);
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_DISCONNECTED));
  EXPECT_EQ(count_events("dev-a", HELM_DEVICE_FRAME), 0u);
}

TEST_F(TransportWss, RefusesTls12Clients) {
  start();
  Client client(io_, TLS1_2_VERSION);
  EXPECT_TRUE(client.connect(port(), "token-a"));
  EXPECT_EQ(host_.auth_calls(), 0u);
}

TEST_F(TransportWss, ANewConnectionOfTheSameDeviceClosesTheOlderWith4009) {
  start();
  Client first(io_);
  ASSERT_TRUE(first.join(port(), "token-a").is_object());
  Client second(io_);
  ASSERT_TRUE(second.join(port(), "token-a").is_object());
  EXPECT_EQ(first.wait_closed(), 4009);
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_DISCONNECTED));
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_CONNECTED, 2));
  // The newer connection is the live one.
  ASSERT_EQ(transport_->send("dev-a", R"({"t":"cmd","id":"c2","kind":"ping"})"), HELM_STATUS_OK);
  EXPECT_EQ(second.read_json()["id"], "c2");
}

TEST_F(TransportWss, DeviceSendDeliversACommandAndReportsUnknownDevices) {
  start();
  EXPECT_EQ(transport_->send("dev-a", R"({"t":"cmd"})"), HELM_STATUS_NOT_FOUND);
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  const std::string cmd =
      R"({"t":"cmd","id":"3f1c","kind":"ping","args":{},"deadline":"2030-01-01T00:00:00Z"})";
  ASSERT_EQ(transport_->send("dev-a", cmd), HELM_STATUS_OK);
  EXPECT_EQ(client.read(), cmd);
}

TEST_F(TransportWss, DeviceCloseClosesWithTheCodeWithinASecond) {
  start();
  Client client(io_);
  ASSERT_TRUE(client.join(port(), "token-a").is_object());
  const auto begin = std::chrono::steady_clock::now();
  transport_->close("dev-a", 4001, "token revoked");
  EXPECT_EQ(client.wait_closed(2s), 4001);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s);
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_DISCONNECTED));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(count_events("dev-a", HELM_DEVICE_DISCONNECTED), 1u);
  EXPECT_EQ(transport_->send("dev-a", R"({"t":"cmd"})"), HELM_STATUS_NOT_FOUND);
}

TEST_F(TransportWss, AnAgentThatStopsReadingIsClosedAndDoesNotStallOthers) {
  start({{"send_queue_max", {{"frames", 64}, {"bytes", 256 * 1024}}}});
  Client slow(io_);
  ASSERT_TRUE(slow.join(port(), "token-a").is_object());
  Client quick(io_);
  ASSERT_TRUE(quick.join(port(), "token-b").is_object());
  const std::string cmd = R"({"t":"cmd","kind":"x","args":")" + std::string(60000, 'y') + R"("})";
  helm_status status = HELM_STATUS_OK;
  int sent = 0;
  for (; sent < 5000 && status == HELM_STATUS_OK; ++sent) {
    status = transport_->send("dev-a", cmd);
    std::this_thread::sleep_for(1ms);  // slower than loopback: the queue drains into TCP
    if (sent % 20 == 0) {
      // The other agent keeps heartbeating and is answered promptly.
      const auto begin = std::chrono::steady_clock::now();
      ASSERT_FALSE(quick.send(R"({"t":"hb","seq":)" + std::to_string(sent) + "}"));
      const json ack = quick.read_json(2s);
      ASSERT_EQ(ack["seq"], sent) << ack;
      EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s);
    }
  }
  EXPECT_EQ(status, HELM_STATUS_RESOURCE_EXHAUSTED) << "after " << sent << " frames";
  // More went out than the queue holds (256 KiB): the agent's socket buffers filled first.
  EXPECT_GT(static_cast<std::size_t>(sent) * cmd.size(), 256u * 1024u);
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_DISCONNECTED));
  ASSERT_FALSE(quick.send(R"({"t":"hb","seq":-1})"));
  EXPECT_EQ(quick.read_json()["seq"], -1);
  EXPECT_EQ(count_events("dev-b", HELM_DEVICE_DISCONNECTED), 0u);
}

TEST_F(TransportWss, StopClosesEveryConnectionWith1012) {
  start();
  Client a(io_);
  ASSERT_TRUE(a.join(port(), "token-a").is_object());
  Client b(io_);
  ASSERT_TRUE(b.join(port(), "token-b").is_object());
  // Read both while stop() runs on another thread (it waits for the close handshakes).
  std::thread stopper([this] { transport_->stop(); });
  EXPECT_EQ(a.wait_closed(), 1012);
  EXPECT_EQ(b.wait_closed(), 1012);
  stopper.join();
  EXPECT_EQ(count_events("dev-a", HELM_DEVICE_DISCONNECTED), 1u);
  EXPECT_EQ(count_events("dev-b", HELM_DEVICE_DISCONNECTED), 1u);
}

TEST_F(TransportWss, ClosesAConnectionSilentForThreeHeartbeatIntervals) {
  host_.set_heartbeat_s(1);
  start();
  Client client(io_);
  const json welcome = client.join(port(), "token-a");
  ASSERT_EQ(welcome["heartbeat_s"], 1);
  const auto begin = std::chrono::steady_clock::now();
  EXPECT_EQ(client.wait_closed(8s), 1000);
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 2s);
  ASSERT_TRUE(wait_for_event("dev-a", HELM_DEVICE_DISCONNECTED));
}

TEST_F(TransportWss, Serves200ConcurrentConnections) {
  start();
  constexpr int kAgents = 200;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kAgents; ++i) {
    const std::string token = "token-n" + std::to_string(i);
    host_.add_device(token, "dev-n" + std::to_string(i));
    clients.push_back(std::make_unique<Client>(io_));
    ASSERT_TRUE(clients.back()->join(port(), token).is_object()) << "agent " << i;
  }
  for (int i = 0; i < kAgents; ++i) {
    ASSERT_FALSE(clients[i]->send(R"({"t":"hb","seq":)" + std::to_string(i) + "}"));
  }
  for (int i = 0; i < kAgents; ++i)
    EXPECT_EQ(clients[i]->read_json()["seq"], i);
  std::size_t connected = 0;
  for (const auto& event : host_.events())
    connected += event.kind == HELM_DEVICE_CONNECTED;
  EXPECT_EQ(connected, static_cast<std::size_t>(kAgents));
  for (int i = 0; i < kAgents; i += 37) {
    const std::string device = "dev-n" + std::to_string(i);
    ASSERT_EQ(transport_->send(device, R"({"t":"cmd","id":")" + device + R"("})"), HELM_STATUS_OK);
    EXPECT_EQ(clients[i]->read_json()["id"], device);
  }
}

TEST_F(TransportWss, SpreadsConnectionsOverSeveralIoThreads) {
  start({{"io_threads", 3}});
  constexpr int kAgents = 12;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kAgents; ++i) {
    const std::string token = "token-t" + std::to_string(i);
    host_.add_device(token, "dev-t" + std::to_string(i));
    clients.push_back(std::make_unique<Client>(io_));
    ASSERT_TRUE(clients.back()->join(port(), token).is_object()) << "agent " << i;
  }
  for (int i = 0; i < kAgents; ++i) {
    const std::string device = "dev-t" + std::to_string(i);
    ASSERT_EQ(transport_->send(device, R"({"t":"cmd","id":")" + device + R"("})"), HELM_STATUS_OK);
    ASSERT_FALSE(clients[i]->send(R"({"t":"hb","seq":)" + std::to_string(i) + "}"));
  }
  for (int i = 0; i < kAgents; ++i) {
    EXPECT_EQ(clients[i]->read_json()["id"], "dev-t" + std::to_string(i));
    EXPECT_EQ(clients[i]->read_json()["seq"], i);
  }
  // A newer connection on another thread supersedes the older one.
  Client newer(io_);
  ASSERT_TRUE(newer.join(port(), "token-t0").is_object());
  EXPECT_EQ(clients[0]->wait_closed(), 4009);
  std::thread stopper([this] { transport_->stop(); });
  for (int i = 1; i < kAgents; ++i)
    EXPECT_EQ(clients[i]->wait_closed(), 1012) << "agent " << i;
  EXPECT_EQ(newer.wait_closed(), 1012);
  stopper.join();
}

TEST_F(TransportWss, RefusesAConfigurationWithUnknownKeys) {
  transport_ = std::make_unique<RunningTransport>(host_, json{{"lisen", "127.0.0.1:0"}});
  EXPECT_EQ(transport_->status(), HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(transport_->message().find("lisen"), std::string::npos);
}

}  // namespace
}  // namespace helm::transport::testing
