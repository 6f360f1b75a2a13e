// Plugin administration and operations over real HTTPS against the real hub, with the real
// example-echo and test-misbehaving plugins loaded from disk: lifecycle (disable, enable, reload),
// hub-wide configuration with ETags, per-organization switches, settings and grants, operations
// end to end (validation, timeout, contained failures, secrets released inside the session),
// RBAC across roles and organizations, and reload while operations are in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "helm/http/router.hpp"
#include "helm/http/server.hpp"
#include "helm/http/tls_files.hpp"
#include "helm/metrics/registry.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kPassword = "owner password 123";

class PluginAdmin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-plugin-admin");
    extra_ = new TempDir("helm-plugin-admin-extra");
    // Only the working test plugin beside the real ones (the broken ones have their own suite).
    fs::copy(std::string(HELM_TEST_PLUGINS_DIR) + "/test-misbehaving",
             extra_->path() + "/test-misbehaving", fs::copy_options::recursive);
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    // Trusted: the test publisher (test-misbehaving) and this build's development key (the
    // in-tree plugins); nothing unsigned is allowed.
    const std::string keys = extra_->file("trusted-keys");
    write_file(keys, read_file(HELM_TEST_TRUSTED_PUB) + "\n" + read_file(HELM_DEV_PUB) + "\n");
    HubOptions o{.data_dir = dir_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = std::string(HELM_BUILD_PLUGINS_DIR) + ":" + extra_->path();
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "false";
    o.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = keys;
    hub_ = new HubProcess(o);
    ASSERT_TRUE(hub_->ready()) << hub_->log();

    const json owner = login("owner@a.test");
    owner_a_ = owner["token"];
    org_a_ = owner["technician"]["org_id"];
    auto created = call(
        "POST", "/api/v1/orgs", owner_a_,
        {{"name", "Beta MSP"}, {"owner_email", "owner@b.test"}, {"owner_password", kPassword}});
    ASSERT_EQ(created.status, 201) << created.body;
    org_b_ = json::parse(created.body)["id"];
    owner_b_ = login("owner@b.test")["token"];
    auto tech = call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
                     {{"email", "tech@a.test"}, {"password", kPassword}, {"role", "technician"}});
    ASSERT_EQ(tech.status, 201) << tech.body;
    tech_a_ = login("tech@a.test")["token"];
  }

  static void TearDownTestSuite() {
    delete hub_;
    delete extra_;
    delete dir_;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr,
                           std::vector<std::string> headers = {}) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    o.timeout_ms = 30'000;
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    for (auto& h : headers)
      o.headers.push_back(std::move(h));
    return https(hub_->base_url() + path, o);
  }

  static json login(const std::string& email) {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  static std::string ops(const std::string& org, const std::string& plugin, const std::string& op) {
    return "/api/v1/orgs/" + org + "/plugins/" + plugin + "/ops/" + op;
  }

  static void enable_for(const std::string& org, const std::string& token,
                         const std::string& plugin) {
    auto r =
        call("PATCH", "/api/v1/orgs/" + org + "/plugins/" + plugin, token, {{"enabled", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(body_of(r)["enabled_for_org"], true);
  }

  static bool has_error_for(const HttpResponse& r, const std::string& field) {
    const json body = body_of(r);
    if (!body.is_object() || !body.contains("errors")) return false;
    for (const auto& e : body["errors"]) {
      if (e.value("field", "") == field) return true;
    }
    return false;
  }

  static inline TempDir* dir_ = nullptr;
  static inline TempDir* extra_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string owner_a_, org_a_, owner_b_, org_b_, tech_a_;
};

TEST_F(PluginAdmin, OperatorDisablesEnablesAndReloadsAPlugin) {
  enable_for(org_a_, owner_a_, "example-echo");
  auto echo = [] {
    return call("POST", ops(org_a_, "example-echo", "echo"), owner_a_, {{"n", 1}});
  };
  ASSERT_EQ(echo().status, 200);

  auto off = call("PATCH", "/api/v1/plugins/example-echo", owner_a_, {{"enabled", false}});
  ASSERT_EQ(off.status, 200) << off.body;
  EXPECT_EQ(body_of(off)["state"], "disabled");
  EXPECT_EQ(body_of(off)["enabled"], false);
  const auto refused = echo();
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(call("GET", "/api/v1/plugins/example-echo/health", owner_a_).status, 503);

  auto on = call("PATCH", "/api/v1/plugins/example-echo", owner_a_, {{"enabled", true}});
  ASSERT_EQ(on.status, 200) << on.body;
  EXPECT_EQ(body_of(on)["state"], "running");
  EXPECT_EQ(echo().status, 200);

  auto reloaded = call("POST", "/api/v1/plugins/example-echo/reload", owner_a_);
  ASSERT_EQ(reloaded.status, 200) << reloaded.body;
  EXPECT_EQ(body_of(reloaded)["state"], "running");
  EXPECT_EQ(echo().status, 200);
  auto health = call("GET", "/api/v1/plugins/example-echo/health", owner_a_);
  ASSERT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(body_of(health)["healthy"], true);
  EXPECT_EQ(call("POST", "/api/v1/plugins/no-such-plugin/reload", owner_a_).status, 404);
}

TEST_F(PluginAdmin, ConfigWritesUseETagsAndInvalidConfigKeepsTheOldOneRunning) {
  enable_for(org_a_, owner_a_, "example-echo");
  auto read = call("GET", "/api/v1/plugins/example-echo", owner_a_);
  ASSERT_EQ(read.status, 200) << read.body;
  const std::string etag = read.headers["etag"];
  ASSERT_FALSE(etag.empty());

  auto written = call("PATCH", "/api/v1/plugins/example-echo", owner_a_,
                      {{"config", {{"max_delay_ms", 100}}}}, {"If-Match: " + etag});
  ASSERT_EQ(written.status, 200) << written.body;
  EXPECT_NE(written.headers["etag"], etag);
  EXPECT_EQ(body_of(written)["config"]["max_delay_ms"], 100);

  auto stale = call("PATCH", "/api/v1/plugins/example-echo", owner_a_,
                    {{"config", {{"max_delay_ms", 200}}}}, {"If-Match: " + etag});
  EXPECT_EQ(stale.status, 412) << stale.body;

  auto invalid = call("PATCH", "/api/v1/plugins/example-echo", owner_a_,
                      {{"config", {{"max_delay_ms", "soon"}}}});
  EXPECT_EQ(invalid.status, 422) << invalid.body;
  EXPECT_TRUE(has_error_for(invalid, "/config/max_delay_ms")) << invalid.body;
  auto unknown =
      call("PATCH", "/api/v1/plugins/example-echo", owner_a_, {{"config", {{"colour", "blue"}}}});
  EXPECT_EQ(unknown.status, 422) << unknown.body;

  // The dry run answers like a real write and changes nothing.
  auto dry = call("POST", "/api/v1/plugins/example-echo/config/validate", owner_a_,
                  {{"max_delay_ms", -5}});
  EXPECT_EQ(dry.status, 422) << dry.body;
  EXPECT_TRUE(has_error_for(dry, "/max_delay_ms")) << dry.body;
  EXPECT_EQ(
      call("POST", "/api/v1/plugins/example-echo/config/validate", owner_a_, {{"max_delay_ms", 50}})
          .status,
      200);

  // Still the config written first: 100 ms is the limit the plugin applies.
  auto after = call("GET", "/api/v1/plugins/example-echo", owner_a_);
  EXPECT_EQ(body_of(after)["config"]["max_delay_ms"], 100);
  auto too_long =
      call("POST", ops(org_a_, "example-echo", "echo.delayed"), owner_a_, {{"delay_ms", 150}});
  EXPECT_EQ(too_long.status, 422) << too_long.body;
  auto fits =
      call("POST", ops(org_a_, "example-echo", "echo.delayed"), owner_a_, {{"delay_ms", 20}});
  EXPECT_EQ(fits.status, 200) << fits.body;

  // Restore the default for the other tests.
  auto restore =
      call("PATCH", "/api/v1/plugins/example-echo", owner_a_, {{"config", json::object()}});
  EXPECT_EQ(restore.status, 200) << restore.body;
}

// A plugin that failed to start (here: its start() refuses) is started again when an operator
// fixes its configuration; a configuration that still fails is saved and the answer says so.
TEST_F(PluginAdmin, FixingTheConfigurationOfAFailedPluginStartsIt) {
  const std::string path = "/api/v1/plugins/test-misbehaving";
  ASSERT_EQ(call("PATCH", path, owner_a_, {{"enabled", false}}).status, 200);
  ASSERT_EQ(call("PATCH", path, owner_a_, {{"config", {{"fail_start", true}}}}).status, 200);
  auto on = call("PATCH", path, owner_a_, {{"enabled", true}});
  EXPECT_NE(on.status, 200) << on.body;
  auto failed = call("GET", path, owner_a_);
  ASSERT_EQ(body_of(failed)["state"], "failed") << failed.body;
  EXPECT_NE(body_of(failed)["last_error"].get<std::string>().find("widget service is down"),
            std::string::npos)
      << failed.body;

  auto still =
      call("PATCH", path, owner_a_, {{"config", {{"fail_start", true}, {"threshold", 3}}}});
  EXPECT_NE(still.status, 200) << still.body;
  EXPECT_NE(still.body.find("the configuration is saved"), std::string::npos) << still.body;
  auto saved = call("GET", path, owner_a_);
  EXPECT_EQ(body_of(saved)["config"]["threshold"], 3) << saved.body;
  EXPECT_EQ(body_of(saved)["state"], "failed");

  auto fixed = call("PATCH", path, owner_a_, {{"config", json::object()}});
  ASSERT_EQ(fixed.status, 200) << fixed.body;
  EXPECT_EQ(body_of(fixed)["state"], "running") << fixed.body;
  enable_for(org_a_, owner_a_, "test-misbehaving");
  EXPECT_EQ(
      call("POST", ops(org_a_, "test-misbehaving", "slow"), tech_a_, {{"delay_ms", 1}}).status,
      200);
}

TEST_F(PluginAdmin, OperationRunsEndToEndOnlyWhereEnabledAndWithValidInput) {
  // Beta has not turned example-echo on.
  auto off = call("POST", ops(org_b_, "example-echo", "echo"), owner_b_, {{"x", 1}});
  EXPECT_EQ(off.status, 403) << off.body;

  enable_for(org_a_, owner_a_, "example-echo");
  const json input = {{"hello", "world"}, {"list", {1, 2, 3}}};
  auto echoed = call("POST", ops(org_a_, "example-echo", "echo"), tech_a_, input);
  ASSERT_EQ(echoed.status, 200) << echoed.body;
  EXPECT_EQ(body_of(echoed), input);

  auto missing = call("POST", ops(org_a_, "example-echo", "echo.delayed"), tech_a_, json::object());
  EXPECT_EQ(missing.status, 422) << missing.body;
  EXPECT_TRUE(has_error_for(missing, "/delay_ms")) << missing.body;
  auto wrong_type =
      call("POST", ops(org_a_, "example-echo", "echo.delayed"), tech_a_, {{"delay_ms", "x"}});
  EXPECT_EQ(wrong_type.status, 422) << wrong_type.body;
  EXPECT_TRUE(has_error_for(wrong_type, "/delay_ms")) << wrong_type.body;

  EXPECT_EQ(call("POST", ops(org_a_, "example-echo", "no.such.op"), tech_a_, json::object()).status,
            404);
  EXPECT_EQ(call("POST", ops(org_a_, "no-such-plugin", "echo"), tech_a_, json::object()).status,
            404);
  HttpRequestOptions o;
  o.method = "POST";
  o.ca_file = hub_->ca_file();
  o.body = "{not json";
  o.headers = {"Authorization: Bearer " + tech_a_};
  EXPECT_EQ(https(hub_->base_url() + ops(org_a_, "example-echo", "echo"), o).status, 400);
}

TEST_F(PluginAdmin, SlowOperationTimesOutAndItsLateCompletionIsIgnored) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  const auto started = std::chrono::steady_clock::now();
  auto late = call("POST", ops(org_a_, "test-misbehaving", "slow"), tech_a_, {{"delay_ms", 1500}});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(late.status, 504) << late.body;
  EXPECT_EQ(body_of(late)["type"], "urn:helm:problem:timeout");
  EXPECT_LT(took, std::chrono::milliseconds(1400));
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));  // the late completion arrives
  auto quick = call("POST", ops(org_a_, "test-misbehaving", "slow"), tech_a_, {{"delay_ms", 10}});
  ASSERT_EQ(quick.status, 200) << quick.body;
  EXPECT_EQ(body_of(quick)["slept_ms"], 10);
}

