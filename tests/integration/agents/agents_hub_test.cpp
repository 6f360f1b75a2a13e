// The agent routes in the real helm-hub binary: wired into the hub, documented in its OpenAPI
// document, enrollment keys over HTTPS, and what enrollment answers with no transport plugin
// running and when an address enrolls too fast.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;

constexpr const char* kPassword = "owner password 123";
using namespace std::chrono_literals;

// A client-to-server WebSocket text frame (masked, as RFC 6455 requires of clients).
std::string ws_text_frame(const std::string& payload) {
  std::string frame = "\x81";
  const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  if (payload.size() < 126) {
    frame += static_cast<char>(0x80 | payload.size());
  } else {
    frame += static_cast<char>(0x80 | 126);
    frame += static_cast<char>((payload.size() >> 8) & 0xff);
    frame += static_cast<char>(payload.size() & 0xff);
  }
  frame.append(reinterpret_cast<const char*>(mask), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    frame += static_cast<char>(payload[i] ^ mask[i % 4]);
  return frame;
}

std::string ws_upgrade(uint16_t port, const std::string& token) {
  return "GET /agent/v1 HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: helm.agent.v1\r\nAuthorization: Bearer " +
         token + "\r\n\r\n";
}

class AgentsInHub : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-agents-hub");
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    // No plugins: this hub runs without an agent transport.
    auto env = kFastPasswordEnv;
    env["HELM_PLUGINS_PATH"] = dir_->file("no-plugins");
    hub_ = new HubProcess({.data_dir = dir_->path(), .env = env});
    ASSERT_TRUE(hub_->ready()) << hub_->log();
    auto login = call("POST", "/api/v1/auth/login", "",
                      {{"email", "owner@a.test"}, {"password", kPassword}});
    ASSERT_EQ(login.status, 200) << login.body;
    owner_ = json::parse(login.body)["token"];
    org_ = json::parse(login.body)["technician"]["org_id"];
  }

  static void TearDownTestSuite() {
    // A clean stop also stops the hub's embedded PostgreSQL (a killed hub may leave it running).
    if (hub_ != nullptr) hub_->stop();
    delete hub_;
    delete dir_;
    hub_ = nullptr;
    dir_ = nullptr;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(hub_->base_url() + path, o);
  }

  static inline TempDir* dir_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string owner_, org_;
};

TEST_F(AgentsInHub, OpenApiDocumentListsTheAgentRoutesWithTheirAccess) {
  auto doc = call("GET", "/api/v1/openapi.json", "");
  ASSERT_EQ(doc.status, 200);
  const auto paths = json::parse(doc.body)["paths"];
  ASSERT_TRUE(paths.contains("/api/v1/agent/enroll")) << doc.body;
  ASSERT_TRUE(paths.contains("/api/v1/orgs/{org}/enrollment-keys"));
  ASSERT_TRUE(paths.contains("/api/v1/orgs/{org}/devices/{id}/commands"));
  EXPECT_EQ(paths["/api/v1/orgs/{org}/enrollment-keys"]["post"]["x-helm-access"], "admin");
  EXPECT_EQ(paths["/api/v1/orgs/{org}/devices"]["get"]["x-helm-access"], "technician");
  EXPECT_EQ(paths["/api/v1/orgs/{org}/commands/{id}"]["get"]["x-helm-access"], "technician");
}

