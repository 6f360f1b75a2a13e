#include "helm/agent/net.hpp"

#include <gtest/gtest.h>

#include <map>

namespace helm::agent {
namespace {

TEST(Urls, ParsesSchemesPortsTargetsAndIpv6) {
  auto a = parse_url("https://hub.example.com");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "hub.example.com");
  EXPECT_EQ(a->port, 443);
  EXPECT_EQ(a->target, "/");
  auto b = parse_url("wss://10.0.0.1:8443/agent/v1");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->port, 8443);
  EXPECT_EQ(b->target, "/agent/v1");
  EXPECT_EQ(b->authority(), "10.0.0.1:8443");
  auto c = parse_url("wss://[::1]:9/x");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->authority(), "[::1]:9");
  EXPECT_FALSE(parse_url("hub.example.com"));
  EXPECT_FALSE(parse_url("ftp://x"));
  EXPECT_FALSE(parse_url("https://x:99999"));
}

TEST(NoProxy, MatchesExactHostsSuffixesAndStar) {
  EXPECT_TRUE(no_proxy_matches("localhost,hub.corp", "hub.corp"));
  EXPECT_TRUE(no_proxy_matches(".corp", "hub.corp"));
  EXPECT_TRUE(no_proxy_matches("corp", "a.b.corp"));
  EXPECT_TRUE(no_proxy_matches(" HUB.CORP ", "hub.corp"));
  EXPECT_TRUE(no_proxy_matches("*", "anything"));
  EXPECT_FALSE(no_proxy_matches("corp", "notcorp"));
  EXPECT_FALSE(no_proxy_matches("hub.corp", "other.corp"));
  EXPECT_FALSE(no_proxy_matches("", "hub.corp"));
}

TEST(ProxySelection, ExplicitFlagWinsThenEnvironmentUnlessNoProxy) {
  std::map<std::string, std::string> env = {{"HTTPS_PROXY", "http://proxy.corp:3128"},
                                            {"NO_PROXY", "internal.corp"}};
  auto getenv = [&](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  const auto hub = parse_url("https://hub.example.com").value();
  auto from_env = select_proxy(hub, "", getenv);
  ASSERT_TRUE(from_env);
  ASSERT_TRUE(from_env->has_value());
  EXPECT_EQ((*from_env)->host, "proxy.corp");
  EXPECT_EQ((*from_env)->port, 3128);

  auto explicit_flag = select_proxy(hub, "http://user:pw@10.1.1.1:8080", getenv);
  ASSERT_TRUE(explicit_flag && explicit_flag->has_value());
  EXPECT_EQ((*explicit_flag)->host, "10.1.1.1");
  EXPECT_EQ((*explicit_flag)->authorization, "Basic dXNlcjpwdw==");

  const auto internal = parse_url("https://hub.internal.corp").value();
  auto bypass = select_proxy(internal, "", getenv);
  ASSERT_TRUE(bypass);
  EXPECT_FALSE(bypass->has_value());

  env.erase("HTTPS_PROXY");
  env["https_proxy"] = "proxy2:8080";
  auto lower = select_proxy(hub, "", getenv);
  ASSERT_TRUE(lower && lower->has_value());
  EXPECT_EQ((*lower)->host, "proxy2");

  EXPECT_FALSE(select_proxy(hub, "socks5://p:1080", getenv));
}

}  // namespace
}  // namespace helm::agent