TEST_F(PluginAdmin, FailingOperationsAreContainedAndMapped) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  auto thrown = call("POST", ops(org_a_, "test-misbehaving", "throw.std"), tech_a_, json::object());
  EXPECT_EQ(thrown.status, 500) << thrown.body;
  auto not_found =
      call("POST", ops(org_a_, "test-misbehaving", "throw.failure"), tech_a_, json::object());
  EXPECT_EQ(not_found.status, 404) << not_found.body;
  auto dropped = call("POST", ops(org_a_, "test-misbehaving", "drop"), tech_a_, json::object());
  EXPECT_GE(dropped.status, 500) << dropped.body;
  auto fine = call("POST", ops(org_a_, "test-misbehaving", "ok"), tech_a_, json::object());
  EXPECT_EQ(fine.status, 200) << fine.body;
  EXPECT_EQ(call("GET", "/healthz", "").status, 200);
}

TEST_F(PluginAdmin, KeyValueStoreTimersAndLoggingReachThePlugin) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  auto stored = call("POST", ops(org_a_, "test-misbehaving", "host.kv"), tech_a_,
                     {{"key", "cursor"}, {"value", "page-7"}});
  ASSERT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(body_of(stored)["value"], "page-7");
  auto timer = call("POST", ops(org_a_, "test-misbehaving", "host.timer"), tech_a_, json::object());
  ASSERT_EQ(timer.status, 200) << timer.body;
  EXPECT_EQ(body_of(timer)["timer"], "ok");
  EXPECT_EQ(
      call("POST", ops(org_a_, "test-misbehaving", "host.log"), tech_a_, json::object()).status,
      200);
  EXPECT_TRUE(hub_->wait_for_log("hello from the plugin", std::chrono::seconds(5)));
}

