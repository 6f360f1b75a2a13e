// Session lifecycle events as a plugin sees them, against the real hub and the real
// test-misbehaving plugin (subscribed to session.*): session.started at login, session.ended
// with its reason for logout, revocation, a disabled account and an idle timeout; sessions that
// ran out while the hub was down are announced when it starts again. Also session_info's
// session_id and the ABI 1.2 audit function.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "helm/storage/embedded_postgres.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPassword = "owner password 123";

class SessionLifecycle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir("helm-session-events");
    plugins_ = new TempDir("helm-session-events-plugins");
    fs::copy(std::string(HELM_TEST_PLUGINS_DIR) + "/test-misbehaving",
             plugins_->path() + "/test-misbehaving", fs::copy_options::recursive);
    write_file(plugins_->file("trusted-keys"), read_file(HELM_TEST_TRUSTED_PUB) + "\n");
    std::string out;
    ASSERT_EQ(bootstrap_hub(data_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    start_hub();
    owner_ = login("owner@a.test")["token"];
    org_ = body_of(call("GET", "/api/v1/me", owner_))["org_id"];
    ASSERT_EQ(call("PATCH", "/api/v1/orgs/" + org_ + "/plugins/test-misbehaving", owner_,
                   {{"enabled", true}})
                  .status,
              200);
  }

  static void start_hub() {
    HubOptions o{.data_dir = data_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = plugins_->path();
    o.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = plugins_->file("trusted-keys");
    o.env["HELM_IDENTITY_SESSION_IDLE_TIMEOUT_S"] = "3";
    hub_ = new HubProcess(o);
    ASSERT_TRUE(hub_->ready()) << hub_->log();
  }

  static void TearDownTestSuite() {
    delete hub_;
    delete plugins_;
    delete data_;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    o.timeout_ms = 30'000;
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

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  static std::string op(const std::string& name) {
    return "/api/v1/orgs/" + org_ + "/plugins/test-misbehaving/ops/" + name;
  }

  /// A new technician of the organization and a logged-in session of it: {id, token}.
  static std::pair<std::string, std::string> technician(const std::string& email) {
    auto made = call("POST", "/api/v1/orgs/" + org_ + "/technicians", owner_,
                     {{"email", email}, {"password", kPassword}, {"role", "technician"}});
    EXPECT_EQ(made.status, 201) << made.body;
    return {body_of(made)["id"], login(email)["token"]};
  }

  static std::string session_id_of(const std::string& token) {
    auto info = call("POST", op("host.session"), token, json::object());
    EXPECT_EQ(info.status, 200) << info.body;
    return body_of(info).value("session_id", "");
  }

  /// Polls the plugin (through the owner's session, which stays alive) until it has seen
  /// `topic` for `session_id`; returns that event's payload (null after `limit`).
  static json wait_for_event(const std::string& topic, const std::string& session_id,
                             std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto seen = call("POST", op("events.seen"), owner_, json::object());
      const json body = body_of(seen);
      if (seen.status == 200 && body.contains("events")) {
        for (const auto& event : body["events"]) {
          if (event["topic"] == topic && event["payload"].value("session_id", "") == session_id) {
            EXPECT_EQ(event["source"], "hub");
            EXPECT_EQ(event["organization_id"], org_);
            return event["payload"];
          }
        }
      }
      std::this_thread::sleep_for(50ms);
    }
    return nullptr;
  }

  static inline TempDir* data_ = nullptr;
  static inline TempDir* plugins_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string owner_, org_;
};

TEST_F(SessionLifecycle, LoginAndLogoutAreStartedAndEndedWithTheReason) {
  auto [tech_id, token] = technician("logout@a.test");
  const std::string session = session_id_of(token);
  ASSERT_EQ(session.size(), 36U) << "session_info carries the session id";
  const json started = wait_for_event("session.started", session);
  ASSERT_FALSE(started.is_null());
  EXPECT_EQ(started["technician_id"], tech_id);
  EXPECT_EQ(started["organization_id"], org_);
  EXPECT_FALSE(started.contains("reason"));

  const auto before = std::chrono::steady_clock::now();
  ASSERT_EQ(call("POST", "/api/v1/auth/logout", token).status, 204);
  const json ended = wait_for_event("session.ended", session);
  const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - before);
  ASSERT_FALSE(ended.is_null());
  EXPECT_EQ(ended["reason"], "logout");
  EXPECT_GT(ended["event_seq"].get<std::int64_t>(), started["event_seq"].get<std::int64_t>());
  std::cout << "logout -> session.ended seen by the plugin: " << latency.count() << " ms\n";
}

