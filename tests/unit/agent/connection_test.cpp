// The agent's network paths against loopback servers: enrollment through a CONNECT proxy, pin
// refusal before the key leaves, and the run loop against a minimal WSS hub.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "helm/agent/agent.hpp"
#include "helm/agent/enroll.hpp"
#include "helm/agent/state.hpp"
#include "tls_fixtures.hpp"

namespace helm::agent {
namespace {

using testing::ConnectProxy;
using testing::FakeHub;
using testing::HttpsServer;
using testing::HubSession;

constexpr const char* kKey = "hlme_enrollment_key_SECRET_1234";
constexpr const char* kToken = "hlmd_device_token_SECRET_5678";

class AgentNetwork : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::signal(SIGPIPE, SIG_IGN);
    cert_ = new testing::TestCert(testing::make_self_signed_cert());
  }
  static void TearDownTestSuite() { delete cert_; }
  void SetUp() override {
    char tmpl[] = "/tmp/helm-agent-net-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  EnrollRequest request(std::uint16_t server_port, std::optional<ProxyConfig> proxy) {
    EnrollRequest req;
    req.server = "https://127.0.0.1:" + std::to_string(server_port);
    req.enrollment_key = kKey;
    req.trust.pin = cert_->pin;
    req.proxy = std::move(proxy);
    req.machine_id = "machine-1";
    req.host = host_identity();
    req.timeout = std::chrono::seconds(10);
    return req;
  }

  static HttpsServer::Handler enroll_handler() {
    return [](const std::string& target, const std::string&) -> std::pair<int, std::string> {
      if (target != "/api/v1/agent/enroll") return {404, "{}"};
      return {201, nlohmann::json{{"device_id", "dev-42"},
                                  {"device_token", kToken},
                                  {"transport_url", "wss://127.0.0.1:1/agent/v1"},
                                  {"heartbeat_s", 25}}
                       .dump()};
    };
  }

  static inline testing::TestCert* cert_ = nullptr;
  std::filesystem::path dir_;
};

TEST_F(AgentNetwork, EnrollsThroughAConnectProxyWithAPinnedCertificate) {
  HttpsServer server(*cert_, enroll_handler());
  ConnectProxy proxy;
  auto outcome = enroll(request(server.port(), ProxyConfig{"127.0.0.1", proxy.port(), ""}));
  ASSERT_TRUE(std::holds_alternative<AgentState>(outcome))
      << std::get<EnrollFailure>(outcome).message;
  const auto& state = std::get<AgentState>(outcome);
  EXPECT_EQ(state.device_id, "dev-42");
  EXPECT_EQ(state.device_token, kToken);
  EXPECT_EQ(state.heartbeat_s, 25);
  EXPECT_EQ(state.ca_pin, format_pin(cert_->pin));
  const auto lines = proxy.connect_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "CONNECT 127.0.0.1:" + std::to_string(server.port()) + " HTTP/1.1");
  // The key crossed the proxy only inside TLS.
  EXPECT_EQ(proxy.client_bytes().find(kKey), std::string::npos);
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  const auto body = nlohmann::json::parse(bodies[0]);
  EXPECT_EQ(body["enrollment_key"], kKey);
  EXPECT_EQ(body["machine_id"], "machine-1");
  for (const char* key : {"hostname", "os", "os_version", "arch", "agent_version"}) {
    EXPECT_TRUE(body.contains(key)) << key;
  }
}

TEST_F(AgentNetwork, PinMismatchIsRefusedBeforeAnyByteOfTheKeyIsSent) {
  HttpsServer server(*cert_, enroll_handler());
  ConnectProxy proxy;
  auto req = request(server.port(), ProxyConfig{"127.0.0.1", proxy.port(), ""});
  (*req.trust.pin)[0] ^= 0xff;
  auto outcome = enroll(req);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the server finish its side
  ASSERT_TRUE(std::holds_alternative<EnrollFailure>(outcome));
  EXPECT_NE(std::get<EnrollFailure>(outcome).message.find("pin"), std::string::npos)
      << std::get<EnrollFailure>(outcome).message;
  EXPECT_EQ(server.requests(), 0);
  EXPECT_EQ(server.handshakes(), 0);
  EXPECT_EQ(proxy.connect_lines().size(), 1u);  // the tunnel was used, nothing went through it
  EXPECT_EQ(proxy.client_bytes().find(kKey), std::string::npos);
}

