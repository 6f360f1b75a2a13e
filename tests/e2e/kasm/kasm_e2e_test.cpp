// Kasm end to end: the real helm-hub (over real PostgreSQL) with the real kasm plugin, signed
// with this build's development key, against the Kasm fake (tests/fakes/kasm) over TLS with its
// own CA given to the plugin as the organization's ca_pem. Technicians open, list and close
// workspaces over HTTPS; the tests assert what they get back, what the fake received, what the
// audit log holds, and that every workspace of a hub session is destroyed when it ends (logout,
// idle timeout, disabled account) or, after a hub crash, by the reconciler.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_vendor.hpp"
#include "helm/http/tls_files.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "test_support.hpp"

extern char** environ;

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPassword = "owner password 123";
constexpr const char* kPlugin = "kasm";
constexpr const char* kSecretName = "kasm/api-key-secret";
constexpr const char* kKeyId = "helm-hub-key-01";
// Distinctive, so that finding it anywhere it must not be is unambiguous.
constexpr const char* kKeySecret = "kasm-SECRET-9c41e7a2b05d3f68";
constexpr const char* kSharedUser = "5a0c3f1e7b2d4e6f8a9b0c1d2e3f4a5b";
constexpr const char* kChrome = "0b7a4e8f9c3d4f2a8e6b1d5c7a9f3e21";
constexpr const char* kUbuntu = "4c1d2e3f4a5b4c6d8e7f9a0b1c2d3e4f";

using CtlResult = CliResult;

/// Runs the real helmctl with `args` and `input` on stdin, in an environment without HELM_*
/// variables and with HOME in `home` (so `login` saves its token there).
CtlResult helmctl(const std::vector<std::string>& args, const std::string& home,
                  const std::string& input = "") {
  return run_cli(HELMCTL_BINARY, args, home, input);
}

