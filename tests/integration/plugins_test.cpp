// The hub-side plugin manager end to end: the real hub loads the plugins it finds under
// plugins.path at start and lists them over REST, and a broken plugin does not stop it.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <helm/plugin_abi.h>

#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;

constexpr const char* kPassword = "owner password 123";

class PluginManagerHub : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-plugins");
    data_dir_ = dir_->path();
    plugins_dir_ = new TempDir("helm-plugins-extra");
    // A second plugin directory with two broken plugins next to the built example-echo.
    extra_ = plugins_dir_->path();
    std::filesystem::create_directories(extra_ + "/broken-json");
    write_file(extra_ + "/broken-json/manifest.json", "{ this is not json");
    std::filesystem::create_directories(extra_ + "/missing-library");
    write_file(extra_ + "/missing-library/manifest.json", json{{"name", "missing-library"},
                                                               {"version", "1.0.0"},
                                                               {"abi", "1.0"},
                                                               {"kind", "x-test-plugin"},
                                                               {"library", "missing-library.so"},
                                                               {"operations", json::object()}}
                                                              .dump());
    // Valid JSON whose kind the manifest schema does not allow.
    std::filesystem::create_directories(extra_ + "/bad-kind");
    write_file(extra_ + "/bad-kind/manifest.json", json{{"name", "bad-kind"},
                                                        {"version", "1.0.0"},
                                                        {"abi", "1.0"},
                                                        {"kind", "Not A Kind"},
                                                        {"library", "bad-kind.so"},
                                                        {"operations", json::object()}}
                                                       .dump());
    std::string out;
    ASSERT_EQ(bootstrap_hub(data_dir_, "Operators", "owner@a.test", kPassword, &out), 0) << out;
  }

  static void TearDownTestSuite() {
    delete plugins_dir_;
    delete dir_;
  }

  static HubOptions options(bool allow_unsigned) {
    HubOptions o{.data_dir = data_dir_, .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = std::string(HELM_BUILD_PLUGINS_DIR) + ":" + extra_;
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = allow_unsigned ? "true" : "false";
    return o;
  }

  static HttpResponse call(const HubProcess& hub, const std::string& method,
                           const std::string& path, const std::string& token,
                           const json& body = nullptr) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub.ca_file();
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(hub.base_url() + path, o);
  }

  static json login(const HubProcess& hub, const std::string& email) {
    auto r = call(hub, "POST", "/api/v1/auth/login", "",
                  json{{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  static json by_name(const HttpResponse& list, const std::string& name) {
    const json body = json::parse(list.body);
    for (const auto& item : body.at("items")) {
      if (item.at("name") == name) return item;
    }
    return nullptr;
  }

  static inline TempDir* dir_ = nullptr;
  static inline TempDir* plugins_dir_ = nullptr;
  static inline std::string data_dir_, extra_;
};

TEST_F(PluginManagerHub, LoadsExampleEchoListsBrokenPluginsAndHidesDetailsFromOthers) {
  HubProcess hub(options(true));
  ASSERT_TRUE(hub.ready()) << hub.log();
  const auto owner = login(hub, "owner@a.test");
  const std::string owner_token = owner.value("token", "");
  const std::string org_a = owner["technician"]["org_id"];

  // The hub operators' owner sees everything.
  auto list = call(hub, "GET", "/api/v1/plugins", owner_token);
  ASSERT_EQ(list.status, 200) << list.body;
  const json echo = by_name(list, "example-echo");
  ASSERT_TRUE(echo.is_object()) << list.body;
  EXPECT_EQ(echo["state"], "running") << list.body;
  EXPECT_EQ(echo["version"], "1.0.0");
  EXPECT_EQ(echo["kind"], "x-helm-example");
  // The ABI the library reports: this tree's SDK.
  EXPECT_EQ(echo["abi"], "1." + std::to_string(HELM_PLUGIN_ABI_MINOR));
  // Built in-tree: signed with this build tree's development key, which this hub trusts.
  EXPECT_NE(echo["signer"].get<std::string>().find("development key of this build tree"),
            std::string::npos)
      << echo;
  EXPECT_EQ(echo["last_error"], "");
  EXPECT_EQ(echo["config"], json::object());

  const json broken = by_name(list, "broken-json");
  ASSERT_TRUE(broken.is_object()) << list.body;
  EXPECT_EQ(broken["state"], "failed");
  EXPECT_NE(broken["last_error"].get<std::string>().find("manifest"), std::string::npos) << broken;
  const json missing = by_name(list, "missing-library");
  ASSERT_TRUE(missing.is_object()) << list.body;
  EXPECT_EQ(missing["state"], "failed");
  EXPECT_NE(missing["last_error"].get<std::string>().find("missing-library.so"), std::string::npos)
      << missing;

  const json bad_kind = by_name(list, "bad-kind");
  ASSERT_TRUE(bad_kind.is_object()) << list.body;
  EXPECT_EQ(bad_kind["state"], "failed");
  EXPECT_NE(bad_kind["last_error"].get<std::string>().find("/kind"), std::string::npos) << bad_kind;

  // The hub keeps serving.
  EXPECT_EQ(call(hub, "GET", "/healthz", "").status, 200);

  auto one = call(hub, "GET", "/api/v1/plugins/example-echo", owner_token);
  ASSERT_EQ(one.status, 200) << one.body;
  const json detail = json::parse(one.body);
  EXPECT_EQ(detail["state"], "running");
  EXPECT_EQ(detail["manifest"]["name"], "example-echo");
  EXPECT_TRUE(detail["manifest"]["operations"].contains("echo"));
  EXPECT_EQ(call(hub, "GET", "/api/v1/plugins/no-such-plugin", owner_token).status, 404);
  EXPECT_EQ(call(hub, "GET", "/api/v1/plugins", "").status, 401);

  // The owner of another organization, and a technician of the operators' organization, are
  // not hub operators: the list without signer, config and last error; no details.
  auto created = call(
      hub, "POST", "/api/v1/orgs", owner_token,
      json{{"name", "Beta MSP"}, {"owner_email", "owner@b.test"}, {"owner_password", kPassword}});
  ASSERT_EQ(created.status, 201) << created.body;
  auto tech = call(hub, "POST", "/api/v1/orgs/" + org_a + "/technicians", owner_token,
                   json{{"email", "tech@a.test"}, {"password", kPassword}, {"role", "technician"}});
  ASSERT_EQ(tech.status, 201) << tech.body;
  for (const std::string email : {"owner@b.test", "tech@a.test"}) {
    const std::string token = login(hub, email).value("token", "");
    auto limited = call(hub, "GET", "/api/v1/plugins", token);
    ASSERT_EQ(limited.status, 200) << email << limited.body;
    const json item = by_name(limited, "example-echo");
    ASSERT_TRUE(item.is_object()) << limited.body;
    EXPECT_EQ(item["state"], "running");
    EXPECT_EQ(item["version"], "1.0.0");
    EXPECT_FALSE(item.contains("last_error")) << email << item;
    EXPECT_FALSE(item.contains("config")) << email << item;
    EXPECT_FALSE(item.contains("signer")) << email << item;
    EXPECT_FALSE(by_name(limited, "broken-json").contains("last_error")) << email;
    EXPECT_EQ(call(hub, "GET", "/api/v1/plugins/example-echo", token).status, 403) << email;
  }

  // Shutdown stops and unloads the plugins before the database; the hub exits cleanly.
  EXPECT_EQ(hub.stop(), 0) << hub.log();
  EXPECT_NE(hub.log().find("stopping plugins"), std::string::npos);
}

TEST_F(PluginManagerHub, RefusesUnsignedPluginsUnlessAllowed) {
  // An unsigned copy of example-echo, alone on the plugin path.
  TempDir unsigned_dir("helm-plugins-unsigned");
  std::filesystem::copy(std::string(HELM_BUILD_PLUGINS_DIR) + "/example-echo",
                        unsigned_dir.path() + "/example-echo",
                        std::filesystem::copy_options::recursive);
  std::filesystem::remove(unsigned_dir.path() + "/example-echo/signature");
  HubOptions o = options(false);
  o.env["HELM_PLUGINS_PATH"] = unsigned_dir.path();
  HubProcess hub(o);
  ASSERT_TRUE(hub.ready()) << hub.log();
  const std::string token = login(hub, "owner@a.test").value("token", "");
  auto list = call(hub, "GET", "/api/v1/plugins", token);
  ASSERT_EQ(list.status, 200) << list.body;
  const json echo = by_name(list, "example-echo");
  ASSERT_TRUE(echo.is_object()) << list.body;
  EXPECT_EQ(echo["state"], "failed");
  EXPECT_NE(echo["last_error"].get<std::string>().find("unsigned"), std::string::npos) << echo;
  EXPECT_EQ(call(hub, "GET", "/healthz", "").status, 200);
  EXPECT_EQ(hub.stop(), 0) << hub.log();
}

}  // namespace
}  // namespace helm::test