TEST_F(AgentNetwork, CaFileVerifiesTheHubAndAWrongCaIsRefused) {
  HttpsServer server(*cert_, enroll_handler());
  const auto ca = dir_ / "ca.pem";
  std::ofstream(ca) << cert_->cert_pem;
  auto req = request(server.port(), std::nullopt);
  req.trust.pin.reset();
  req.trust.ca_file = ca.string();
  auto outcome = enroll(req);
  ASSERT_TRUE(std::holds_alternative<AgentState>(outcome))
      << std::get<EnrollFailure>(outcome).message;
  EXPECT_EQ(std::get<AgentState>(outcome).ca_file, ca.string());

  const auto other = dir_ / "other.pem";
  std::ofstream(other) << testing::make_self_signed_cert().cert_pem;
  req.trust.ca_file = other.string();
  auto refused = enroll(req);
  ASSERT_TRUE(std::holds_alternative<EnrollFailure>(refused));
  EXPECT_EQ(server.requests(), 1);
}

TEST_F(AgentNetwork, RunLoopAcksRunsOnceAnswersDuplicatesFromTheStoreAndStopsOn4001) {
  const auto marker = dir_ / "runs.txt";
  std::ofstream(dir_ / "policy.json") << R"({"allowed_interpreters": ["/bin/sh"]})";
  const nlohmann::json cmd = {{"t", "cmd"},
                              {"id", "7d9e4c1a-0000-4000-8000-000000000001"},
                              {"kind", "run_script"},
                              {"args",
                               {{"interpreter", "/bin/sh"},
                                {"script", "echo run >> " + marker.string() + "; echo hi"},
                                {"timeout_s", 10}}},
                              {"deadline", "2099-01-01T00:00:00Z"}};
  nlohmann::json hello, error_frame, ack1, result1, ack2, result2;
  int heartbeats = 0;
  std::string authorization, subprotocol;
  FakeHub hub(*cert_, [&](HubSession& s) {
    authorization = s.authorization();
    subprotocol = s.subprotocol();
    hello = s.next();
    s.send({{"t", "welcome"}, {"device_id", "dev-42"}, {"heartbeat_s", 1}, {"server_time", 0}});
    s.send({{"t", "reboot_everything"}});
    error_frame = s.next();
    s.send(cmd);
    ack1 = s.next();
    result1 = s.next();
    s.send(cmd);  // the hub did not see the ack in time and resends
    ack2 = s.next();
    result2 = s.next();
    while (s.heartbeats() == 0) {
      const auto extra = s.next_any();
      if (extra["t"] != "hb") ADD_FAILURE() << "unexpected frame " << extra.dump();
    }
    heartbeats = s.heartbeats();
    s.close(4001, "device deleted");
  });
  ConnectProxy proxy;
  AgentState state;
  state.server = "https://127.0.0.1:" + std::to_string(hub.port());
  state.device_id = "dev-42";
  state.device_token = kToken;
  state.transport_url = "wss://127.0.0.1:" + std::to_string(hub.port()) + "/agent/v1";
  state.heartbeat_s = 1;
  state.ca_pin = format_pin(cert_->pin);
  ASSERT_TRUE(save_state(dir_, state));

  RunOptions options;
  options.state_dir = dir_;
  options.proxy = "http://127.0.0.1:" + std::to_string(proxy.port());
  options.max_connection_attempts = 3;
  auto run = std::async(std::launch::async, [&] { return run_agent(options); });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(run.get(), kExitRevoked);
  hub.join();
  EXPECT_EQ(hub.error(), "");

  EXPECT_EQ(authorization, std::string("Bearer ") + kToken);
  EXPECT_EQ(subprotocol, "helm.agent.v1");
  EXPECT_EQ(hello["t"], "hello");
  EXPECT_FALSE(hello["boot_id"].get<std::string>().empty());
  EXPECT_EQ(error_frame["t"], "error");
  EXPECT_EQ(error_frame["ref"], "reboot_everything");
  EXPECT_EQ(ack1, (nlohmann::json{{"t", "ack"}, {"id", cmd["id"]}}));
  EXPECT_EQ(result1["t"], "result");
  EXPECT_EQ(result1["status"], "ok");
  EXPECT_EQ(result1["stdout"], "hi\n");
  EXPECT_EQ(ack2, ack1);
  EXPECT_EQ(result2, result1);
  EXPECT_GE(heartbeats, 1);
  std::ifstream runs(marker);
  std::string all((std::istreambuf_iterator<char>(runs)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "run\n");  // ran exactly once
  ASSERT_EQ(proxy.connect_lines().size(), 1u);
  EXPECT_EQ(proxy.client_bytes().find(kToken), std::string::npos);

  auto saved = load_state(dir_);
  ASSERT_TRUE(saved) << saved.error().message;
  EXPECT_NE(saved->revoked_reason.find("4001"), std::string::npos);
  EXPECT_EQ(run_agent(options), kExitRevoked);  // and it does not try again
}

TEST_F(AgentNetwork, HubThatStopsAnsweringHeartbeatsIsDroppedAfterThreeIntervals) {
  int unanswered = 0;
  FakeHub hub(*cert_, [&](HubSession& s) {
    s.next();  // hello
    s.send({{"t", "welcome"}, {"device_id", "dev-42"}, {"heartbeat_s", 1}});
    for (;;) {
      if (s.next_unanswered()["t"] == "hb") ++unanswered;  // until the agent drops us
    }
  });
  AgentState state;
  state.device_token = kToken;
  state.transport_url = "wss://127.0.0.1:" + std::to_string(hub.port()) + "/agent/v1";
  state.heartbeat_s = 1;
  state.ca_pin = format_pin(cert_->pin);
  ASSERT_TRUE(save_state(dir_, state));
  RunOptions options;
  options.state_dir = dir_;
  options.max_connection_attempts = 1;
  const auto started = std::chrono::steady_clock::now();
  auto run = std::async(std::launch::async, [&] { return run_agent(options); });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(run.get(), kExitStopped);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  hub.join();
  // Heartbeats at ~1 s: dropped after more than three seconds without an answer, not long after.
  EXPECT_GE(elapsed, std::chrono::seconds(3));
  EXPECT_LT(elapsed, std::chrono::seconds(8));
  EXPECT_GE(unanswered, 2);
  EXPECT_NE(hub.error(), "");  // the hub's read failed when the agent dropped the connection
}

TEST_F(AgentNetwork, SupersededConnectionStopsTheAgentWithoutRevokingIt) {
  int accepted = 0;
  FakeHub hub(*cert_, 1, [&](HubSession& s, int) {
    ++accepted;
    s.next();  // hello
    s.send({{"t", "welcome"}, {"device_id", "dev-42"}, {"heartbeat_s", 30}});
    s.close(4009, "superseded by a newer connection");
  });
  AgentState state;
  state.device_token = kToken;
  state.transport_url = "wss://127.0.0.1:" + std::to_string(hub.port()) + "/agent/v1";
  state.ca_pin = format_pin(cert_->pin);
  ASSERT_TRUE(save_state(dir_, state));
  RunOptions options;
  options.state_dir = dir_;
  options.max_connection_attempts = 5;
  auto run = std::async(std::launch::async, [&] { return run_agent(options); });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  // Another agent holds this token: no reconnect (that would flap between the two), but the
  // device is not revoked either.
  EXPECT_EQ(run.get(), kExitSuperseded);
  hub.join();
  EXPECT_EQ(hub.error(), "");
  EXPECT_EQ(accepted, 1);
  auto reloaded = load_state(dir_);
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->revoked_reason, "");
}

TEST_F(AgentNetwork, RunLoopRefusesAHubWhoseCertificateDoesNotMatchThePin) {
  bool upgraded = false;
  FakeHub hub(*cert_, [&](HubSession&) { upgraded = true; });
  AgentState state;
  state.device_token = kToken;
  state.transport_url = "wss://127.0.0.1:" + std::to_string(hub.port()) + "/agent/v1";
  auto wrong = cert_->pin;
  wrong[5] ^= 1;
  state.ca_pin = format_pin(wrong);
  ASSERT_TRUE(save_state(dir_, state));
  RunOptions options;
  options.state_dir = dir_;
  options.max_connection_attempts = 1;
  EXPECT_EQ(run_agent(options), kExitStopped);
  hub.join();
  EXPECT_FALSE(upgraded);
  EXPECT_NE(hub.error(), "");  // the hub saw the handshake aborted
}

}  // namespace
}  // namespace helm::agent
