#include "helm/config/hub_config.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace helm::config {
namespace {

std::string write_temp(const std::string& content) {
  char path[] = "/tmp/helm-config-XXXXXX";
  const int fd = ::mkstemp(path);
  ::close(fd);
  std::ofstream(path) << content;
  return path;
}

TEST(HubConfig, DefaultsNeedOnlyADataDir) {
  auto cfg = load({.data_dir = "/tmp/x"}, {});
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->api.listen.port, 8443);
  EXPECT_EQ(cfg->api.max_body_bytes, 1024u * 1024u);
  EXPECT_EQ(cfg->api.max_header_bytes, 16u * 1024u);
  EXPECT_TRUE(cfg->database.url.empty());
}

TEST(HubConfig, MissingDataDirSaysHowToGiveOne) {
  auto cfg = load({}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("--data-dir"), std::string::npos);
}

TEST(HubConfig, UnknownKeyIsNamedWithItsSection) {
  const auto file = write_temp(R"({"api": {"listen": "127.0.0.1:1", "max_bodybytes": 5}})");
  auto cfg = load({.data_dir = "/tmp/x", .config_file = file}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("'api.max_bodybytes'"), std::string::npos)
      << cfg.error().message;
  EXPECT_NE(cfg.error().message.find("max_body_bytes"), std::string::npos) << "lists known keys";
}

TEST(HubConfig, UnknownTopLevelKeyIsNamed) {
  const auto file = write_temp(R"({"databse": {}})");
  auto cfg = load({.data_dir = "/tmp/x", .config_file = file}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("'databse'"), std::string::npos);
}

TEST(HubConfig, WrongTypeNamesTheKey) {
  const auto file = write_temp(R"({"database": {"pool_size": "four"}})");
  auto cfg = load({.data_dir = "/tmp/x", .config_file = file}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("database.pool_size"), std::string::npos);
}

TEST(HubConfig, MalformedJsonIsReported) {
  const auto file = write_temp(R"({"api": )");
  auto cfg = load({.data_dir = "/tmp/x", .config_file = file}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("not valid JSON"), std::string::npos);
}

TEST(HubConfig, EnvironmentOverridesFileAndCommandLineOverridesEnvironment) {
  const auto file =
      write_temp(R"({"api": {"listen": "127.0.0.1:1000"}, "log": {"level": "warn"}})");
  auto cfg = load({.data_dir = "/tmp/x", .config_file = file},
                  {{"HELM_API_LISTEN", "127.0.0.1:2000"}, {"HELM_LOG_LEVEL", "debug"}});
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->api.listen.port, 2000);
  EXPECT_EQ(cfg->log_level, "debug");
  auto cli = load({.data_dir = "/tmp/x", .config_file = file, .api_listen = "[::1]:3000"},
                  {{"HELM_API_LISTEN", "127.0.0.1:2000"}});
  ASSERT_TRUE(cli.ok());
  EXPECT_EQ(cli->api.listen.port, 3000);
  EXPECT_EQ(cli->api.listen.host, "::1");
}

TEST(HubConfig, BadEnvironmentValueNamesTheVariable) {
  auto cfg = load({.data_dir = "/tmp/x"}, {{"HELM_API_MAX_BODY_BYTES", "lots"}});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("HELM_API_MAX_BODY_BYTES"), std::string::npos);
}

TEST(HubConfig, BadLogLevelIsRefused) {
  auto cfg = load({.data_dir = "/tmp/x", .log_level = "loud"}, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("--log-level"), std::string::npos);
}

TEST(HubConfig, CertificateAndKeyComeTogether) {
  auto cfg = load({.data_dir = "/tmp/x"}, {{"HELM_API_TLS_CERT_FILE", "/c.pem"}});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("together"), std::string::npos);
}

TEST(ListenAddress, ParsesHostPortForms) {
  EXPECT_EQ(parse_listen_address("127.0.0.1:8443")->port, 8443);
  EXPECT_EQ(parse_listen_address("[::1]:9")->host, "::1");
  EXPECT_EQ(parse_listen_address(":7")->host, "0.0.0.0");
  EXPECT_FALSE(parse_listen_address("localhost").ok());
  EXPECT_FALSE(parse_listen_address("1.2.3.4:99999").ok());
  EXPECT_FALSE(parse_listen_address("[::1]8443").ok());
}

TEST(HubConfig, EveryKeyHasAnEnvironmentVariable) {
  for (const auto& [key, env] : known_keys()) {
    EXPECT_EQ(env.rfind("HELM_", 0), 0u) << key;
  }
}

}  // namespace
}  // namespace helm::config