TEST_F(PluginAdmin, GrantsNameOnlyDeclaredSecretsAndGateTheRelease) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  auto undeclared = call("PUT", "/api/v1/orgs/" + org_a_ + "/plugins/example-echo/grants", owner_a_,
                         {{"secrets", {"halopsa/client_secret"}}});
  EXPECT_EQ(undeclared.status, 422) << undeclared.body;
  EXPECT_TRUE(has_error_for(undeclared, "/secrets/0")) << undeclared.body;
  EXPECT_NE(undeclared.body.find("halopsa/client_secret"), std::string::npos);

  ASSERT_EQ(call("PUT", "/api/v1/orgs/" + org_a_ + "/secrets/test/api_key", owner_a_,
                 {{"value", "s3cr3t-value"}})
                .status,
            204);
  // Not granted yet: the plugin is refused.
  auto refused = call("POST", ops(org_a_, "test-misbehaving", "host.secret"), tech_a_,
                      {{"name", "test/api_key"}});
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(refused.body.find("s3cr3t"), std::string::npos);

  auto granted = call("PUT", "/api/v1/orgs/" + org_a_ + "/plugins/test-misbehaving/grants",
                      owner_a_, {{"secrets", {"test/api_key"}}});
  ASSERT_EQ(granted.status, 200) << granted.body;
  EXPECT_EQ(body_of(granted)["secrets"], json::array({"test/api_key"}));
  auto released = call("POST", ops(org_a_, "test-misbehaving", "host.secret"), tech_a_,
                       {{"name", "test/api_key"}});
  ASSERT_EQ(released.status, 200) << released.body;
  EXPECT_EQ(body_of(released)["length"], 12);
  EXPECT_EQ(released.body.find("s3cr3t"), std::string::npos);

  ASSERT_EQ(call("PUT", "/api/v1/orgs/" + org_a_ + "/plugins/test-misbehaving/grants", owner_a_,
                 {{"secrets", json::array()}})
                .status,
            200);
  EXPECT_EQ(call("POST", ops(org_a_, "test-misbehaving", "host.secret"), tech_a_,
                 {{"name", "test/api_key"}})
                .status,
            403);
}

