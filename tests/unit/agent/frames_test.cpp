#include "helm/agent/frames.hpp"

#include <gtest/gtest.h>

namespace helm::agent {
namespace {

TEST(HubFrames, ParsesWelcomeHbAckAndCmd) {
  auto welcome = parse_hub_frame(R"({"t":"welcome","device_id":"d1","heartbeat_s":20,"x":1})");
  ASSERT_TRUE(welcome);
  ASSERT_TRUE(std::holds_alternative<WelcomeFrame>(*welcome));
  EXPECT_EQ(std::get<WelcomeFrame>(*welcome).heartbeat_s, 20);

  auto ack = parse_hub_frame(R"({"t":"hb_ack","seq":7})");
  ASSERT_TRUE(ack);
  EXPECT_EQ(std::get<HbAckFrame>(*ack).seq, 7u);

  auto cmd = parse_hub_frame(
      R"({"t":"cmd","id":"4f1c","kind":"ping","args":{"a":1},"deadline":"2030-01-01T00:00:00Z"})");
  ASSERT_TRUE(cmd);
  const auto& c = std::get<CmdFrame>(*cmd);
  EXPECT_EQ(c.id, "4f1c");
  EXPECT_EQ(c.kind, "ping");
  EXPECT_EQ(c.args["a"], 1);
  EXPECT_EQ(c.deadline, "2030-01-01T00:00:00Z");
}

TEST(HubFrames, UnknownTypeIsReportedSeparatelyFromMalformedFrames) {
  auto unknown = parse_hub_frame(R"({"t":"reboot_now","id":"x"})");
  ASSERT_TRUE(unknown);
  ASSERT_TRUE(std::holds_alternative<UnknownFrame>(*unknown));
  EXPECT_EQ(std::get<UnknownFrame>(*unknown).t, "reboot_now");

  EXPECT_FALSE(parse_hub_frame("not json"));
  EXPECT_FALSE(parse_hub_frame("[1,2]"));
  EXPECT_FALSE(parse_hub_frame(R"({"seq":1})"));
  EXPECT_FALSE(parse_hub_frame(R"({"t":5})"));
  EXPECT_FALSE(parse_hub_frame(R"({"t":"cmd","kind":"ping"})"));  // no id
  EXPECT_FALSE(parse_hub_frame(R"({"t":"cmd","id":"a","kind":"ping","args":[1]})"));
  EXPECT_FALSE(parse_hub_frame(R"({"t":"hb_ack","seq":"1"})"));
}

TEST(AgentFrames, CarryTheFieldsOfTheProtocol) {
  const auto hello = make_hello("1.0", "host", "linux", "boot");
  EXPECT_EQ(hello["t"], "hello");
  EXPECT_EQ(hello["boot_id"], "boot");
  EXPECT_EQ(make_hb(3)["seq"], 3);
  EXPECT_EQ(make_ack("i")["t"], "ack");
  const auto error = make_error("unknown_type", "no", "zz");
  EXPECT_EQ(error["t"], "error");
  EXPECT_EQ(error["ref"], "zz");
  const auto result = make_result("i", "timeout", -1, "o", "e", {{"k", 1}});
  for (const char* key : {"t", "id", "status", "exit_code", "stdout", "stderr", "data"}) {
    EXPECT_TRUE(result.contains(key)) << key;
  }
}

}  // namespace
}  // namespace helm::agent
