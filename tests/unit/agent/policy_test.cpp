#include "helm/agent/policy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "helm/agent/commands.hpp"

namespace helm::agent {
namespace {

TEST(ScriptPolicy, ParsesInterpretersCapAndTimeout) {
  auto policy = parse_policy(
      R"({"allowed_interpreters": ["/bin/sh", "/usr/bin/python3"], "output_cap_bytes": 1000,
          "max_timeout_s": 60})");
  ASSERT_TRUE(policy) << policy.error().message;
  EXPECT_TRUE(policy->allows("/bin/sh"));
  EXPECT_FALSE(policy->allows("/bin/bash"));
  EXPECT_FALSE(policy->allows("sh"));
  EXPECT_EQ(policy->output_cap_bytes, 1000u);
  EXPECT_EQ(policy->max_timeout_s, 60);
}

TEST(ScriptPolicy, RefusesUnknownKeysRelativePathsAndBadNumbers) {
  EXPECT_FALSE(parse_policy(R"({"allowed_interpreters": ["sh"]})"));
  EXPECT_FALSE(parse_policy(R"({"allowed_interpretors": ["/bin/sh"]})"));
  EXPECT_FALSE(parse_policy(R"({"output_cap_bytes": 0})"));
  EXPECT_FALSE(parse_policy(R"({"max_timeout_s": -5})"));
  EXPECT_FALSE(parse_policy("[]"));
  EXPECT_FALSE(parse_policy("not json"));
}

class RunScriptCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/helm-agent-policy-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    context_.work_dir = dir_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  CmdFrame script_cmd(const std::string& interpreter) {
    const auto marker = (dir_ / "ran").string();
    return CmdFrame{"c-1",
                    "run_script",
                    {{"interpreter", interpreter}, {"script", "touch " + marker}, {"timeout_s", 5}},
                    nullptr};
  }
  std::filesystem::path dir_;
  CommandContext context_;
};

TEST_F(RunScriptCommand, RefusesAnInterpreterThePolicyDoesNotAllowAndRunsNothing) {
  context_.policy = parse_policy(R"({"allowed_interpreters": ["/usr/bin/python3"]})").value();
  const auto result = execute_command(script_cmd("/bin/sh"), context_);
  EXPECT_EQ(result["t"], "result");
  EXPECT_EQ(result["id"], "c-1");
  EXPECT_EQ(result["status"], "error");
  EXPECT_NE(result["stderr"].get<std::string>().find("not allowed"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "ran"));
}

TEST_F(RunScriptCommand, IsDisabledWithoutAPolicy) {
  const auto result = execute_command(script_cmd("/bin/sh"), context_);
  EXPECT_EQ(result["status"], "error");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "ran"));
}

TEST_F(RunScriptCommand, RunsAnAllowedInterpreter) {
  context_.policy = parse_policy(R"({"allowed_interpreters": ["/bin/sh"]})").value();
  const auto result = execute_command(script_cmd("/bin/sh"), context_);
  EXPECT_EQ(result["status"], "ok") << result.dump();
  EXPECT_EQ(result["exit_code"], 0);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "ran"));
}

TEST(Commands, PingPongsAndUnknownKindIsAnError) {
  CommandContext context;
  const auto pong =
      execute_command(CmdFrame{"p", "ping", nlohmann::json::object(), nullptr}, context);
  EXPECT_EQ(pong["status"], "ok");
  EXPECT_EQ(pong["data"]["pong"], true);
  const auto unknown =
      execute_command(CmdFrame{"u", "format_disk", nlohmann::json::object(), nullptr}, context);
  EXPECT_EQ(unknown["status"], "error");
  EXPECT_EQ(unknown["id"], "u");
}

TEST(Commands, InventoryReportsTheMachine) {
  CommandContext context;
  const auto inv =
      execute_command(CmdFrame{"i", "inventory", nlohmann::json::object(), nullptr}, context);
  ASSERT_EQ(inv["status"], "ok");
  const auto& data = inv["data"];
  EXPECT_FALSE(data["hostname"].get<std::string>().empty());
  EXPECT_GT(data["cpu"]["logical_cpus"].get<int>(), 0);
  EXPECT_GT(data["memory"]["total_bytes"].get<std::uint64_t>(), 0u);
  EXPECT_TRUE(data["disks"].is_array());
  bool has_loopback = false;
  for (const auto& iface : data["network_interfaces"]) {
    has_loopback = has_loopback || iface["loopback"].get<bool>();
  }
  EXPECT_TRUE(has_loopback);
  EXPECT_TRUE(data.contains("uptime_s"));
  EXPECT_EQ(data["agent_version"], HELM_AGENT_VERSION);
}

}  // namespace
}  // namespace helm::agent