TEST_F(PluginAdmin, EachOrganizationCallsWithItsOwnSettings) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  enable_for(org_b_, owner_b_, "test-misbehaving");
  auto put_a = call("PUT", "/api/v1/orgs/" + org_a_ + "/plugins/test-misbehaving/config", owner_a_,
                    {{"tenant", "alpha"}});
  ASSERT_EQ(put_a.status, 200) << put_a.body;
  auto put_b = call("PUT", "/api/v1/orgs/" + org_b_ + "/plugins/test-misbehaving/config", owner_b_,
                    {{"tenant", "beta"}});
  ASSERT_EQ(put_b.status, 200) << put_b.body;
  auto stale = call("PUT", "/api/v1/orgs/" + org_b_ + "/plugins/test-misbehaving/config", owner_b_,
                    {{"tenant", "gamma"}}, {"If-Match: \"999\""});
  EXPECT_EQ(stale.status, 412) << stale.body;

  auto a = call("POST", ops(org_a_, "test-misbehaving", "context"), owner_a_, json::object());
  auto b = call("POST", ops(org_b_, "test-misbehaving", "context"), owner_b_, json::object());
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(body_of(a)["organization_id"], org_a_);
  EXPECT_EQ(body_of(b)["organization_id"], org_b_);
  EXPECT_EQ(body_of(a)["org_config"]["tenant"], "alpha");
  EXPECT_EQ(body_of(b)["org_config"]["tenant"], "beta");
}