TEST_F(AgentsInHub, KeysAreCreatedListedAndRevokedAndEnrollmentWithoutTransportIs503) {
  auto client = call("POST", "/api/v1/orgs/" + org_ + "/clients", owner_, {{"name", "Acme"}});
  ASSERT_EQ(client.status, 201);
  const std::string client_id = json::parse(client.body)["id"];
  auto site = call("POST", "/api/v1/orgs/" + org_ + "/clients/" + client_id + "/sites", owner_,
                   {{"name", "HQ"}});
  ASSERT_EQ(site.status, 201);
  const std::string site_id = json::parse(site.body)["id"];

  auto key = call("POST", "/api/v1/orgs/" + org_ + "/enrollment-keys", owner_,
                  {{"client_id", client_id}, {"site_id", site_id}});
  ASSERT_EQ(key.status, 201) << key.body;
  const auto created = json::parse(key.body);
  EXPECT_EQ(created["uses"], 1);
  EXPECT_EQ(created["key"].get<std::string>().rfind("hek_", 0), 0u);

  auto enroll = call("POST", "/api/v1/agent/enroll", "",
                     {{"enrollment_key", created["key"]},
                      {"hostname", "h"},
                      {"os", "linux"},
                      {"os_version", "12"},
                      {"arch", "x86_64"},
                      {"machine_id", "m1"},
                      {"agent_version", "1.0.0"}});
  EXPECT_EQ(enroll.status, 503) << enroll.body;
  EXPECT_NE(enroll.body.find("transport"), std::string::npos) << enroll.body;

  auto list = call("GET", "/api/v1/orgs/" + org_ + "/enrollment-keys", owner_);
  ASSERT_EQ(list.status, 200);
  const auto items = json::parse(list.body)["items"];
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["uses_left"], 1) << "a refused enrollment does not use the key";
  EXPECT_FALSE(items[0].contains("key"));

  EXPECT_EQ(
      call("DELETE",
           "/api/v1/orgs/" + org_ + "/enrollment-keys/" + created["id"].get<std::string>(), owner_)
          .status,
      204);
  list = call("GET", "/api/v1/orgs/" + org_ + "/enrollment-keys", owner_);
  EXPECT_EQ(json::parse(list.body)["items"][0]["revoked"], true);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_ + "/devices", owner_).status, 200);
}

// Last in this file: it empties this address's enrollment bucket.
TEST_F(AgentsInHub, AnAddressThatEnrollsTooFastGets429WithRetryAfter) {
  HttpResponse last;
  for (int i = 0; i < 300; ++i) {
    last = call("POST", "/api/v1/agent/enroll", "", json::object());
    if (last.status != 400) break;
  }
  ASSERT_EQ(last.status, 429) << last.body;
  ASSERT_TRUE(last.headers.count("retry-after"));
  EXPECT_GE(std::stoi(last.headers["retry-after"]), 1);
  EXPECT_EQ(last.headers["content-type"], "application/problem+json");
}

}  // namespace
}  // namespace helm::test

namespace helm::test {
namespace {

// The whole path with the real transport-wss plugin: enroll, connect over WSS with the device
// token, receive the queued command, ack it and answer it, then lose the connection (4001) when
// an admin deletes the device.
class AgentsOverTransport : public AgentsInHub {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(std::string(HELM_BUILD_PLUGINS_DIR) + "/transport-wss")) return;
    dir_ = new TempDir("helm-agents-wss");
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    auto env = kFastPasswordEnv;
    env["HELM_PLUGINS_PATH"] = HELM_BUILD_PLUGINS_DIR;
    env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "true";  // builds without the dev signing key
    hub_ = new HubProcess({.data_dir = dir_->path(), .env = env});
    ASSERT_TRUE(hub_->ready()) << hub_->log();
    auto login = call("POST", "/api/v1/auth/login", "",
                      {{"email", "owner@a.test"}, {"password", kPassword}});
    ASSERT_EQ(login.status, 200) << login.body;
    owner_ = json::parse(login.body)["token"];
    org_ = json::parse(login.body)["technician"]["org_id"];
    // Off the shared default port: any free port on loopback.
    auto patched = call("PATCH", "/api/v1/plugins/transport-wss", owner_,
                        {{"config", {{"listen", "127.0.0.1:0"}}}});
    ASSERT_EQ(patched.status, 200) << patched.body;
  }
};

