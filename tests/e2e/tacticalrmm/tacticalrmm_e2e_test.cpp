// Tactical RMM end to end: the real helm-hub (over real PostgreSQL) with the real
// rmm-tacticalrmm plugin, signed with this build's development key, against the Tactical RMM fake
// (tests/fakes/tacticalrmm) over TLS with its own CA given to the plugin as the organization's
// ca_pem. Technicians invoke the rmm operations over HTTPS; the tests assert what they get back
// and what the fake received: the key from the vault and nothing else, and no request at all
// where the hub must refuse first.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fake_vendor.hpp"
#include "helm/http/tls_files.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPassword = "owner password 123";
constexpr const char* kPlugin = "rmm-tacticalrmm";
constexpr const char* kSecret = "tacticalrmm/api-key";
// Distinctive, so that finding them anywhere they must not be is unambiguous.
constexpr const char* kKeyA = "trmm-key-A-7f3c9e21d4b8a6f0e5c2";
constexpr const char* kKeyB = "trmm-key-B-1a2b3c4d5e6f7a8b9c0d";

class TacticalRmm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-trmm-e2e");
    work_ = new TempDir("helm-trmm-e2e-work");
    // The plugin exactly as built and signed, from a copy the test owns.
    fs::create_directories(work_->file("plugins"));
    fs::copy(std::string(HELM_BUILD_PLUGINS_DIR) + "/" + kPlugin, work_->file("plugins/") + kPlugin,
             fs::copy_options::recursive);

    // The vendor's own CA: a localhost certificate that is its own CA, as an on-premises
    // Tactical RMM with a private CA would have.
    auto files = http::ensure_development_certificate(work_->file("vendor"));
    ASSERT_TRUE(files) << files.error().message;
    vendor_ca_file_ = new std::string(files->cert_file);
    vendor_ca_ = new std::string(read_file(files->cert_file));
    fake_ = new FakeVendor(TRMM_FAKE_SCRIPT, files->cert_file, files->key_file,
                           {"--api-key", kKeyA, "--api-key", kKeyB});
    ASSERT_NE(fake_->port(), 0) << "the fake did not start";
    base_url_ = new std::string("https://localhost:" + std::to_string(fake_->port()));

    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    const std::string keys = work_->file("trusted-keys");
    write_file(keys, read_file(HELM_DEV_PUB) + "\n");
    HubOptions o{.data_dir = dir_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = work_->file("plugins");
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

    // Organization A: two clients linked to the vendor's clients 1 (Acme) and 2 (Globex), an
    // ordinary technician who reaches both and one restricted to Acme.
    client_x_ = make_client("Acme Dental");
    client_y_ = make_client("Globex");
    unlinked_ = make_client("Initech");
    for (const char* email : {"tech@a.test", "tech-x@a.test"}) {
      auto tech = call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
                       {{"email", email}, {"password", kPassword}, {"role", "technician"}});
      ASSERT_EQ(tech.status, 201) << tech.body;
    }
    const json policy = {{"targets",
                          {{"everything", {{"clients", {client_x_, client_y_, unlinked_}}}},
                           {"acme", {{"clients", {client_x_}}}}}},
                         {"rules",
                          {{{"technicians", {"tech@a.test"}}, {"targets", {"everything"}}},
                           {{"technicians", {"tech-x@a.test"}}, {"targets", {"acme"}}}}}};
    auto saved = call("PUT", "/api/v1/orgs/" + org_a_ + "/acl-policy", owner_a_, policy);
    ASSERT_EQ(saved.status, 200) << saved.body;
    tech_a_ = login("tech@a.test")["token"];
    tech_x_ = login("tech-x@a.test")["token"];

    // The admin flow: store the key, turn the plugin on, configure it, grant the secret.
    ASSERT_EQ(
        call("PUT", "/api/v1/orgs/" + org_a_ + "/secrets/" + kSecret, owner_a_, {{"value", kKeyA}})
            .status,
        204);
    ASSERT_EQ(call("PATCH", org_plugin(org_a_), owner_a_, {{"enabled", true}}).status, 200);
    auto configured = call("PUT", org_plugin(org_a_) + "/config", owner_a_, settings_a());
    ASSERT_EQ(configured.status, 200) << configured.body;
    auto granted = call("PUT", org_plugin(org_a_) + "/grants", owner_a_, {{"secrets", {kSecret}}});
    ASSERT_EQ(granted.status, 200) << granted.body;
  }

  static void TearDownTestSuite() {
    delete hub_;
    delete fake_;
    delete base_url_;
    delete vendor_ca_;
    delete vendor_ca_file_;
    delete work_;
    delete dir_;
  }

  void SetUp() override {
    if (hub_ == nullptr || !hub_->ready() || fake_ == nullptr || fake_->port() == 0)
      GTEST_SKIP() << "the hub or the fake did not start";
    fake("POST", "/_fake/reset");
  }

  void TearDown() override {
    // Wherever a test led, the key never reached the hub's log.
    if (hub_ == nullptr) return;
    EXPECT_EQ(hub_->log().find(kKeyA), std::string::npos);
    EXPECT_EQ(hub_->log().find(kKeyB), std::string::npos);
    EXPECT_EQ(hub_->output().find(kKeyA), std::string::npos);
  }

  static json settings_a() {
    return {{"base_url", *base_url_},
            {"ca_pem", *vendor_ca_},
            {"client_map", {{client_x_, 1}, {client_y_, "2"}}}};
  }

  static std::string org_plugin(const std::string& org) {
    return "/api/v1/orgs/" + org + "/plugins/" + kPlugin;
  }

  static std::string make_client(const std::string& name) {
    auto r = call("POST", "/api/v1/orgs/" + org_a_ + "/clients", owner_a_, {{"name", name}});
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? json::parse(r.body)["id"].get<std::string>() : "";
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    o.timeout_ms = 60'000;
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(hub_->base_url() + path, o);
  }

  static json login(const std::string& email) {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  /// Invokes an operation of the plugin in `org` (organization A by default).
  static HttpResponse op(const std::string& token, const std::string& name, const json& input,
                         const std::string& org = "") {
    return call("POST", org_plugin(org.empty() ? org_a_ : org) + "/ops/" + name, token, input);
  }

  /// A control call on the fake.
  static json fake(const std::string& method, const std::string& path, const json& body = nullptr) {
    return fake_->control(method, path, body);
  }

  static json vendor_requests() { return fake_->requests(); }

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  static std::string problem_type(const HttpResponse& r) {
    const json b = body_of(r);
    return b.is_object() ? b.value("type", "") : "";
  }

  static json device_named(const json& devices, const std::string& hostname) {
    for (const auto& d : devices)
      if (d["hostname"] == hostname) return d;
    return nullptr;
  }

  /// Every request the fake saw carried exactly `key`.
  static void expect_every_request_carried(const json& requests, const std::string& key) {
    ASSERT_FALSE(requests.empty());
    for (const auto& r : requests)
      EXPECT_EQ(r["headers"].value("X-API-KEY", ""), key) << r.dump();
  }

  static void expect_no_key_in(const HttpResponse& r) {
    EXPECT_EQ(r.body.find(kKeyA), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find(kKeyB), std::string::npos) << r.body;
    for (const auto& [name, value] : r.headers)
      EXPECT_EQ(value.find(kKeyA), std::string::npos) << name;
  }

  static inline TempDir* dir_ = nullptr;
  static inline TempDir* work_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline FakeVendor* fake_ = nullptr;
  static inline std::string* base_url_ = nullptr;
  static inline std::string* vendor_ca_ = nullptr;
  static inline std::string* vendor_ca_file_ = nullptr;
  static inline std::string owner_a_, org_a_, owner_b_, org_b_, tech_a_, tech_x_;
  static inline std::string client_x_, client_y_, unlinked_;
};