TEST_F(PluginAdmin, RolesAndOrganizationsAreEnforcedOnEveryPluginRoute) {
  const std::string echo = "/api/v1/plugins/example-echo";
  const std::string org_echo = "/api/v1/orgs/" + org_a_ + "/plugins/example-echo";
  // A technician: no admin route.
  EXPECT_EQ(call("PATCH", echo, tech_a_, {{"enabled", true}}).status, 403);
  EXPECT_EQ(call("POST", echo + "/reload", tech_a_).status, 403);
  EXPECT_EQ(call("GET", echo, tech_a_).status, 403);
  EXPECT_EQ(call("POST", echo + "/config/validate", tech_a_, json::object()).status, 403);
  EXPECT_EQ(call("PATCH", org_echo, tech_a_, {{"enabled", true}}).status, 403);
  EXPECT_EQ(call("PUT", org_echo + "/config", tech_a_, json::object()).status, 403);
  EXPECT_EQ(call("PUT", org_echo + "/grants", tech_a_, {{"secrets", json::array()}}).status, 403);
  // ...but the list and the schemas.
  EXPECT_EQ(call("GET", "/api/v1/plugins", tech_a_).status, 200);
  auto schema = call("GET", echo + "/schema", tech_a_);
  ASSERT_EQ(schema.status, 200) << schema.body;
  EXPECT_TRUE(body_of(schema)["operations"].contains("echo.delayed"));
  // The owner of another (non-operator) organization: no hub-wide administration.
  EXPECT_EQ(call("PATCH", echo, owner_b_, {{"enabled", false}}).status, 403);
  EXPECT_EQ(call("POST", echo + "/reload", owner_b_).status, 403);
  // ...and nothing of organization A.
  EXPECT_EQ(call("GET", org_echo, owner_b_).status, 404);
  EXPECT_EQ(call("PUT", org_echo + "/grants", owner_b_, {{"secrets", json::array()}}).status, 404);
  EXPECT_EQ(call("POST", ops(org_a_, "example-echo", "echo"), owner_b_, json::object()).status,
            404);
  EXPECT_EQ(call("GET", "/api/v1/plugins", "").status, 401);
}