TEST_F(AgentsOverTransport, EnrolledAgentConnectsGetsItsCommandAndIsCutOffWhenDeleted) {
  if (hub_ == nullptr) GTEST_SKIP() << "transport-wss is not built";
  const std::string org = "/api/v1/orgs/" + org_;
  auto client = call("POST", org + "/clients", owner_, {{"name", "Acme"}});
  ASSERT_EQ(client.status, 201);
  const std::string client_id = json::parse(client.body)["id"];
  auto site = call("POST", org + "/clients/" + client_id + "/sites", owner_, {{"name", "HQ"}});
  const std::string site_id = json::parse(site.body)["id"];
  auto key = call("POST", org + "/enrollment-keys", owner_,
                  {{"client_id", client_id}, {"site_id", site_id}, {"uses", 5}});
  ASSERT_EQ(key.status, 201) << key.body;
  const json enroll_body = {{"enrollment_key", json::parse(key.body)["key"]},
                            {"hostname", "wss-host"},
                            {"os", "linux"},
                            {"os_version", "12"},
                            {"arch", "x86_64"},
                            {"machine_id", "wss-machine"},
                            {"agent_version", "1.0.0"}};
  HttpResponse enrolled;
  for (int i = 0; i < 40; ++i) {  // until the restarted transport reports its new port
    enrolled = call("POST", "/api/v1/agent/enroll", "", enroll_body);
    if (enrolled.status == 201 &&
        json::parse(enrolled.body)["transport_url"].get<std::string>().find(":7443/") ==
            std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  ASSERT_EQ(enrolled.status, 201) << enrolled.body << hub_->log();
  const auto device = json::parse(enrolled.body);
  const std::string url = device["transport_url"];
  ASSERT_EQ(url.rfind("wss://127.0.0.1:", 0), 0u) << url;
  const auto port = static_cast<uint16_t>(std::stoi(url.substr(16)));
  const std::string device_id = device["device_id"];

  auto cmd = call("POST", org + "/devices/" + device_id + "/commands", owner_, {{"kind", "ping"}});
  ASSERT_EQ(cmd.status, 202) << cmd.body;
  const std::string command_id = json::parse(cmd.body)["id"];
  EXPECT_EQ(json::parse(cmd.body)["state"], "queued");

  {
    RawTlsClient stranger("127.0.0.1", port);
    ASSERT_TRUE(stranger.connected());
    stranger.send(ws_upgrade(port, "hdt_" + std::string(43, 'x')));
    const auto answer = stranger.read_some(5000ms, nullptr, "\r\n\r\n");
    EXPECT_NE(answer.find(" 401 "), std::string::npos) << answer;
  }

  RawTlsClient agent("127.0.0.1", port);
  ASSERT_TRUE(agent.connected());
  agent.send(ws_upgrade(port, device["device_token"]));
  const auto upgraded = agent.read_some(5000ms, nullptr, "\r\n\r\n");
  ASSERT_NE(upgraded.find(" 101 "), std::string::npos) << upgraded;
  agent.send(ws_text_frame(json{
      {"t", "hello"},
      {"agent_version", "1.0.1"},
      {"hostname", "wss-host"},
      {"os", "linux"},
      {"boot_id", "b1"}}.dump()));
  const auto pushed = agent.read_some(5000ms, nullptr, command_id);
  EXPECT_NE(pushed.find(command_id), std::string::npos) << pushed;
  EXPECT_NE(pushed.find("\"t\":\"cmd\""), std::string::npos) << pushed;

  auto state = [&] {
    auto r = call("GET", org + "/commands/" + command_id, owner_);
    return json::parse(r.body);
  };
  agent.send(ws_text_frame(json{{"t", "ack"}, {"id", command_id}}.dump()));
  bool acked = false;
  for (int i = 0; i < 50 && !acked; ++i, std::this_thread::sleep_for(100ms))
    acked = state()["state"] == "acked";
  EXPECT_TRUE(acked) << state().dump();
  agent.send(ws_text_frame(json{
      {"t", "result"},
      {"id", command_id},
      {"status", "ok"},
      {"exit_code", 0},
      {"stdout", ""},
      {"stderr", ""},
      {"data",
       {{"pong", true}}}}.dump()));
  json done;
  for (int i = 0; i < 50; ++i, std::this_thread::sleep_for(100ms)) {
    done = state();
    if (done["state"] == "done") break;
  }
  EXPECT_EQ(done["state"], "done") << done.dump();
  EXPECT_EQ(done["result"]["data"]["pong"], true);
  auto listed = call("GET", org + "/devices/" + device_id, owner_);
  EXPECT_EQ(json::parse(listed.body)["online"], true) << listed.body;
  EXPECT_EQ(json::parse(listed.body)["agent_version"], "1.0.1");

  EXPECT_EQ(call("DELETE", org + "/devices/" + device_id, owner_).status, 204);
  bool closed = false;
  const auto tail = agent.read_some(3000ms, &closed);
  // A close frame with code 4001 (0x0FA1), then the connection ends.
  EXPECT_NE(tail.find("\x0f\xa1"), std::string::npos) << "close code 4001 expected";
}

}  // namespace
}  // namespace helm::test