TEST_F(TacticalRmm, ListsEveryDeviceNormalizedWithTheKeyFromTheVault) {
  // An admin is not limited by the ACL: no client_id needed.
  auto r = op(owner_a_, "devices.list", json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  expect_no_key_in(r);
  const json devices = body_of(r)["devices"];
  ASSERT_EQ(devices.size(), 4u) << r.body;
  const json pc = device_named(devices, "ACME-PC01");
  ASSERT_TRUE(pc.is_object()) << r.body;
  EXPECT_EQ(pc["id"], "AcmeAgentWin01");
  EXPECT_EQ(pc["client_id"], client_x_);
  EXPECT_EQ(pc["vendor_client_id"], "1");
  EXPECT_EQ(pc["client_name"], "Acme Dental");
  EXPECT_EQ(pc["site_name"], "Main Office");
  EXPECT_EQ(pc["vendor_site_id"], "1");
  EXPECT_EQ(pc["platform"], "windows");
  EXPECT_EQ(pc["os"], "Windows 11 Pro, 64 bit (build 22631)");
  EXPECT_EQ(pc["status"], "online");
  EXPECT_EQ(pc["public_ip"], "203.0.113.10");
  EXPECT_EQ(pc["local_ips"], json({"10.0.0.11", "192.168.50.11"}));
  EXPECT_EQ(pc["needs_reboot"], false);
  EXPECT_EQ(pc["maintenance_mode"], false);
  EXPECT_EQ(pc["last_seen"], "2026-11-29T23:59:00.000000Z");
  EXPECT_FALSE(pc.contains("raw"));
  EXPECT_EQ(device_named(devices, "globex-web1")["client_id"], client_y_);
  EXPECT_EQ(device_named(devices, "globex-web1")["maintenance_mode"], true);

  const json seen = vendor_requests();
  expect_every_request_carried(seen, kKeyA);
  ASSERT_EQ(seen.size(), 2u) << seen.dump();
  EXPECT_EQ(seen[0]["path"], "/clients/");
  EXPECT_EQ(seen[1]["path"], "/agents/");
  EXPECT_EQ(seen[1]["query"], "");
}

TEST_F(TacticalRmm, ListsOneClientsDevicesThroughTheVendorsClientFilter) {
  auto r = op(tech_a_, "devices.list", {{"client_id", client_y_}, {"include_raw", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json devices = body_of(r)["devices"];
  ASSERT_EQ(devices.size(), 1u) << r.body;
  EXPECT_EQ(devices[0]["hostname"], "globex-web1");
  EXPECT_EQ(devices[0]["raw"]["agent_id"], "GlobexAgentLx1");
  const json seen = vendor_requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1]["params"], json({{"client", "2"}}));

  auto offline = op(tech_a_, "devices.list", {{"client_id", client_x_}, {"status", "offline"}});
  ASSERT_EQ(offline.status, 200) << offline.body;
  ASSERT_EQ(body_of(offline)["devices"].size(), 1u);
  EXPECT_EQ(body_of(offline)["devices"][0]["hostname"], "ACME-LAPTOP7");
  auto branch = op(tech_a_, "devices.list", {{"client_id", client_x_}, {"site", "branch"}});
  ASSERT_EQ(branch.status, 200) << branch.body;
  ASSERT_EQ(body_of(branch)["devices"].size(), 1u);
  EXPECT_EQ(body_of(branch)["devices"][0]["hostname"], "ACME-SRV01");
  auto by_site_id = op(owner_a_, "devices.list", {{"site", "3"}});
  ASSERT_EQ(by_site_id.status, 200) << by_site_id.body;
  EXPECT_EQ(body_of(by_site_id)["devices"].size(), 1u);
  EXPECT_EQ(vendor_requests().back()["params"], json({{"site", "3"}}));
  auto servers = op(owner_a_, "devices.list", {{"monitoring_type", "server"}});
  ASSERT_EQ(servers.status, 200);
  EXPECT_EQ(body_of(servers)["devices"].size(), 2u);

  const std::size_t before = vendor_requests().size();
  auto unlinked = op(tech_a_, "devices.list", {{"client_id", unlinked_}});
  EXPECT_EQ(unlinked.status, 404) << unlinked.body;
  EXPECT_NE(unlinked.body.find("not linked to Tactical RMM"), std::string::npos) << unlinked.body;
  EXPECT_EQ(vendor_requests().size(), before);  // not even the vault was asked
}

TEST_F(TacticalRmm, GetsADeviceButNotThroughAnotherClient) {
  auto r = op(owner_a_, "devices.get", {{"device_id", "AcmeAgentSrv01"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json d = body_of(r)["device"];
  EXPECT_EQ(d["hostname"], "ACME-SRV01");
  EXPECT_EQ(d["client_id"], client_x_);
  EXPECT_EQ(d["site_name"], "Branch");
  EXPECT_EQ(d["vendor_site_id"], "2");
  EXPECT_EQ(d["needs_reboot"], true);
  EXPECT_EQ(d["os"], "Windows Server 2022 Standard, 64 bit (build 20348)");
  EXPECT_EQ(vendor_requests()[0]["path"], "/agents/AcmeAgentSrv01/");

  auto owned =
      op(tech_a_, "devices.get", {{"device_id", "AcmeAgentSrv01"}, {"client_id", client_x_}});
  EXPECT_EQ(owned.status, 200) << owned.body;
  auto other =
      op(tech_a_, "devices.get", {{"device_id", "AcmeAgentSrv01"}, {"client_id", client_y_}});
  EXPECT_EQ(other.status, 404) << other.body;
  auto missing =
      op(tech_a_, "devices.get", {{"device_id", "NoSuchAgent"}, {"client_id", client_y_}});
  EXPECT_EQ(missing.status, 404) << missing.body;
  // The same answer for a device that does not exist and one of another client.
  EXPECT_EQ(body_of(other)["detail"], "Tactical RMM has no device AcmeAgentSrv01");
  EXPECT_EQ(body_of(missing)["detail"], "Tactical RMM has no device NoSuchAgent");
}

TEST_F(TacticalRmm, ListsScripts) {
  auto r = op(tech_a_, "scripts.list", json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  const json scripts = body_of(r)["scripts"];
  ASSERT_EQ(scripts.size(), 2u) << r.body;  // the hidden one only on request
  EXPECT_EQ(scripts[0]["id"], "1");
  EXPECT_EQ(scripts[0]["name"], "Clear DNS cache");
  EXPECT_EQ(scripts[0]["shell"], "powershell");
  EXPECT_EQ(scripts[0]["category"], "Network");
  EXPECT_EQ(scripts[0]["default_timeout"], 30);
  EXPECT_EQ(scripts[0]["platforms"], json({"windows"}));
  auto linux_only = op(tech_a_, "scripts.list", {{"platform", "linux"}});
  ASSERT_EQ(linux_only.status, 200);
  ASSERT_EQ(body_of(linux_only)["scripts"].size(), 1u);
  EXPECT_EQ(body_of(linux_only)["scripts"][0]["name"], "Disk usage");
  auto all = op(tech_a_, "scripts.list", {{"include_hidden", true}});
  EXPECT_EQ(body_of(all)["scripts"].size(), 3u);
  expect_every_request_carried(vendor_requests(), kKeyA);
}

TEST_F(TacticalRmm, RunsAScriptAndWaitsForItsOutput) {
  auto r = op(tech_a_, "scripts.run",
              {{"client_id", client_x_},
               {"device_id", "AcmeAgentWin01"},
               {"script_id", "1"},
               {"args", {"-Verbose"}},
               {"env_vars", {"MODE=fast"}},
               {"timeout_s", 20}});
  ASSERT_EQ(r.status, 200) << r.body;
  expect_no_key_in(r);
  EXPECT_EQ(body_of(r), json({{"device_id", "AcmeAgentWin01"},
                              {"script_id", "1"},
                              {"output",
                               "Clear DNS cache on ACME-PC01 args=[\"-Verbose\"] "
                               "env=[\"MODE=fast\"]\n"}}));
  // With a client_id the plugin first checks the device is that client's, then runs.
  const json seen = vendor_requests();
  ASSERT_EQ(seen.size(), 3u) << seen.dump();
  EXPECT_EQ(seen[0]["path"], "/agents/AcmeAgentWin01/");
  EXPECT_EQ(seen[1]["path"], "/clients/");
  EXPECT_EQ(seen[2]["method"], "POST");
  EXPECT_EQ(seen[2]["path"], "/agents/AcmeAgentWin01/runscript/");
  EXPECT_EQ(seen[2]["json"], json({{"script", 1},
                                   {"output", "wait"},
                                   {"args", {"-Verbose"}},
                                   {"env_vars", {"MODE=fast"}},
                                   {"timeout", 20},
                                   {"run_as_user", false}}));
  expect_every_request_carried(seen, kKeyA);
}

TEST_F(TacticalRmm, RunsACommandAndReturnsItsOutput) {
  auto r = op(owner_a_, "commands.run",
              {{"device_id", "AcmeAgentWin01"}, {"shell", "powershell"}, {"command", "Get-Date"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_of(r), json({{"device_id", "AcmeAgentWin01"},
                              {"output", "[powershell@ACME-PC01] Get-Date\n"}}));
  const json seen = vendor_requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0]["path"], "/agents/AcmeAgentWin01/cmd/");
  EXPECT_EQ(
      seen[0]["json"],
      json(
          {{"shell", "powershell"}, {"cmd", "Get-Date"}, {"timeout", 30}, {"run_as_user", false}}));
  EXPECT_EQ(seen[0]["headers"]["X-API-KEY"], kKeyA);

  auto too_long = op(
      owner_a_, "commands.run",
      {{"device_id", "AcmeAgentWin01"}, {"shell", "bash"}, {"command", "x"}, {"timeout_s", 601}});
  EXPECT_EQ(too_long.status, 422) << too_long.body;
}

TEST_F(TacticalRmm, BaseUrlWithATrailingSlashWorksToo) {
  json settings = settings_a();
  settings["base_url"] = *base_url_ + "/";
  ASSERT_EQ(call("PUT", org_plugin(org_a_) + "/config", owner_a_, settings).status, 200);
  auto r = op(tech_a_, "scripts.list", json::object());
  ASSERT_EQ(call("PUT", org_plugin(org_a_) + "/config", owner_a_, settings_a()).status, 200);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(vendor_requests()[0]["path"], "/scripts/");
}

TEST_F(TacticalRmm, LoggedOutOrDisabledSessionIsRefusedBeforeTheVendorIsCalled) {
  const std::string token = login("tech@a.test")["token"];
  ASSERT_EQ(op(token, "scripts.list", json::object()).status, 200);
  fake("POST", "/_fake/reset");
  ASSERT_EQ(call("POST", "/api/v1/auth/logout", token).status / 100, 2);
  auto refused = op(token, "devices.list", json::object());
  EXPECT_EQ(refused.status, 401) << refused.body;
  EXPECT_EQ(vendor_requests(), json::array());

  auto created = call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
                      {{"email", "leaver@a.test"}, {"password", kPassword}, {"role", "admin"}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string leaver = login("leaver@a.test")["token"];
  ASSERT_EQ(call("POST",
                 "/api/v1/orgs/" + org_a_ + "/technicians/" +
                     body_of(created)["id"].get<std::string>() + "/disable",
                 owner_a_)
                .status,
            204);
  auto disabled = op(leaver, "devices.list", json::object());
  EXPECT_EQ(disabled.status, 401) << disabled.body;
  EXPECT_EQ(vendor_requests(), json::array());
}

TEST_F(TacticalRmm, AnotherOrganizationNeverReachesThisOrganizationsKey) {
  // B cannot invoke A's plugin at all.
  auto foreign = op(owner_b_, "devices.list", json::object(), org_a_);
  EXPECT_EQ(foreign.status, 404) << foreign.body;
  // B's own settings point at the same Tactical RMM, but B's vault holds no key yet.
  ASSERT_EQ(call("PATCH", org_plugin(org_b_), owner_b_, {{"enabled", true}}).status, 200);
  ASSERT_EQ(call("PUT", org_plugin(org_b_) + "/config", owner_b_,
                 {{"base_url", *base_url_}, {"ca_pem", *vendor_ca_}})
                .status,
            200);
  auto ungranted = op(owner_b_, "devices.list", json::object(), org_b_);
  EXPECT_EQ(ungranted.status, 403) << ungranted.body;
  ASSERT_EQ(call("PUT", org_plugin(org_b_) + "/grants", owner_b_, {{"secrets", {kSecret}}}).status,
            200);
  auto no_secret = op(owner_b_, "devices.list", json::object(), org_b_);
  EXPECT_EQ(no_secret.status, 404) << no_secret.body;
  EXPECT_EQ(vendor_requests(), json::array());

  // With its own key stored, B's calls carry B's key and nothing of A's.
  ASSERT_EQ(
      call("PUT", "/api/v1/orgs/" + org_b_ + "/secrets/" + kSecret, owner_b_, {{"value", kKeyB}})
          .status,
      204);
  auto own = op(owner_b_, "devices.list", json::object(), org_b_);
  ASSERT_EQ(own.status, 200) << own.body;
  expect_no_key_in(own);
  // B has no client_map: devices carry the vendor's client but no hub client.
  EXPECT_EQ(body_of(own)["devices"][0]["client_id"], nullptr);
  expect_every_request_carried(vendor_requests(), kKeyB);
}

TEST_F(TacticalRmm, PluginWithoutTheGrantGetsNoKeyAndMakesNoRequest) {
  ASSERT_EQ(
      call("PUT", org_plugin(org_a_) + "/grants", owner_a_, {{"secrets", json::array()}}).status,
      200);
  auto refused = op(tech_a_, "commands.run",
                    {{"client_id", client_x_},
                     {"device_id", "AcmeAgentWin01"},
                     {"shell", "cmd"},
                     {"command", "dir"}});
  ASSERT_EQ(call("PUT", org_plugin(org_a_) + "/grants", owner_a_, {{"secrets", {kSecret}}}).status,
            200);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("grants"), std::string::npos) << refused.body;
  EXPECT_EQ(vendor_requests(), json::array());
}

TEST_F(TacticalRmm, RestrictedTechnicianReachesOnlyItsClient) {
  auto own = op(tech_x_, "devices.list", {{"client_id", client_x_}});
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(body_of(own)["devices"].size(), 3u);
  fake("POST", "/_fake/reset");

  auto other = op(tech_x_, "devices.list", {{"client_id", client_y_}});
  EXPECT_EQ(other.status, 403) << other.body;
  auto run = op(tech_x_, "commands.run",
                {{"client_id", client_y_},
                 {"device_id", "GlobexAgentLx1"},
                 {"shell", "bash"},
                 {"command", "id"}});
  EXPECT_EQ(run.status, 403) << run.body;
  EXPECT_EQ(vendor_requests(), json::array());

  // Naming its own client for another client's device: the device is not found and nothing runs.
  auto smuggled = op(tech_x_, "commands.run",
                     {{"client_id", client_x_},
                      {"device_id", "GlobexAgentLx1"},
                      {"shell", "bash"},
                      {"command", "id"}});
  EXPECT_EQ(smuggled.status, 404) << smuggled.body;
  for (const auto& r : vendor_requests())
    EXPECT_EQ(r["method"], "GET") << r.dump();
  auto script = op(tech_x_, "scripts.run",
                   {{"client_id", client_x_}, {"device_id", "GlobexAgentLx1"}, {"script_id", 2}});
  EXPECT_EQ(script.status, 404) << script.body;
  auto mine = op(tech_x_, "commands.run",
                 {{"client_id", client_x_},
                  {"device_id", "AcmeAgentWin01"},
                  {"shell", "cmd"},
                  {"command", "hostname"}});
  EXPECT_EQ(mine.status, 200) << mine.body;
}

TEST_F(TacticalRmm, RestrictedTechnicianOmittingClientIdIsRefused) {
  auto omitted = op(tech_x_, "devices.list", json::object());
  EXPECT_EQ(omitted.status, 403) << omitted.body;
  auto run = op(tech_x_, "commands.run",
                {{"device_id", "GlobexAgentLx1"}, {"shell", "bash"}, {"command", "id"}});
  EXPECT_EQ(run.status, 403) << run.body;
  EXPECT_EQ(vendor_requests(), json::array());
}

TEST_F(TacticalRmm, RefusedKeyIsUpstreamUnauthorizedWithoutTheKey) {
  fake("POST", "/_fake/state", {{"keys", {{kKeyA, {{"expired", true}}}, {kKeyB, json::object()}}}});
  auto expired = op(owner_a_, "devices.list", json::object());
  EXPECT_EQ(expired.status, 502) << expired.body;
  EXPECT_EQ(problem_type(expired), "urn:helm:problem:upstream-unauthorized");
  EXPECT_NE(body_of(expired)["detail"].get<std::string>().find(
                "Tactical RMM refused the API key (The token has expired.)"),
            std::string::npos)
      << expired.body;
  expect_no_key_in(expired);

  fake("POST", "/_fake/state", {{"keys", {{kKeyB, json::object()}}}});  // A's key unknown
  auto unknown = op(tech_a_, "scripts.list", json::object());
  EXPECT_EQ(unknown.status, 502) << unknown.body;
  EXPECT_NE(unknown.body.find("Invalid token."), std::string::npos) << unknown.body;
  expect_no_key_in(unknown);

  fake("POST", "/_fake/state", {{"keys", {{kKeyA, {{"inactive", true}}}}}});
  auto inactive = op(tech_a_, "scripts.list", json::object());
  EXPECT_EQ(problem_type(inactive), "urn:helm:problem:upstream-unauthorized") << inactive.body;
  EXPECT_NE(inactive.body.find("User inactive or deleted."), std::string::npos);

  fake("POST", "/_fake/state", {{"keys", {{kKeyA, {{"read_only", true}}}}}});
  EXPECT_EQ(op(tech_a_, "scripts.list", json::object()).status, 200);
  auto write = op(owner_a_, "commands.run",
                  {{"device_id", "AcmeAgentWin01"}, {"shell", "cmd"}, {"command", "dir"}});
  EXPECT_EQ(write.status, 502) << write.body;
  EXPECT_EQ(problem_type(write), "urn:helm:problem:upstream-unauthorized");
  EXPECT_NE(write.body.find("lacks the permission"), std::string::npos) << write.body;
}

TEST_F(TacticalRmm, OfflineAgentIsATypedErrorInBothShapes) {
  const std::string offline = "the device did not answer (offline or unreachable)";
  auto cmd =
      op(owner_a_, "commands.run",
         {{"device_id", "AcmeAgentOff01"}, {"shell", "cmd"}, {"command", "dir"}, {"timeout_s", 1}});
  EXPECT_EQ(cmd.status, 502) << cmd.body;
  EXPECT_EQ(problem_type(cmd), "urn:helm:problem:upstream-unavailable");
  EXPECT_EQ(body_of(cmd)["detail"], offline);

  // runscript/ answers 200 "timeout" in current releases...
  auto script = op(owner_a_, "scripts.run",
                   {{"device_id", "AcmeAgentOff01"}, {"script_id", 1}, {"timeout_s", 1}});
  EXPECT_EQ(script.status, 502) << script.body;
  EXPECT_EQ(problem_type(script), "urn:helm:problem:upstream-unavailable");
  EXPECT_EQ(body_of(script)["detail"], offline);
  // ...and 400 "Unable to contact the agent" like cmd/ in others.
  fake("POST", "/_fake/state", {{"runscript_offline", "unable400"}});
  auto script400 = op(owner_a_, "scripts.run",
                      {{"device_id", "AcmeAgentOff01"}, {"script_id", 1}, {"timeout_s", 1}});
  EXPECT_EQ(script400.status, 502) << script400.body;
  EXPECT_EQ(body_of(script400)["detail"], offline);
}

TEST_F(TacticalRmm, VendorFaultsAreMappedToProblems) {
  fake("POST", "/_fake/inject", {{"status", 503}, {"body", "<h1>Bad Gateway</h1>"}});
  auto unavailable = op(tech_a_, "scripts.list", json::object());
  EXPECT_EQ(unavailable.status, 502) << unavailable.body;
  EXPECT_EQ(problem_type(unavailable), "urn:helm:problem:upstream-unavailable");

  fake(
      "POST", "/_fake/inject",
      {{"status", 400}, {"method", "POST"}, {"body", {{"cmd", {"This field may not be blank."}}}}});
  auto invalid = op(owner_a_, "commands.run",
                    {{"device_id", "AcmeAgentWin01"}, {"shell", "cmd"}, {"command", "dir"}});
  EXPECT_EQ(invalid.status, 422) << invalid.body;
  EXPECT_NE(invalid.body.find("cmd: This field may not be blank."), std::string::npos)
      << invalid.body;

  fake("POST", "/_fake/inject", {{"status", 400}, {"method", "POST"}, {"body", "Agent is busy"}});
  auto refused = op(owner_a_, "commands.run",
                    {{"device_id", "AcmeAgentWin01"}, {"shell", "cmd"}, {"command", "dir"}});
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_EQ(problem_type(refused), "urn:helm:problem:upstream-error");
  EXPECT_NE(refused.body.find("Agent is busy"), std::string::npos) << refused.body;

  fake("POST", "/_fake/inject",
       {{"status", 200}, {"path_prefix", "/agents/"}, {"body", {{"unexpected", true}}}});
  auto odd = op(owner_a_, "devices.list", json::object());
  EXPECT_EQ(odd.status, 502) << odd.body;
  EXPECT_EQ(problem_type(odd), "urn:helm:problem:upstream-error");
  fake("POST", "/_fake/inject",
       {{"status", 200},
        {"path_prefix", "/agents/"},
        {"body", json::array({json{{"hostname", 5}}})}});
  auto strange = op(owner_a_, "devices.list", json::object());
  EXPECT_EQ(strange.status, 200) << strange.body;  // unreadable fields become null, no crash

  auto missing_agent = op(owner_a_, "commands.run",
                          {{"device_id", "NoSuchAgent"}, {"shell", "cmd"}, {"command", "dir"}});
  EXPECT_EQ(missing_agent.status, 404) << missing_agent.body;
  EXPECT_EQ(call("GET", "/healthz", "").status, 200);
}

TEST_F(TacticalRmm, RateLimitIsRetriedOnceAfterRetryAfterThenReported) {
  fake("POST", "/_fake/inject",
       {{"status", 429}, {"path_prefix", "/scripts/"}, {"headers", {{"Retry-After", "1"}}}});
  const auto started = std::chrono::steady_clock::now();
  auto retried = op(tech_a_, "scripts.list", json::object());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(vendor_requests().size(), 2u);

  fake("POST", "/_fake/inject",
       {{"status", 429}, {"times", 2}, {"headers", {{"Retry-After", "1"}}}});
  auto limited = op(tech_a_, "scripts.list", json::object());
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(problem_type(limited), "urn:helm:problem:upstream-rate-limited");
  EXPECT_EQ(limited.headers["retry-after"], "1");
}

TEST_F(TacticalRmm, SlowVendorEndsInATimeoutAtTheDeadline) {
  // The operator shortens the plugin's request deadline; the vendor takes longer.
  auto shortened = call("PATCH", std::string("/api/v1/plugins/") + kPlugin, owner_a_,
                        {{"config", {{"request_timeout_ms", 1000}}}});
  ASSERT_EQ(shortened.status, 200) << shortened.body;
  fake("POST", "/_fake/inject", {{"latency_ms", 3000}, {"path_prefix", "/scripts/"}});
  const auto started = std::chrono::steady_clock::now();
  auto slow = op(tech_a_, "scripts.list", json::object());
  const auto took = std::chrono::steady_clock::now() - started;
  auto restored = call("PATCH", std::string("/api/v1/plugins/") + kPlugin, owner_a_,
                       {{"config", json::object()}});
  EXPECT_EQ(restored.status, 200) << restored.body;
  EXPECT_EQ(slow.status, 504) << slow.body;
  EXPECT_EQ(problem_type(slow), "urn:helm:problem:timeout");
  EXPECT_LT(took, 2900ms);

  // A command is waited for its own timeout plus Tactical RMM's 2 s and the margin, not more.
  fake("POST", "/_fake/inject", {{"latency_ms", 9000}, {"path_prefix", "/agents/"}});
  const auto started_cmd = std::chrono::steady_clock::now();
  auto cmd =
      op(owner_a_, "commands.run",
         {{"device_id", "AcmeAgentWin01"}, {"shell", "cmd"}, {"command", "dir"}, {"timeout_s", 1}});
  const auto took_cmd = std::chrono::steady_clock::now() - started_cmd;
  EXPECT_EQ(cmd.status, 504) << cmd.body;
  EXPECT_GE(took_cmd, 5500ms);  // 1 s + 2 s + the 3 s margin
  EXPECT_LT(took_cmd, 8500ms);
}

}  // namespace
}  // namespace helm::test