TEST_F(SessionLifecycle, RevocationADisabledAccountAndIdleTimeoutEachEndWithTheirReason) {
  auto [revoked_id, revoked_token] = technician("revoked@a.test");
  const std::string revoked_session = session_id_of(revoked_token);
  ASSERT_EQ(
      call("DELETE", "/api/v1/orgs/" + org_ + "/technicians/" + revoked_id + "/sessions", owner_)
              .status /
          100,
      2);
  const json revoked = wait_for_event("session.ended", revoked_session);
  ASSERT_FALSE(revoked.is_null());
  EXPECT_EQ(revoked["reason"], "revoked");

  auto [disabled_id, disabled_token] = technician("disabled@a.test");
  const std::string disabled_session = session_id_of(disabled_token);
  ASSERT_EQ(
      call("POST", "/api/v1/orgs/" + org_ + "/technicians/" + disabled_id + "/disable", owner_)
              .status /
          100,
      2);
  const json disabled = wait_for_event("session.ended", disabled_session);
  ASSERT_FALSE(disabled.is_null());
  EXPECT_EQ(disabled["reason"], "account_disabled");

  // Idle (3 s here): ended by the hub's sweep without the token ever being presented again.
  auto [idle_id, idle_token] = technician("idle@a.test");
  const std::string idle_session = session_id_of(idle_token);
  const json idle = wait_for_event("session.ended", idle_session, 15s);
  ASSERT_FALSE(idle.is_null());
  EXPECT_EQ(idle["reason"], "idle_timeout");
  EXPECT_EQ(call("GET", "/api/v1/me", idle_token).status, 401);
}

// Subscribers act on session.ended (KASM destroys the session's workspaces), so only the hub may
// announce one: a plugin cannot publish session.* even to forge the end of a live session (every
// session event a subscriber sees comes from "hub"), while its own declared topic still goes
// through, with the plugin as its source.
TEST_F(SessionLifecycle, NoPluginCanAnnounceASession) {
  auto [tech_id, token] = technician("forged@a.test");
  const std::string session = session_id_of(token);
  ASSERT_FALSE(wait_for_event("session.started", session).is_null());
  for (const std::string topic : {"session.ended", "session.started", "session.anything"}) {
    auto forged =
        call("POST", op("host.publish"), owner_,
             {{"topic", topic}, {"payload", {{"session_id", session}, {"organization_id", org_}}}});
    EXPECT_EQ(forged.status, 403) << topic << ": " << forged.body;
    EXPECT_NE(forged.body.find("reserved for the hub"), std::string::npos) << forged.body;
  }
  auto own = call("POST", op("host.publish"), owner_,
                  {{"topic", "test.done"}, {"payload", {{"session_id", session}}}});
  EXPECT_EQ(own.status, 200) << own.body;
  bool saw_own = false;
  for (int i = 0; i < 100 && !saw_own; ++i) {
    const json seen = body_of(call("POST", op("events.seen"), owner_, json::object()));
    for (const auto& event : seen.value("events", json::array())) {
      if (!event["payload"].is_object()) continue;
      if (event["topic"] == "test.done" && event["payload"].value("session_id", "") == session) {
        saw_own = true;
        EXPECT_EQ(event["source"], "test-misbehaving");
      }
      if (event["topic"].get<std::string>().rfind("session.", 0) == 0) {
        EXPECT_EQ(event["source"], "hub") << "a forged session event: " << event.dump();
      }
    }
    if (!saw_own) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(saw_own) << call("POST", op("events.seen"), owner_, json::object()).body;
}

TEST_F(SessionLifecycle, PluginAuditRecordsLandInTheAuditLog) {
  auto audited = call("POST", op("host.audit"), owner_,
                      {{"action", "workspace.reaped"}, {"detail", {{"kasm_id", "abc"}}}});
  ASSERT_EQ(audited.status, 200) << audited.body;
  auto refused = call("POST", op("host.audit"), owner_, {{"action", "Bad Action!"}});
  EXPECT_EQ(refused.status, 422) << refused.body;
  pqxx::connection conn(storage::EmbeddedPostgres::connection_string_for(data_->path()));
  std::string found;
  for (int i = 0; i < 100 && found.empty(); ++i) {
    pqxx::work tx(conn);
    auto rows = tx.exec(
        "SELECT plugin || ' ' || org_id::text || ' ' || extra FROM audit_log WHERE action = "
        "'plugin.test-misbehaving.workspace.reaped'");
    if (!rows.empty()) found = rows[0][0].c_str();
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(found.find("test-misbehaving " + org_), std::string::npos) << found;
  EXPECT_NE(found.find("abc"), std::string::npos) << found;
}

// Last: it restarts the hub. A session that runs out while the hub is down is announced as
// ended (idle_timeout) by the first sweep of the next start.
TEST_F(SessionLifecycle, ASessionThatExpiredWhileTheHubWasDownIsAnnouncedAtStart) {
  auto [tech_id, token] = technician("down@a.test");
  const std::string session = session_id_of(token);
  ASSERT_FALSE(wait_for_event("session.started", session).is_null());
  ASSERT_EQ(hub_->stop(9), 128 + 9);
  delete hub_;
  hub_ = nullptr;
  std::this_thread::sleep_for(4s);  // longer than the idle timeout, with no hub running
  start_hub();
  owner_ = login("owner@a.test")["token"];
  const json ended = wait_for_event("session.ended", session);
  ASSERT_FALSE(ended.is_null()) << hub_->log();
  EXPECT_EQ(ended["reason"], "idle_timeout");
}

}  // namespace
}  // namespace helm::test
