// helm-loadgen's simulation against the minimal WSS hub: one agent from a tokens file.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "loadgen.hpp"
#include "tls_fixtures.hpp"

namespace helm::agent {
namespace {

TEST(Loadgen, SimulatedAgentHelloesHeartbeatsAnswersPingAndReportsMeasurements) {
  ::signal(SIGPIPE, SIG_IGN);
  const auto cert = testing::make_self_signed_cert();
  nlohmann::json hello, ack, result;
  std::string authorization;
  testing::FakeHub hub(cert, [&](testing::HubSession& s) {
    authorization = s.authorization();
    hello = s.next();
    s.send({{"t", "welcome"}, {"device_id", "d-1"}, {"heartbeat_s", 1}});
    s.send({{"t", "cmd"}, {"id", "lg-1"}, {"kind", "ping"}, {"args", nlohmann::json::object()}});
    ack = s.next();
    result = s.next();
    for (;;)
      s.next_any();  // answer heartbeats until the load generator goes away
  });
  char tmpl[] = "/tmp/helm-loadgen-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  std::ofstream(dir / "tokens.jsonl")
      << nlohmann::json{{"device_id", "d-1"},
                        {"device_token", "tok-1"},
                        {"transport_url",
                         "wss://127.0.0.1:" + std::to_string(hub.port()) + "/agent/v1"},
                        {"heartbeat_s", 1}}
             .dump()
      << "\n";
  loadgen::Options options;
  options.tokens_file = (dir / "tokens.jsonl").string();
  options.trust.pin = cert.pin;
  options.duration_s = 3.5;  // at least two heartbeats at 1 s ±10 %, with margin
  options.json_only = true;
  options.hub_pid = ::getpid();  // any process will do for the sampling
  options.save_tokens = (dir / "saved.jsonl").string();
  const auto summary = loadgen::run(options);
  hub.join();
  std::filesystem::remove_all(dir);

  EXPECT_EQ(authorization, "Bearer tok-1");
  EXPECT_EQ(hello["t"], "hello");
  EXPECT_EQ(ack, (nlohmann::json{{"t", "ack"}, {"id", "lg-1"}}));
  EXPECT_EQ(result["data"]["pong"], true);
  EXPECT_EQ(summary["connected"], 1) << summary.dump();
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_GT(summary["connect_rate_per_s"].get<double>(), 0);
  EXPECT_GE(summary["hb_rtt_ms"]["n"].get<int>(), 2);
  EXPECT_GE(summary["hb_rtt_ms"]["max"].get<double>(), summary["hb_rtt_ms"]["p50"].get<double>());
  EXPECT_EQ(summary["commands"]["received"], 1);
  EXPECT_EQ(summary["commands"]["result_ms"]["n"], 1);
  EXPECT_TRUE(summary["errors"].empty()) << summary["errors"].dump();
  EXPECT_TRUE(summary["rss_per_agent_kib"].is_number());
  EXPECT_TRUE(summary["cpu_per_heartbeat_us"].is_number());
  EXPECT_GT(summary["hub"]["rss_kib"]["start"].get<long long>(), 0);
}

}  // namespace
}  // namespace helm::agent
