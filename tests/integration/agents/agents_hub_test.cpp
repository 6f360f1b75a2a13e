// The agent routes in the real helm-hub binary: wired into the hub, documented in its OpenAPI
// document, enrollment keys over HTTPS, and what enrollment answers with no transport plugin
// running and when an address enrolls too fast.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;

constexpr const char* kPassword = "owner password 123";

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
    delete hub_;
    delete dir_;
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