/// The lines of a table (header first), split into whitespace-separated cells.
std::vector<std::vector<std::string>> table_of(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream cells(line);
    std::vector<std::string> row;
    for (std::string cell; cells >> cell;)
      row.push_back(cell);
    if (!row.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Everything a suite shares: the hub, the fake, one organization set up by its admin.
struct World {
  TempDir dir{"helm-kasm-e2e"};
  TempDir work{"helm-kasm-e2e-work"};
  std::unique_ptr<FakeVendor> fake;
  std::unique_ptr<HubProcess> hub;
  HubOptions options;
  std::string base_url, vendor_ca, vendor_ca_file;
  std::string owner, org, tech, tech_x, tech_email = "tech@a.test";
  std::string client_x, client_y, client_z;
  std::string error;  // why the world could not be built

  explicit World(std::map<std::string, std::string> extra_env) {
    fs::create_directories(work.file("plugins"));
    fs::copy(std::string(HELM_BUILD_PLUGINS_DIR) + "/" + kPlugin, work.file("plugins/") + kPlugin,
             fs::copy_options::recursive);
    auto files = http::ensure_development_certificate(work.file("vendor"));
    if (!files) {
      error = files.error().message;
      return;
    }
    vendor_ca_file = files->cert_file;
    vendor_ca = read_file(files->cert_file);
    fake = std::make_unique<FakeVendor>(
        KASM_FAKE_SCRIPT, files->cert_file, files->key_file,
        std::vector<std::string>{"--api-key", std::string(kKeyId) + ":" + kKeySecret});
    if (fake->port() == 0) {
      error = "the fake did not start";
      return;
    }
    base_url = "https://localhost:" + std::to_string(fake->port());
    std::string out;
    if (bootstrap_hub(dir.path(), "Operators", "owner@a.test", kPassword, &out) != 0) {
      error = out;
      return;
    }
    const std::string keys = work.file("trusted-keys");
    write_file(keys, read_file(HELM_DEV_PUB) + "\n");
    options = HubOptions{.data_dir = dir.path(), .env = kFastPasswordEnv};
    options.env["HELM_PLUGINS_PATH"] = work.file("plugins");
    options.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "false";
    options.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = keys;
    for (const auto& [k, v] : extra_env)
      options.env[k] = v;
    hub = std::make_unique<HubProcess>(options);
    if (!hub->ready()) {
      error = hub->log();
      return;
    }
    const json o = login("owner@a.test");
    owner = o.value("token", "");
    org = o["technician"].value("org_id", "");
    client_x = make_client("Acme Dental");
    client_y = make_client("Globex");
    client_z = make_client("Initech");
    for (const char* email : {"tech@a.test", "tech-x@a.test"}) {
      auto r = call("POST", "/api/v1/orgs/" + org + "/technicians", owner,
                    {{"email", email}, {"password", kPassword}, {"role", "technician"}});
      if (r.status != 201) error = r.body;
    }
    const json policy = {
        {"targets",
         {{"xy", {{"clients", {client_x, client_y}}}}, {"x", {{"clients", {client_x}}}}}},
        {"rules",
         {{{"technicians", {"tech@a.test"}}, {"targets", {"xy"}}},
          {{"technicians", {"tech-x@a.test"}}, {"targets", {"x"}}}}}};
    auto saved = call("PUT", "/api/v1/orgs/" + org + "/acl-policy", owner, policy);
    if (saved.status != 200) error = saved.body;
    tech = login("tech@a.test").value("token", "");
    tech_x = login("tech-x@a.test").value("token", "");
    auto stored = call("PUT", "/api/v1/orgs/" + org + "/secrets/" + kSecretName, owner,
                       {{"value", kKeySecret}});
    if (stored.status != 204) error = stored.body;
    if (call("PATCH", org_plugin(), owner, {{"enabled", true}}).status != 200)
      error = "enabling the plugin failed";
    auto configured = call("PUT", org_plugin() + "/config", owner, settings());
    if (configured.status != 200) error = configured.body;
    auto granted = call("PUT", org_plugin() + "/grants", owner, {{"secrets", {kSecretName}}});
    if (granted.status != 200) error = granted.body;
  }

  json settings() const {
    return {{"base_url", base_url},
            {"ca_pem", vendor_ca},
            {"api_key", kKeyId},
            {"auth_style", "body"},
            {"user_mode", "shared"},
            {"kasm_user_id", kSharedUser},
            {"client_images", {{client_x, kChrome}, {client_y, kUbuntu}}}};
  }

  std::string org_plugin() const { return "/api/v1/orgs/" + org + "/plugins/" + kPlugin; }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& token,
                    const json& body = nullptr) const {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub->ca_file();
    o.timeout_ms = 90'000;
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(hub->base_url() + path, o);
  }

  json login(const std::string& email) const {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  std::string make_client(const std::string& name) const {
    auto r = call("POST", "/api/v1/orgs/" + org + "/clients", owner, {{"name", name}});
    return r.status == 201 ? json::parse(r.body)["id"].get<std::string>() : "";
  }

  HttpResponse op(const std::string& token, const std::string& name, const json& input) const {
    return call("POST", org_plugin() + "/ops/" + name, token, input);
  }

  json fake_call(const std::string& method, const std::string& path,
                 const json& body = nullptr) const {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = vendor_ca_file;
    if (!body.is_null()) o.body = body.dump();
    o.headers.push_back("Content-Type: application/json");
    auto r = https(base_url + path, o);
    return json::parse(r.body, nullptr, false);
  }

  json requests(const std::string& kasm_method = "") const {
    return fake_call("GET",
                     "/_fake/requests" + (kasm_method.empty() ? "" : "?kasm_method=" + kasm_method))
        .value("requests", json::array());
  }

  json fake_state() const { return fake_call("GET", "/_fake/state"); }

  /// A Kasm API call made directly (as another Kasm client would), with the test's key.
  json kasm_direct(const std::string& method, json body) const {
    body["api_key"] = kKeyId;
    body["api_key_secret"] = kKeySecret;
    return fake_call("POST", "/api/public/" + method, body);
  }

  /// Restarts the hub on the same data directory (after a crash, say).
  bool restart() {
    hub = std::make_unique<HubProcess>(options);
    return hub->ready();
  }

  struct Audit {
    std::string actor, org_id;
    json extra;
  };

  /// Audit rows "plugin.kasm.<action>", oldest first.
  std::vector<Audit> audits(const std::string& action) const {
    std::vector<Audit> rows;
    pqxx::connection conn(storage::EmbeddedPostgres::connection_string_for(dir.path()));
    pqxx::work tx(conn);
    for (const auto& r : tx.exec("SELECT actor, org_id, extra FROM audit_log WHERE action = " +
                                 tx.quote(std::string("plugin.kasm.") + action) + " ORDER BY seq"))
      rows.push_back({r[0].c_str(), r[1].c_str(), json::parse(r[2].c_str(), nullptr, false)});
    return rows;
  }
};

/// Polls `probe` every 20 ms until it is true or `limit` passes.
bool eventually(const std::function<bool()>& probe, std::chrono::milliseconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return probe();
}

class KasmBase : public ::testing::Test {
 protected:
  static void build(std::map<std::string, std::string> env) { world_ = new World(std::move(env)); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }

  void SetUp() override {
    if (world_ == nullptr || !world_->error.empty()) {
      GTEST_FAIL() << "the hub or the fake did not start: "
                   << (world_ ? world_->error.substr(0, 2000) : "");
    }
    w().fake_call("POST", "/_fake/reset");
  }

  void TearDown() override {
    // Wherever a test led, the secret never reached the hub's log or output.
    if (world_ == nullptr || !world_->hub) return;
    EXPECT_EQ(w().hub->log().find(kKeySecret), std::string::npos);
    EXPECT_EQ(w().hub->output().find(kKeySecret), std::string::npos);
  }

  static World& w() { return *world_; }

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  static void expect_no_secret_in(const HttpResponse& r) {
    EXPECT_EQ(r.body.find(kKeySecret), std::string::npos) << r.body;
    for (const auto& [name, value] : r.headers)
      EXPECT_EQ(value.find(kKeySecret), std::string::npos) << name;
  }

  /// Opens a workspace; null (and a failure) when the hub did not answer 200.
  static json open_ws(const std::string& token, const std::string& client) {
    auto r = w().op(token, "workspaces.open", {{"client_id", client}});
    EXPECT_EQ(r.status, 200) << r.body;
    expect_no_secret_in(r);
    return r.status == 200 ? body_of(r) : json(nullptr);
  }

  /// Whether the fake destroyed `kasm_id` (hyphen-insensitive), and when (fake's clock, s).
  static std::optional<double> destroyed_at(const std::string& kasm_id) {
    for (const auto& d : w().fake_state().value("destroyed", json::array()))
      if (d.value("kasm_id", "") == kasm_id) return d.value("time", 0.0);
    return std::nullopt;
  }

  /// Waits for the fake to destroy every id; when it does not, says what the hub's log shows
  /// (into why_) and returns false.
  bool wait_destroyed(const std::vector<std::string>& ids, std::chrono::milliseconds limit = 15s) {
    const bool all = eventually(
        [&] {
          for (const auto& id : ids)
            if (!destroyed_at(id)) return false;
          return true;
        },
        limit);
    if (all) return true;
    const std::string log = w().hub->log();
    const auto at = log.find("kasm: could not destroy workspace");
    why_ = at != std::string::npos ? "the plugin could not reach Kasm: " + log.substr(at, 600)
                                   : "no destroy_kasm reached the fake (no session.ended event?)";
    return false;
  }

  /// Waits for the audit record of `action` naming `workspace_id`.
  static std::optional<World::Audit> audit_of(const std::string& action,
                                              const std::string& workspace_id) {
    std::optional<World::Audit> found;
    eventually([&] {
      for (const auto& a : w().audits(action))
        if (a.extra.value("workspace_id", "") == workspace_id) found = a;
      return found.has_value();
    });
    return found;
  }

  static inline World* world_ = nullptr;
  std::string why_;
};

#define OPEN(var, token, client)           \
  const json var = open_ws(token, client); \
  ASSERT_TRUE(var.is_object())

class Kasm : public KasmBase {
 protected:
  static void SetUpTestSuite() { build({}); }
};

TEST_F(Kasm, OpensAWorkspaceForAClientWithItsImageAndReturnsAnAbsoluteUrl) {
  OPEN(ws, w().tech, w().client_x);
  EXPECT_EQ(ws["client_id"], w().client_x);
  EXPECT_EQ(ws["status"], "running");
  EXPECT_EQ(ws["image_id"], kChrome);
  const std::string id = ws["workspace_id"];
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(ws["url"].get<std::string>().rfind(w().base_url + "/#/connect/kasm/" + id + "/", 0), 0u)
      << ws.dump();
  ASSERT_TRUE(ws["expires_at"].is_string()) << ws.dump();
  EXPECT_EQ(ws["expires_at"].get<std::string>().back(), 'Z');

  const json asked = w().requests("request_kasm");
  ASSERT_EQ(asked.size(), 1u);
  const json body = asked[0]["json"];
  EXPECT_EQ(asked[0]["method"], "POST");
  EXPECT_EQ(asked[0]["path"], "/api/public/request_kasm");
  EXPECT_EQ(body["user_id"], kSharedUser);
  EXPECT_EQ(body["image_id"], kChrome);
  EXPECT_EQ(body["enable_sharing"], false);
  EXPECT_EQ(body["api_key"], kKeyId);
  EXPECT_EQ(body["api_key_secret"], kKeySecret);
  // The workspace's environment carries no credential (the plugin sends none at all).
  EXPECT_FALSE(body.contains("environment")) << body.dump();
  const json state = w().fake_state();
  for (const auto& [id2, k] : state["kasms"].items())
    EXPECT_EQ(k["environment"].dump().find(kKeySecret), std::string::npos);
  // It polled the starting session until it ran.
  EXPECT_GE(w().requests("get_kasm_status").size(), 1u);

  auto audited = w().audits("workspace.created");
  ASSERT_FALSE(audited.empty());
  EXPECT_EQ(audited.back().extra["workspace_id"], id);
  EXPECT_EQ(audited.back().org_id, w().org);
}

TEST_F(Kasm, SameClientTwiceInOneSessionIsTheSameWorkspaceTwoClientsAreTwo) {
  OPEN(first, w().tech, w().client_x);
  OPEN(again, w().tech, w().client_x);
  EXPECT_EQ(again["workspace_id"], first["workspace_id"]);
  EXPECT_EQ(again["url"], first["url"]);
  EXPECT_EQ(w().requests("request_kasm").size(), 1u);
  OPEN(other, w().tech, w().client_y);
  EXPECT_NE(other["workspace_id"], first["workspace_id"]);
  EXPECT_EQ(other["image_id"], kUbuntu);
  EXPECT_EQ(w().requests("request_kasm").size(), 2u);

  // Another session of the same technician never reuses them.
  const std::string second = w().login(w().tech_email).value("token", "");
  OPEN(elsewhere, second, w().client_x);
  EXPECT_NE(elsewhere["workspace_id"], first["workspace_id"]);

  auto listed = w().op(w().tech, "workspaces.list", json::object());
  ASSERT_EQ(listed.status, 200) << listed.body;
  const json mine = body_of(listed)["workspaces"];
  ASSERT_EQ(mine.size(), 2u) << listed.body;
  auto theirs = w().op(second, "workspaces.list", json::object());
  ASSERT_EQ(body_of(theirs)["workspaces"].size(), 1u) << theirs.body;

  // A session cannot close another session's workspace; its own, yes.
  auto foreign = w().op(second, "workspaces.close", {{"workspace_id", first["workspace_id"]}});
  EXPECT_EQ(foreign.status, 404) << foreign.body;
  EXPECT_TRUE(w().requests("destroy_kasm").empty());
  auto closed = w().op(w().tech, "workspaces.close", {{"workspace_id", first["workspace_id"]}});
  ASSERT_EQ(closed.status, 200) << closed.body;
  EXPECT_EQ(body_of(closed), json({{"workspace_id", first["workspace_id"]}, {"closed", true}}));
  ASSERT_EQ(w().requests("destroy_kasm").size(), 1u);
  EXPECT_EQ(w().requests("destroy_kasm")[0]["json"]["kasm_id"], first["workspace_id"]);
  EXPECT_EQ(body_of(w().op(w().tech, "workspaces.list", json::object()))["workspaces"].size(), 1u);
  EXPECT_FALSE(w().audits("workspace.closed").empty());
}

TEST_F(Kasm, TheAclDeniesAClientBeforeThePluginRuns) {
  auto denied = w().op(w().tech_x, "workspaces.open", {{"client_id", w().client_y}});
  EXPECT_EQ(denied.status, 403) << denied.body;
  auto unreachable = w().op(w().tech, "workspaces.open", {{"client_id", w().client_z}});
  EXPECT_EQ(unreachable.status, 403) << unreachable.body;
  // A restricted technician must name the client; anyone gets 422 without one.
  auto unnamed = w().op(w().tech, "workspaces.open", json::object());
  EXPECT_EQ(unnamed.status, 403) << unnamed.body;
  auto missing = w().op(w().owner, "workspaces.open", json::object());
  EXPECT_EQ(missing.status, 422) << missing.body;
  EXPECT_TRUE(w().requests().empty()) << w().requests().dump();
  // A client the ACL reaches but the settings give no image: refused before the vault.
  auto owner_z = w().op(w().owner, "workspaces.open", {{"client_id", w().client_z}});
  EXPECT_EQ(owner_z.status, 404) << owner_z.body;
  EXPECT_TRUE(w().requests().empty());
}

TEST_F(Kasm, LogoutDestroysEveryWorkspaceOfTheSessionAndItIsMeasured) {
  const std::string token = w().login(w().tech_email).value("token", "");
  OPEN(a, token, w().client_x);
  OPEN(b, token, w().client_y);
  const double sent = now_s();
  ASSERT_EQ(w().call("POST", "/api/v1/auth/logout", token).status, 204);
  const double answered = now_s();
  ASSERT_TRUE(wait_destroyed({a["workspace_id"], b["workspace_id"]})) << why_;
  const double first = std::min(*destroyed_at(a["workspace_id"]), *destroyed_at(b["workspace_id"]));
  std::printf(
      "session.ended -> destroy_kasm: %.0f ms after the logout response (%.0f ms after "
      "the logout request)\n",
      (first - answered) * 1000.0, (first - sent) * 1000.0);
  for (const auto& r : w().requests("destroy_kasm")) {
    EXPECT_EQ(r["json"]["user_id"], kSharedUser);
    EXPECT_EQ(r["json"]["api_key_secret"], kKeySecret);
  }
  ASSERT_TRUE(eventually([] { return w().audits("workspace.destroyed").size() >= 2; }));
  std::set<std::string> audited;
  for (const auto& row : w().audits("workspace.destroyed")) {
    EXPECT_EQ(row.extra["reason"], "logout") << row.extra.dump();
    EXPECT_EQ(row.actor, "plugin:kasm");  // the session has ended: the plugin acted on its own
    EXPECT_EQ(row.org_id, w().org);
    audited.insert(row.extra.value("workspace_id", ""));
  }
  EXPECT_EQ(audited, (std::set<std::string>{a["workspace_id"], b["workspace_id"]}));
  // Delivered at least once: nothing is destroyed twice.
  EXPECT_EQ(w().requests("destroy_kasm").size(), 2u);
}

TEST_F(Kasm, DisablingTheTechniciansAccountDestroysItsWorkspaces) {
  auto created =
      w().call("POST", "/api/v1/orgs/" + w().org + "/technicians", w().owner,
               {{"email", "temp@a.test"}, {"password", kPassword}, {"role", "technician"}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = body_of(created)["id"];
  // The suite's policy, with the new technician added to client X's rule (other tests of this
  // suite rely on the rest of it).
  const json policy = {
      {"targets",
       {{"xy", {{"clients", {w().client_x, w().client_y}}}}, {"x", {{"clients", {w().client_x}}}}}},
      {"rules",
       {{{"technicians", {"tech@a.test"}}, {"targets", {"xy"}}},
        {{"technicians", {"tech-x@a.test", "temp@a.test"}}, {"targets", {"x"}}}}}};
  ASSERT_EQ(w().call("PUT", "/api/v1/orgs/" + w().org + "/acl-policy", w().owner, policy).status,
            200);
  const std::string token = w().login("temp@a.test").value("token", "");
  OPEN(ws, token, w().client_x);
  ASSERT_EQ(
      w().call("POST", "/api/v1/orgs/" + w().org + "/technicians/" + id + "/disable", w().owner)
          .status,
      204);
  ASSERT_TRUE(wait_destroyed({ws["workspace_id"]})) << why_;
  const auto audited = audit_of("workspace.destroyed", ws["workspace_id"]);
  ASSERT_TRUE(audited.has_value());
  EXPECT_EQ(audited->extra["reason"], "account_disabled");
  EXPECT_EQ(audited->extra["technician_id"], id);
}

TEST_F(Kasm, HubKilledWithWorkspacesOpenTheReconcilerDestroysThemAfterRestart) {
  OPEN(a, w().tech, w().client_x);
  OPEN(b, w().tech, w().client_y);
  // A Kasm session of another Kasm user (not Helm's): the reconciler must never touch it.
  const json foreign = w().kasm_direct("request_kasm", {{"image_id", kChrome}});
  ASSERT_TRUE(foreign.contains("kasm_id")) << foreign.dump();
  const std::size_t reaped_before = w().audits("workspace.reaped").size();
  const std::size_t listed_before = w().requests("get_kasms").size();
  ASSERT_EQ(w().hub->stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(w().restart()) << w().hub->log();
  // By design the plugin gets a credential only inside a live session, so after the restart it
  // holds none: nothing is reconciled (nor audited) until the organization's first call.
  EXPECT_EQ(w().requests("get_kasms").size(), listed_before);
  EXPECT_TRUE(w().requests("destroy_kasm").empty());
  EXPECT_EQ(w().audits("workspace.reaped").size(), reaped_before);
  // The organization's first call made inside a session reconciles it before its own work.
  auto listed = w().op(w().tech, "workspaces.list", json::object());
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(body_of(listed)["workspaces"], json::array());
  EXPECT_TRUE(destroyed_at(a["workspace_id"]).has_value());
  EXPECT_TRUE(destroyed_at(b["workspace_id"]).has_value());
  const json kasms = w().fake_state()["kasms"];
  EXPECT_EQ(kasms.size(), 1u) << kasms.dump();
  EXPECT_TRUE(kasms.contains(foreign["kasm_id"].get<std::string>())) << kasms.dump();
  ASSERT_EQ(w().requests("destroy_kasm").size(), 2u);
  // Each reap is in the hub's audit log: by the plugin itself, for this organization.
  ASSERT_TRUE(
      eventually([&] { return w().audits("workspace.reaped").size() >= reaped_before + 2; }));
  const auto reaped = w().audits("workspace.reaped");
  ASSERT_EQ(reaped.size(), reaped_before + 2);
  std::set<std::string> ids;
  for (std::size_t i = reaped_before; i < reaped.size(); ++i) {
    EXPECT_EQ(reaped[i].actor, "plugin:kasm");
    EXPECT_EQ(reaped[i].org_id, w().org);
    EXPECT_EQ(reaped[i].extra["reason"], "no live hub session");
    EXPECT_EQ(reaped[i].extra["kasm_user_id"], kSharedUser);
    ids.insert(reaped[i].extra.value("workspace_id", ""));
  }
  EXPECT_EQ(ids, (std::set<std::string>{a["workspace_id"], b["workspace_id"]}));
  OPEN(fresh, w().tech, w().client_x);
  EXPECT_NE(fresh["workspace_id"], a["workspace_id"]);
}

TEST_F(Kasm, ThePeriodicReconcilerReapsWithoutASession) {
  // A call inside a session gives the plugin the organization's credential (memory only).
  OPEN(live, w().tech, w().client_x);
  // An orphan of Helm's Kasm user, e.g. left by a session the plugin no longer knows.
  const json orphan =
      w().kasm_direct("request_kasm", {{"user_id", kSharedUser}, {"image_id", kUbuntu}});
  ASSERT_TRUE(orphan.contains("kasm_id")) << orphan.dump();
  const std::string orphan_id = orphan["kasm_id"];
  // Every second from now on: the timer, with no session, reaches the organization's Kasm.
  ASSERT_EQ(w().call("PATCH", "/api/v1/plugins/kasm", w().owner,
                     {{"config", {{"reconcile_interval_s", 1}}}})
                .status,
            200);
  const bool reaped = eventually([&] { return destroyed_at(orphan_id).has_value(); }, 20s);
  ASSERT_EQ(w().call("PATCH", "/api/v1/plugins/kasm", w().owner,
                     {{"config", {{"reconcile_interval_s", 60}}}})
                .status,
            200);
  ASSERT_TRUE(reaped) << w().hub->log().substr(0, 4000);
  EXPECT_FALSE(destroyed_at(live["workspace_id"]).has_value());  // a live session's: kept
  ASSERT_TRUE(eventually([&] {
    for (const auto& a : w().audits("workspace.reaped"))
      if (a.extra.value("workspace_id", "") == orphan_id) return true;
    return false;
  }));
  for (const auto& a : w().audits("workspace.reaped")) {
    if (a.extra.value("workspace_id", "") != orphan_id) continue;
    EXPECT_EQ(a.actor, "plugin:kasm");
    EXPECT_EQ(a.org_id, w().org);
  }
  auto closed = w().op(w().tech, "workspaces.close", {{"workspace_id", live["workspace_id"]}});
  EXPECT_EQ(closed.status, 200) << closed.body;
}

TEST_F(Kasm, BasicAuthAndAKasmUserPerSessionDeletedWithIt) {
  json settings = w().settings();
  settings["auth_style"] = "basic";
  settings["user_mode"] = "per_session";
  settings.erase("kasm_user_id");
  ASSERT_EQ(w().call("PUT", w().org_plugin() + "/config", w().owner, settings).status, 200);
  w().fake_call("POST", "/_fake/state", {{"auth_styles", {"basic"}}});
  const std::string token = w().login(w().tech_email).value("token", "");
  const json ws = open_ws(token, w().client_x);
  // Back to the suite's settings; the session keeps its user and the teardown its credential.
  ASSERT_EQ(w().call("PUT", w().org_plugin() + "/config", w().owner, w().settings()).status, 200);
  ASSERT_TRUE(ws.is_object());
  const json created = w().requests("create_user");
  ASSERT_EQ(created.size(), 1u);
  const std::string username = created[0]["json"]["target_user"]["username"];
  EXPECT_EQ(username.rfind("helm-", 0), 0u);
  EXPECT_EQ(username.size(), 13u);
  for (const auto& r : w().requests()) {
    EXPECT_FALSE(r["json"].contains("api_key_secret")) << r.dump();
    EXPECT_EQ(r["headers"].value("Authorization", "").rfind("Basic ", 0), 0u);
  }
  std::string user_id;
  const json state = w().fake_state();
  for (const auto& [id, u] : state["users"].items())
    if (u["username"] == username) user_id = id;
  EXPECT_EQ(w().requests("request_kasm")[0]["json"]["user_id"], user_id);
  ASSERT_EQ(w().call("POST", "/api/v1/auth/logout", token).status, 204);
  ASSERT_TRUE(wait_destroyed({ws["workspace_id"]})) << why_;
  ASSERT_TRUE(eventually([&] { return !w().fake_state()["users"].contains(user_id); }));
  const json deleted = w().requests("delete_user");
  ASSERT_EQ(deleted.size(), 1u) << deleted.dump();
  EXPECT_EQ(deleted[0]["json"]["target_user"]["user_id"], user_id);
  EXPECT_EQ(deleted[0]["headers"].value("Authorization", "").rfind("Basic ", 0), 0u);
  EXPECT_FALSE(deleted[0]["json"].contains("api_key_secret"));
  ASSERT_TRUE(eventually([&] {
    for (const auto& a : w().audits("user.deleted"))
      if (a.extra.value("kasm_user_id", "") == user_id) return true;
    return false;
  }));
}

TEST_F(Kasm, KasmFailuresAreUpstreamErrorsWithoutTheSecret) {
  w().fake_call("POST", "/_fake/state", {{"no_resources", true}});
  auto busy = w().op(w().tech, "workspaces.open", {{"client_id", w().client_x}});
  EXPECT_EQ(busy.status, 502) << busy.body;
  EXPECT_EQ(body_of(busy).value("type", ""), "urn:helm:problem:upstream-error");
  EXPECT_NE(busy.body.find("No resources are available"), std::string::npos) << busy.body;
  expect_no_secret_in(busy);

  w().fake_call(
      "POST", "/_fake/state",
      {{"no_resources", false}, {"keys", {{kKeyId, {{"secret", "another"}, {"expired", false}}}}}});
  auto refused = w().op(w().tech, "workspaces.open", {{"client_id", w().client_x}});
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_EQ(body_of(refused).value("type", ""), "urn:helm:problem:upstream-unauthorized");
  EXPECT_NE(refused.body.find("Access Denied"), std::string::npos) << refused.body;
  expect_no_secret_in(refused);

  w().fake_call("POST", "/_fake/reset");
  w().fake_call("POST", "/_fake/inject",
                {{"method", "request_kasm"}, {"status", 500}, {"html", true}});
  auto html = w().op(w().tech, "workspaces.open", {{"client_id", w().client_x}});
  EXPECT_EQ(html.status, 502) << html.body;
  EXPECT_EQ(body_of(html).value("type", ""), "urn:helm:problem:upstream-unavailable");
}

TEST_F(Kasm, TechnicianFlowWithHelmctlOpenListClose) {
  TempDir home("helm-kasm-helmctl-home");
  auto ctl = [&](std::vector<std::string> args, const std::string& input = "") {
    std::vector<std::string> full{"--server", w().hub->base_url(), "--ca-file", w().hub->ca_file()};
    full.insert(full.end(), args.begin(), args.end());
    return helmctl(full, home.path(), input);
  };
  CtlResult r =
      ctl({"login", "--email", w().tech_email, "--password-stdin"}, std::string(kPassword) + "\n");
  ASSERT_EQ(r.code, 0) << describe(r);

  // open: a table with the workspace, its client, status, URL and expiry.
  r = ctl({"workspaces", "open", w().client_x});
  ASSERT_EQ(r.code, 0) << describe(r);
  auto rows = table_of(r.out);
  ASSERT_EQ(rows.size(), 2u) << describe(r);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"WORKSPACE", "CLIENT", "STATUS", "URL", "EXPIRES"}));
  ASSERT_EQ(rows[1].size(), 5u) << describe(r);
  const std::string id = rows[1][0];
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(rows[1][1], w().client_x);
  EXPECT_EQ(rows[1][2], "running");
  EXPECT_EQ(rows[1][3].rfind(w().base_url + "/#/connect/kasm/" + id + "/", 0), 0u) << r.out;
  EXPECT_EQ(rows[1][4].back(), 'Z');
  ASSERT_EQ(w().requests("request_kasm").size(), 1u);
  EXPECT_EQ(w().requests("request_kasm")[0]["json"]["image_id"], kChrome);

  // -o json: the operation's JSON; the same session and client is the same workspace.
  r = ctl({"-o", "json", "workspaces", "open", w().client_x, "--plugin", "kasm"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json again = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(again.is_object()) << describe(r);
  EXPECT_EQ(again["workspace_id"], id);
  EXPECT_EQ(again["client_id"], w().client_x);
  EXPECT_EQ(w().requests("request_kasm").size(), 1u);

  r = ctl({"workspaces", "open", w().client_y});
  ASSERT_EQ(r.code, 0) << describe(r);
  rows = table_of(r.out);
  ASSERT_EQ(rows.size(), 2u) << describe(r);
  const std::string other = rows[1][0];
  EXPECT_NE(other, id);

  // list: this login session's workspaces, as a table and as JSON.
  r = ctl({"workspaces", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  rows = table_of(r.out);
  ASSERT_EQ(rows.size(), 3u) << describe(r);
  std::set<std::string> listed;
  for (std::size_t i = 1; i < rows.size(); ++i)
    listed.insert(rows[i][0] + " " + rows[i][1]);
  EXPECT_EQ(listed, (std::set<std::string>{id + " " + w().client_x, other + " " + w().client_y}));
  r = ctl({"-o", "json", "workspaces", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(json::parse(r.out, nullptr, false)["workspaces"].size(), 2u) << describe(r);

  // The ACL still decides: a client the technician may not reach is refused (exit 1, 403).
  r = ctl({"workspaces", "open", w().client_z});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("403"), std::string::npos) << describe(r);
  // Usage errors and another plugin name.
  EXPECT_EQ(ctl({"workspaces", "close"}).code, 2);
  r = ctl({"workspaces", "list", "--plugin", "no-such-plugin"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);

  // close: destroyed at Kasm, gone from the list.
  r = ctl({"workspaces", "close", id});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("Workspace " + id + " closed"), std::string::npos) << describe(r);
  EXPECT_TRUE(destroyed_at(id).has_value());
  EXPECT_FALSE(destroyed_at(other).has_value());
  r = ctl({"-o", "json", "workspaces", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json left = json::parse(r.out, nullptr, false)["workspaces"];
  ASSERT_EQ(left.size(), 1u) << describe(r);
  EXPECT_EQ(left[0]["workspace_id"], other);

  // helmctl logout ends the session: its last workspace goes with it.
  r = ctl({"logout"});
  ASSERT_EQ(r.code, 0) << describe(r);
  ASSERT_TRUE(wait_destroyed({other})) << why_;
}

// A hub whose sessions expire after 3 idle seconds.
class KasmIdle : public KasmBase {
 protected:
  static void SetUpTestSuite() { build({{"HELM_IDENTITY_SESSION_IDLE_TIMEOUT_S", "3"}}); }
};

TEST_F(KasmIdle, AnIdleSessionsWorkspacesAreDestroyed) {
  const std::string token = w().login(w().tech_email).value("token", "");
  const double asked = now_s();  // the session was last used when this call arrived
  OPEN(ws, token, w().client_x);
  const double answered = now_s();
  ASSERT_TRUE(wait_destroyed({ws["workspace_id"]}, 30s)) << why_;
  const double gone = *destroyed_at(ws["workspace_id"]);
  EXPECT_GE(gone - asked, 2.9);  // not before the idle timeout
  std::printf(
      "idle timeout (3 s) -> destroy_kasm: %.0f ms after the last call was sent (%.0f ms after "
      "its answer)\n",
      (gone - asked) * 1000.0, (gone - answered) * 1000.0);
  const auto audited = audit_of("workspace.destroyed", ws["workspace_id"]);
  ASSERT_TRUE(audited.has_value());
  EXPECT_EQ(audited->extra["reason"], "idle_timeout");
}

}  // namespace
}  // namespace helm::test