TEST_F(PluginAdmin, ReloadWhileOperationsAreInFlightLosesNone) {
  enable_for(org_a_, owner_a_, "test-misbehaving");
  constexpr int kCalls = 12;
  std::vector<long> statuses(kCalls, 0);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([i, &statuses] {
      statuses[i] = call("POST", ops(org_a_, "test-misbehaving", "slow"), tech_a_,
                         {{"delay_ms", 150 + 10 * (i % 5)}})
                        .status;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  auto reloaded = call("POST", "/api/v1/plugins/test-misbehaving/reload", owner_a_);
  for (auto& t : callers)
    t.join();
  EXPECT_EQ(reloaded.status, 200) << reloaded.body;
  for (int i = 0; i < kCalls; ++i)
    EXPECT_EQ(statuses[i], 200) << "call " << i;
  EXPECT_EQ(call("POST", ops(org_a_, "test-misbehaving", "ok"), tech_a_, json::object()).status,
            200);
}

// The capability broker's outbound HTTPS seen from a plugin: a vendor stand-in served over TLS
// on loopback with its own CA, reached through the hub only when the manifest declares the host
// and with the organization's CA (ca_pem) when the certificate is not publicly trusted.
class PluginBroker : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-plugin-broker");
    vendor_dir_ = new TempDir("helm-plugin-broker-vendor");
    auto files = http::ensure_development_certificate(vendor_dir_->path());
    ASSERT_TRUE(files) << files.error().message;
    vendor_ca_ = read_file(files->cert_file);
    router_ = new http::Router();
    router_->add("GET", "/devices", [](http::Request&, http::Responder respond) {
      http::Response r = http::Response::json(200, R"({"devices":[{"id":1}]})");
      r.headers.emplace_back("X-Fake", "vendor");
      respond(std::move(r));
    });
    registry_ = new metrics::Registry();
    config::ApiConfig api;
    api.listen.host = "127.0.0.1";
    api.listen.port = 0;
    vendor_ = new http::Server({api, files->cert_file, files->key_file}, *router_, *registry_);
    auto port = vendor_->start();
    ASSERT_TRUE(port) << port.error().message;
    vendor_port_ = *port;

    // test-misbehaving, unsigned, with the vendor's host:port declared.
    const std::string plugin = dir_->path() + "/plugins/test-misbehaving";
    fs::create_directories(dir_->path() + "/plugins");
    fs::copy(std::string(HELM_TEST_PLUGINS_DIR) + "/test-misbehaving", plugin,
             fs::copy_options::recursive);
    fs::remove(plugin + "/signature");
    json manifest = json::parse(read_file(plugin + "/manifest.json"));
    manifest["capabilities"]["outbound_hosts"] =
        json::array({"localhost:" + std::to_string(vendor_port_)});
    write_file(plugin + "/manifest.json", manifest.dump(2));

    std::string out;
    data_ = new TempDir("helm-plugin-broker-data");
    ASSERT_EQ(bootstrap_hub(data_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    HubOptions o{.data_dir = data_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = dir_->path() + "/plugins";
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "true";
    hub_ = new HubProcess(o);
    ASSERT_TRUE(hub_->ready()) << hub_->log();
  }

  static void TearDownTestSuite() {
    delete hub_;
    if (vendor_ != nullptr) vendor_->stop();
    delete vendor_;
    delete registry_;
    delete router_;
    delete vendor_dir_;
    delete data_;
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
  static inline TempDir* vendor_dir_ = nullptr;
  static inline TempDir* data_ = nullptr;
  static inline http::Router* router_ = nullptr;
  static inline metrics::Registry* registry_ = nullptr;
  static inline http::Server* vendor_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline uint16_t vendor_port_ = 0;
  static inline std::string vendor_ca_;
};

TEST_F(PluginBroker, DeclaredHostIsReachedWithTheOrganizationsCaAndNothingElse) {
  auto login =
      call("POST", "/api/v1/auth/login", "", {{"email", "owner@a.test"}, {"password", kPassword}});
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string token = json::parse(login.body)["token"];
  const std::string org = json::parse(login.body)["technician"]["org_id"];
  const std::string base = "/api/v1/orgs/" + org + "/plugins/test-misbehaving";
  ASSERT_EQ(call("PATCH", base, token, {{"enabled", true}}).status, 200);
  const std::string url = "https://localhost:" + std::to_string(vendor_port_) + "/devices";

  // The vendor's certificate is not trusted yet: verification is always on.
  auto untrusted = call("POST", base + "/ops/host.http", token, {{"url", url}});
  EXPECT_EQ(untrusted.status, 502) << untrusted.body;
  EXPECT_NE(untrusted.body.find("upstream-unavailable"), std::string::npos) << untrusted.body;

  ASSERT_EQ(call("PUT", base + "/config", token, {{"ca_pem", vendor_ca_}}).status, 200);
  auto reached = call("POST", base + "/ops/host.http", token, {{"url", url}});
  ASSERT_EQ(reached.status, 200) << reached.body;
  const json body = json::parse(reached.body);
  EXPECT_EQ(body["status"], 200);
  EXPECT_EQ(body["header"], "vendor");
  EXPECT_EQ(json::parse(body["body"].get<std::string>())["devices"][0]["id"], 1);

  // Hosts the manifest does not declare are refused before any connection.
  auto other =
      call("POST", base + "/ops/host.http", token, {{"url", "https://localhost:1/devices"}});
  EXPECT_EQ(other.status, 403) << other.body;
  auto plain = call("POST", base + "/ops/host.http", token,
                    {{"url", "http://localhost:" + std::to_string(vendor_port_) + "/devices"}});
  EXPECT_EQ(plain.status, 422) << plain.body;
}

}  // namespace
}  // namespace helm::test
