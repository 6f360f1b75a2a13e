// helm-loadgen's simulation against the minimal WSS hub: one agent from a tokens file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

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
  EXPECT_GE(summary["hub"]["tree_cpu_ms"]["end"].get<double>(),
            summary["hub"]["cpu_ms"]["end"].get<double>());
  EXPECT_TRUE(summary["tree_cpu_per_heartbeat_us"].is_number());
}

// The hub's figure "with its database" counts the processes under it: a child that burns CPU
// shows up in the tree of its parent and not in the parent's own time.
TEST(LoadgenHubSampling, ProcessTreeCpuCountsDescendants) {
  const double before = loadgen::process_tree_cpu_ms(::getpid());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    volatile unsigned long spin = 0;
    while (std::chrono::steady_clock::now() < until)
      spin = spin + 1;
    ::pause();  // stay alive (unreaped) until killed
    ::_exit(0);
  }
  // The child's 300 ms of CPU become visible once it is done spinning.
  double grown = 0;
  for (int i = 0; i < 100 && grown < 250; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    grown = loadgen::process_tree_cpu_ms(::getpid()) - before;
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_GE(grown, 250) << "the child's CPU is part of the tree";
  EXPECT_EQ(loadgen::process_tree_cpu_ms(-1), 0) << "no such process: nothing";
}

}  // namespace
}  // namespace helm::agent
