// The vault in the hub: the real hub and PostgreSQL for the REST routes and the CLI, and the
// release path exercised in-process against the hub's own database (as the plugin broker will).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "helm/auth/auth_service.hpp"
#include "helm/secrets/master_keyring.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/vault/master_key.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kPassword = "owner password 123";
const std::vector<std::string> kHaloGlobs = {"halopsa/**"};

// Runs a helm-hub subcommand; returns the exit code, with stdout and stderr in `output`.
int hub_command(const std::string& args, std::string* output) {
  TempDir out("helm-cmd");
  const int status = ::system((hub_binary() + " " + args + " >" + out.file("o") + " 2>&1").c_str());
  if (output != nullptr) *output = read_file(out.file("o"));
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string random_hex_key() {
  std::string hex;
  for (int i = 0; i < 64; ++i)
    hex.push_back("0123456789abcdef"[std::rand() % 16]);
  return hex;
}

// A hub with its own data dir, owner session and an in-process vault on the same database.
class VaultHub {
 public:
  explicit VaultHub(const std::string& prefix, std::map<std::string, std::string> env = {})
      : dir_(prefix) {
    std::string out;
    EXPECT_EQ(bootstrap_hub(dir_.path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    for (const auto& kv : kFastPasswordEnv)
      env.insert(kv);
    env_ = env;
    start();
    auto login = must_login("owner@a.test");
    owner_ = login["token"];
    org_ = login["technician"]["org_id"];
    pool_ = std::make_unique<storage::DbPool>(storage::DbPoolOptions{
        .conninfo = storage::EmbeddedPostgres::connection_string_for(dir_.path()), .size = 2});
    auth_ = std::make_unique<auth::AuthService>(*pool_, auth::AuthOptions{});
  }
  ~VaultHub() {
    service_.reset();
    if (pool_) pool_->stop();
    if (hub_) hub_->stop();
  }

  void start() {
    hub_ = std::make_unique<HubProcess>(HubOptions{.data_dir = dir_.path(), .env = env_});
    ASSERT_TRUE(hub_->ready()) << hub_->log();
  }

  // The in-process vault, reading the hub's (development) key file like the hub does.
  secrets::SecretService& service(bool cache = true) {
    if (!service_) {
      auto ring = secrets::MasterKeyring::load({.file = dir_.path() + "/master.key"}, false);
      EXPECT_TRUE(ring.ok()) << ring.error().message;
      service_ = std::make_unique<secrets::SecretService>(
          *pool_, *auth_, ring.value(), secrets::SecretServiceOptions{.cache_data_keys = cache});
    }
    return *service_;
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& token,
                    const json& body = nullptr) const {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(hub_->base_url() + path, o);
  }

  json must_login(const std::string& email) const {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  HttpResponse put_secret(const std::string& name, const std::string& value,
                          const std::string& org = "", const std::string& token = "") const {
    return call("PUT", "/api/v1/orgs/" + (org.empty() ? org_ : org) + "/secrets/" + name,
                token.empty() ? owner_ : token, {{"value", value}});
  }

  auth::SessionContext session(const std::string& token) {
    std::promise<auth::AuthResult> p;
    auth_->authenticate(token, [&](auth::AuthResult r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(std::holds_alternative<auth::SessionContext>(r));
    return std::holds_alternative<auth::SessionContext>(r) ? std::get<auth::SessionContext>(r)
                                                           : auth::SessionContext{};
  }

  secrets::ReleaseResult release(const auth::SessionContext& ctx, const std::string& plugin,
                                 const std::string& org, const std::string& name,
                                 const std::vector<std::string>& globs = kHaloGlobs) {
    std::promise<secrets::ReleaseResult> p;
    service().release(ctx, plugin, globs, org, name,
                      [&](secrets::ReleaseResult r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  void sql(const std::string& statement) const {
    pqxx::connection c(storage::EmbeddedPostgres::connection_string_for(dir_.path()));
    pqxx::work tx(c);
    tx.exec(statement);
    tx.commit();
  }
  pqxx::result query(const std::string& statement) const {
    pqxx::connection c(storage::EmbeddedPostgres::connection_string_for(dir_.path()));
    pqxx::work tx(c);
    auto r = tx.exec(statement);
    tx.commit();
    return r;
  }
  void grant(const std::string& plugin, const std::string& name, const std::string& org = "") {
    sql("INSERT INTO plugin_secret_grants (org_id, plugin, secret_name) VALUES ('" +
        (org.empty() ? org_ : org) + "', '" + plugin + "', '" + name + "') ON CONFLICT DO NOTHING");
  }
  // action, outcome, reason of the newest audit record.
  std::tuple<std::string, std::string, std::string> last_audit() const {
    auto r = query("SELECT action, outcome, reason FROM audit_log ORDER BY seq DESC LIMIT 1");
    if (r.empty()) return {};
    return {r[0][0].c_str(), r[0][1].c_str(), r[0][2].c_str()};
  }

  TempDir dir_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<HubProcess> hub_;
  std::string owner_, org_;
  std::unique_ptr<storage::DbPool> pool_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<secrets::SecretService> service_;
};

class Vault : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hub_ = new VaultHub("helm-vault");
    auto created = hub_->call(
        "POST", "/api/v1/orgs", hub_->owner_,
        {{"name", "Beta MSP"}, {"owner_email", "owner@b.test"}, {"owner_password", kPassword}});
    ASSERT_EQ(created.status, 201) << created.body;
    org_b_ = json::parse(created.body)["id"];
    owner_b_ = hub_->must_login("owner@b.test")["token"];
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }

  // A technician of organization A, logged in.
  static std::pair<std::string, std::string> technician(const std::string& email) {
    auto r = hub_->call("POST", "/api/v1/orgs/" + hub_->org_ + "/technicians", hub_->owner_,
                        {{"email", email}, {"password", kPassword}, {"role", "technician"}});
    EXPECT_EQ(r.status, 201) << r.body;
    return {json::parse(r.body)["id"], hub_->must_login(email)["token"]};
  }

  static inline VaultHub* hub_ = nullptr;
  static inline std::string org_b_, owner_b_;
};

TEST_F(Vault, StoresOnlyCiphertextAndReleasesTheValueToAGrantedPlugin) {
  const std::string value = "s3cr3t-Value-For-Halo-0001";
  ASSERT_EQ(hub_->put_secret("halopsa/client_secret", value).status, 204);
  auto rows = hub_->query(
      "SELECT ciphertext, nonce FROM vault_secrets WHERE name = 'halopsa/client_secret'");
  ASSERT_EQ(rows.size(), 1u);
  const pqxx::binarystring stored(rows[0][0]);
  EXPECT_EQ(stored.str().find(value), std::string::npos);
  EXPECT_EQ(stored.size(), value.size() + 16);
  auto keys =
      hub_->query("SELECT ciphertext FROM vault_data_keys WHERE org_id = '" + hub_->org_ + "'");
  ASSERT_EQ(keys.size(), 1u) << "one data key per organization, created on first use";

  hub_->grant("halopsa", "halopsa/client_secret");
  auto ctx = hub_->session(hub_->owner_);
  auto released = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/client_secret");
  ASSERT_TRUE(released.ok()) << released.refusal().message;
  EXPECT_EQ(released.lease().value(), value);
  EXPECT_EQ(released.lease().version(), 1);
  EXPECT_EQ(hub_->last_audit(), std::make_tuple(std::string("secret.release"),
                                                std::string("allowed"), std::string("")));
}

TEST_F(Vault, SecretRoutesStoreVersionsListWithoutValuesAndDelete) {
  const std::string org = hub_->org_;
  // %2F is accepted in place of '/'.
  ASSERT_EQ(hub_->put_secret("cipp%2Frefresh-token", "first value").status, 204);
  for (int i = 2; i <= 7; ++i) {
    ASSERT_EQ(hub_->put_secret("cipp/refresh-token", "value number " + std::to_string(i)).status,
              204);
  }
  auto list = hub_->call("GET", "/api/v1/orgs/" + org + "/secrets", hub_->owner_);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.body.find("value number"), std::string::npos);
  const auto body = json::parse(list.body);
  EXPECT_TRUE(body["next_cursor"].is_null());
  json item;
  for (const auto& i : body["items"])
    if (i["name"] == "cipp/refresh-token") item = i;
  ASSERT_FALSE(item.is_null()) << list.body;
  EXPECT_EQ(item["version"], 7);
  ASSERT_EQ(item["versions"].size(), 5u) << "vault.keep_versions defaults to 5";
  EXPECT_EQ(item["versions"][0]["version"], 3);
  EXPECT_TRUE(item.contains("updated_at"));

  auto paged =
      json::parse(hub_->call("GET", "/api/v1/orgs/" + org + "/secrets?limit=1", hub_->owner_).body);
  if (body["items"].size() > 1) {
    ASSERT_EQ(paged["items"].size(), 1u);
    auto next = hub_->call("GET",
                           "/api/v1/orgs/" + org +
                               "/secrets?limit=1&cursor=" + paged["next_cursor"].get<std::string>(),
                           hub_->owner_);
    ASSERT_EQ(next.status, 200);
    EXPECT_NE(json::parse(next.body)["items"][0]["name"], paged["items"][0]["name"]);
  }

  EXPECT_EQ(
      hub_->call("DELETE", "/api/v1/orgs/" + org + "/secrets/cipp/refresh-token", hub_->owner_)
          .status,
      204);
  EXPECT_EQ(
      hub_->call("DELETE", "/api/v1/orgs/" + org + "/secrets/cipp%2Frefresh-token", hub_->owner_)
          .status,
      404);
  EXPECT_TRUE(hub_->query("SELECT 1 FROM vault_secrets WHERE name = 'cipp/refresh-token'").empty());
  EXPECT_EQ(hub_->last_audit(),
            std::make_tuple(std::string("secret.delete"), std::string("allowed"), std::string("")));
}

TEST_F(Vault, SecretRoutesValidateNamesAndValuesAndNeedAnAdmin) {
  for (const std::string bad : {"..%2Fetc", "Upper/Case", "a//b%2F", "trailing%2F", "a%2F..%2Fb"}) {
    auto r = hub_->put_secret(bad, "x");
    ASSERT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_NE(r.body.find("\"name\""), std::string::npos) << r.body;
  }
  EXPECT_EQ(hub_->call("PUT", "/api/v1/orgs/" + hub_->org_ + "/secrets/ok-name", hub_->owner_,
                       {{"value", 42}})
                .status,
            400);
  EXPECT_EQ(hub_->put_secret("ok-name", "").status, 400);
  EXPECT_EQ(hub_->put_secret("ok-name", std::string(64 * 1024 + 1, 'x')).status, 400);
  EXPECT_EQ(hub_->put_secret("ok-name", std::string(64 * 1024, 'x')).status, 204);
  const auto [id, tech] = technician("tech-routes@a.test");
  EXPECT_EQ(hub_->put_secret("ok-name", "x", "", tech).status, 403);
  EXPECT_EQ(hub_->call("GET", "/api/v1/orgs/" + hub_->org_ + "/secrets", tech).status, 403);
  EXPECT_EQ(hub_->put_secret("ok-name", "x", hub_->org_, owner_b_).status, 404);
}

TEST_F(Vault, ReleaseRefusalsEachCarryTheirOwnAuditReason) {
  ASSERT_EQ(hub_->put_secret("halopsa/api-key", "refusal-test-value").status, 204);
  hub_->grant("halopsa", "halopsa/api-key");
  const auto owner = hub_->session(hub_->owner_);
  auto expect_refused = [&](const auth::SessionContext& ctx, const std::string& plugin,
                            const std::string& org, const std::string& name,
                            secrets::RefusalReason reason,
                            const std::vector<std::string>& globs = kHaloGlobs) {
    auto r = hub_->release(ctx, plugin, org, name, globs);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.refusal().reason, reason) << r.refusal().message;
    EXPECT_EQ(r.refusal().message.find("refusal-test-value"), std::string::npos);
    const auto [action, outcome, why] = hub_->last_audit();
    EXPECT_EQ(action, "secret.release");
    EXPECT_EQ(why, secrets::to_string(reason));
    EXPECT_EQ(outcome, "denied");
  };
  // Undeclared: the manifest declares only cipp/*.
  expect_refused(owner, "halopsa", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kNotDeclared, {"cipp/*"});
  // Declared but not granted to this plugin.
  expect_refused(owner, "other-plugin", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kNotGranted);
  // Granted but absent.
  hub_->grant("halopsa", "halopsa/missing");
  expect_refused(owner, "halopsa", hub_->org_, "halopsa/missing",
                 secrets::RefusalReason::kNoSuchSecret);
  // Another organization's session.
  expect_refused(hub_->session(owner_b_), "halopsa", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kWrongOrganization);
  // Expired.
  auto expired = owner;
  expired.expires_at = std::chrono::system_clock::now() - 1s;
  expect_refused(expired, "halopsa", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kSessionInvalid);
  // Logged out.
  const std::string token = hub_->must_login("owner@a.test")["token"];
  const auto gone = hub_->session(token);
  ASSERT_TRUE(hub_->release(gone, "halopsa", hub_->org_, "halopsa/api-key").ok());
  ASSERT_EQ(hub_->call("POST", "/api/v1/auth/logout", token).status, 204);
  std::this_thread::sleep_for(1100ms);  // the session check's cache lives one second
  expect_refused(gone, "halopsa", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kSessionInvalid);
  // Disabled account.
  const auto [id, tech_token] = technician("leaver@a.test");
  const auto tech = hub_->session(tech_token);
  ASSERT_TRUE(hub_->release(tech, "halopsa", hub_->org_, "halopsa/api-key").ok());
  ASSERT_EQ(hub_->call("POST", "/api/v1/orgs/" + hub_->org_ + "/technicians/" + id + "/disable",
                       hub_->owner_)
                .status,
            204);
  std::this_thread::sleep_for(1100ms);
  expect_refused(tech, "halopsa", hub_->org_, "halopsa/api-key",
                 secrets::RefusalReason::kSessionInvalid);
  // Malformed input is refused before anything else.
  auto r = hub_->release(owner, "halopsa", hub_->org_, "halopsa/../x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.refusal().reason, secrets::RefusalReason::kInvalidRequest);
}

TEST_F(Vault, AlteredCiphertextNonceOrWrappedKeyFailsToDecryptAndIsAudited) {
  ASSERT_EQ(hub_->put_secret("halopsa/tamper", "tamper-test-value").status, 204);
  hub_->grant("halopsa", "halopsa/tamper");
  const auto ctx = hub_->session(hub_->owner_);
  ASSERT_TRUE(hub_->release(ctx, "halopsa", hub_->org_, "halopsa/tamper").ok());
  const std::string secret_row = "org_id = '" + hub_->org_ + "' AND name = 'halopsa/tamper'";
  const std::string key_row = "org_id = '" + hub_->org_ + "'";
  const std::vector<std::pair<std::string, std::string>> flips = {
      {"vault_secrets", "ciphertext"},
      {"vault_secrets", "nonce"},
      {"vault_data_keys", "ciphertext"},
      {"vault_data_keys", "nonce"},
  };
  for (const auto& [table, column] : flips) {
    const std::string where = table == "vault_secrets" ? secret_row : key_row;
    const std::string flip = "UPDATE " + table + " SET " + column + " = set_byte(" + column +
                             ", 3, get_byte(" + column + ", 3) # 1) WHERE " + where;
    hub_->sql(flip);
    auto r = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/tamper");
    EXPECT_FALSE(r.ok()) << table << "." << column;
    if (!r.ok()) {
      EXPECT_EQ(r.refusal().reason, secrets::RefusalReason::kDecryptFailed);
    }
    EXPECT_EQ(hub_->last_audit(),
              std::make_tuple(std::string("secret.release"), std::string("failed"),
                              std::string("decrypt_failed")))
        << table << "." << column;
    hub_->sql(flip);  // flip back: the same row opens again
    auto again = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/tamper");
    ASSERT_TRUE(again.ok()) << table << "." << column;
    EXPECT_EQ(again.lease().value(), "tamper-test-value");
  }
}

TEST_F(Vault, ACiphertextMovedToAnotherNameVersionOrOrganizationDoesNotOpen) {
  ASSERT_EQ(hub_->put_secret("halopsa/move-a", "moved-value-a").status, 204);
  ASSERT_EQ(hub_->put_secret("halopsa/move-b", "moved-value-b").status, 204);
  ASSERT_EQ(hub_->put_secret("halopsa/move-b", "moved-value-b2").status, 204);
  ASSERT_EQ(hub_->put_secret("halopsa/move-b", "moved-value-b", org_b_, owner_b_).status, 204);
  for (const auto& org : {hub_->org_, org_b_}) {
    hub_->grant("halopsa", "halopsa/move-a", org);
    hub_->grant("halopsa", "halopsa/move-b", org);
  }
  const auto ctx = hub_->session(hub_->owner_);
  const auto ctx_b = hub_->session(owner_b_);
  auto copy_from_a = [&](const std::string& target_where) {
    hub_->sql(
        "UPDATE vault_secrets t SET nonce = s.nonce, ciphertext = s.ciphertext FROM vault_secrets s"
        " WHERE s.org_id = '" +
        hub_->org_ + "' AND s.name = 'halopsa/move-a' AND " + target_where);
  };
  // Another name.
  copy_from_a("t.org_id = '" + hub_->org_ + "' AND t.name = 'halopsa/move-b' AND t.version = 2");
  auto r = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/move-b");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.refusal().reason, secrets::RefusalReason::kDecryptFailed);
  // Another version: version 1 of move-b relabelled as version 2.
  hub_->sql("DELETE FROM vault_secrets WHERE org_id = '" + hub_->org_ +
            "' AND name = 'halopsa/move-b' AND version = 2");
  hub_->sql("UPDATE vault_secrets SET version = 2 WHERE org_id = '" + hub_->org_ +
            "' AND name = 'halopsa/move-b'");
  r = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/move-b");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.refusal().reason, secrets::RefusalReason::kDecryptFailed);
  // Another organization (same name, data-key version and secret version).
  hub_->sql(
      "UPDATE vault_secrets t SET nonce = s.nonce, ciphertext = s.ciphertext FROM vault_secrets s"
      " WHERE s.org_id = '" +
      hub_->org_ + "' AND s.name = 'halopsa/move-a' AND t.org_id = '" + org_b_ +
      "' AND t.name = 'halopsa/move-b'");
  hub_->sql("UPDATE vault_secrets SET name = 'halopsa/move-a' WHERE org_id = '" + org_b_ +
            "' AND name = 'halopsa/move-b'");
  r = hub_->release(ctx_b, "halopsa", org_b_, "halopsa/move-a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.refusal().reason, secrets::RefusalReason::kDecryptFailed);
  // The original still opens where it belongs.
  auto ok = hub_->release(ctx, "halopsa", hub_->org_, "halopsa/move-a");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.lease().value(), "moved-value-a");
}

TEST_F(Vault, APlaintextIsFoundInNoLogDumpOrMetric) {
  const std::string marker = "PLAINTEXT-MARKER-7f3a9c2e51";
  const std::string org = hub_->org_;
  ASSERT_EQ(hub_->put_secret("halopsa/marker", marker).status, 204);
  ASSERT_EQ(hub_->put_secret("halopsa%2Fmarker", marker + "-v2").status, 204);
  ASSERT_EQ(hub_->call("GET", "/api/v1/orgs/" + org + "/secrets", hub_->owner_).status, 200);
  ASSERT_EQ(hub_->put_secret("halopsa/marker-deleted", marker + "-gone").status, 204);
  ASSERT_EQ(
      hub_->call("DELETE", "/api/v1/orgs/" + org + "/secrets/halopsa/marker-deleted", hub_->owner_)
          .status,
      204);
  ASSERT_EQ(hub_->put_secret("Bad/Name", marker).status, 400);
  hub_->grant("halopsa", "halopsa/marker");
  auto released = hub_->release(hub_->session(hub_->owner_), "halopsa", org, "halopsa/marker");
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released.lease().value(), marker + "-v2");

  const std::string metrics = hub_->call("GET", "/metrics", "").body;
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics.find(marker), std::string::npos);
  EXPECT_EQ(hub_->hub_->log().find(marker), std::string::npos);
  EXPECT_EQ(hub_->hub_->output().find(marker), std::string::npos);
  EXPECT_NE(hub_->hub_->log().find("secret stored"), std::string::npos) << "the log was read";

  TempDir dump_dir("helm-dump");
  const std::string dump = dump_dir.file("dump.sql");
  ASSERT_EQ(run_command("/usr/lib/postgresql/*/bin/pg_dump -d \"" +
                        storage::EmbeddedPostgres::connection_string_for(hub_->dir_.path()) +
                        "\" -f " + dump + " 2>" + dump_dir.file("err")),
            0)
      << read_file(dump_dir.file("err"));
  const std::string text = read_file(dump);
  EXPECT_NE(text.find("vault_secrets"), std::string::npos) << "the dump was read";
  EXPECT_EQ(text.find(marker), std::string::npos);
  EXPECT_EQ(read_file(hub_->dir_.path() + "/postgres.log").find(marker), std::string::npos);
}

TEST_F(Vault, TheAuditLogRefusesUpdatesAndVerifyNamesAnEditedDeletedOrReorderedRecord) {
  ASSERT_EQ(hub_->put_secret("audit/one", "audit-value-1").status, 204);
  ASSERT_EQ(hub_->put_secret("audit/two", "audit-value-2").status, 204);
  ASSERT_EQ(hub_->put_secret("audit/three", "audit-value-3").status, 204);
  const std::string verify = "audit verify --data-dir " + hub_->dir_.path();
  std::string out;
  ASSERT_EQ(hub_command(verify, &out), 0) << out;
  EXPECT_NE(out.find("OK"), std::string::npos) << out;

  EXPECT_THROW(hub_->sql("UPDATE audit_log SET reason = 'x'"), pqxx::sql_error);
  EXPECT_THROW(hub_->sql("DELETE FROM audit_log"), pqxx::sql_error);

  const auto seqs =
      hub_->query("SELECT seq FROM audit_log WHERE secret_name LIKE 'audit/%' ORDER BY seq");
  ASSERT_EQ(seqs.size(), 3u);
  const std::string a = seqs[0][0].c_str(), b = seqs[1][0].c_str();
  hub_->sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete");

  // Edited.
  hub_->sql("UPDATE audit_log SET actor = 'someone-else' WHERE seq = " + a);
  EXPECT_EQ(hub_command(verify, &out), 1) << out;
  EXPECT_NE(out.find("record seq " + a), std::string::npos) << out;
  EXPECT_NE(out.find("edited"), std::string::npos) << out;
  hub_->sql("UPDATE audit_log SET actor = (SELECT actor FROM audit_log WHERE seq = " + b +
            ") WHERE seq = " + a);
  ASSERT_EQ(hub_command(verify, &out), 0) << out;

  // Reordered: two records swap places.
  const std::string cols =
      "ts, actor, session_id, plugin, org_id, action, secret_name, secret_version, outcome,"
      " reason, extra, prev_hash, hash";
  hub_->sql("CREATE TABLE audit_copy AS SELECT * FROM audit_log WHERE seq IN (" + a + ", " + b +
            ")");
  hub_->sql("UPDATE audit_log l SET (" + cols + ") = (SELECT " + cols +
            " FROM audit_copy c WHERE c.seq = CASE WHEN l.seq = " + a + " THEN " + b + " ELSE " +
            a + " END) WHERE l.seq IN (" + a + ", " + b + ")");
  EXPECT_EQ(hub_command(verify, &out), 1) << out;
  EXPECT_NE(out.find("record seq " + a), std::string::npos) << out;
  hub_->sql("UPDATE audit_log l SET (" + cols + ") = (SELECT " + cols +
            " FROM audit_copy c WHERE c.seq = l.seq) WHERE l.seq IN (" + a + ", " + b + ")");
  ASSERT_EQ(hub_command(verify, &out), 0) << out;

  // Deleted.
  hub_->sql("DELETE FROM audit_log WHERE seq = " + a);
  EXPECT_EQ(hub_command(verify, &out), 1) << out;
  EXPECT_NE(out.find("record seq " + std::to_string(std::stoll(a) + 1)), std::string::npos) << out;
  EXPECT_NE(out.find("deleted"), std::string::npos) << out;
  hub_->sql("INSERT INTO audit_log SELECT * FROM audit_copy WHERE seq = " + a);
  hub_->sql("DROP TABLE audit_copy");
  hub_->sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete");
  ASSERT_EQ(hub_command(verify, &out), 0) << out;
}

TEST(VaultMasterKey, TheHubRefusesToStartWithAWrongOrUnsafeMasterKey) {
  TempDir dir("helm-vault-kek");
  std::string out;
  ASSERT_EQ(bootstrap_hub(dir.path(), "Operators", "o@o.test", kPassword, &out), 0) << out;
  {
    HubProcess hub({.data_dir = dir.path(), .env = kFastPasswordEnv});
    ASSERT_TRUE(hub.ready()) << hub.log();
    EXPECT_NE(hub.log().find("DEVELOPMENT MASTER KEY"), std::string::npos);
    // The first stored secret pins the master key's check value.
    HttpRequestOptions o;
    o.method = "POST";
    o.ca_file = hub.ca_file();
    o.body = json{{"email", "o@o.test"}, {"password", kPassword}}.dump();
    auto login = https(hub.base_url() + "/api/v1/auth/login", o);
    ASSERT_EQ(login.status, 200) << login.body;
    const auto who = json::parse(login.body);
    o.method = "PUT";
    o.body = json{{"value", "pinned"}}.dump();
    o.headers = {"Authorization: Bearer " + who["token"].get<std::string>()};
    EXPECT_EQ(https(hub.base_url() + "/api/v1/orgs/" +
                        who["technician"]["org_id"].get<std::string>() + "/secrets/pin",
                    o)
                  .status,
              204);
    EXPECT_EQ(hub.stop(), 0);
  }
  auto env = kFastPasswordEnv;
  env["HELM_MASTER_KEY"] = random_hex_key();
  HubProcess wrong({.data_dir = dir.path(), .env = env, .wait_ready = false});
  auto code = wrong.wait_exit(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(wrong.log().find("wrong vault master key"), std::string::npos) << wrong.log();
  EXPECT_NE(wrong.log().find("vault.master_key_file"), std::string::npos) << wrong.log();

  const std::string key_file = dir.file("loose.key");
  write_file(key_file, random_hex_key() + "\n");
  ::chmod(key_file.c_str(), 0644);
  env = kFastPasswordEnv;
  env["HELM_VAULT_MASTER_KEY_FILE"] = key_file;
  HubProcess loose({.data_dir = dir.path(), .env = env, .wait_ready = false});
  code = loose.wait_exit(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(loose.log().find("chmod 600"), std::string::npos) << loose.log();

  // The right key still works.
  HubProcess again({.data_dir = dir.path(), .env = kFastPasswordEnv});
  EXPECT_TRUE(again.ready()) << again.log();
}

TEST(VaultMasterKey, RotationUnderConcurrentReleasesLosesNone) {
  VaultHub hub("helm-vault-rot");
  for (const std::string name : {"halopsa/a", "halopsa/b", "halopsa/c"}) {
    ASSERT_EQ(hub.put_secret(name, "rotation-value-" + name).status, 204);
    hub.grant("halopsa", name);
  }
  // Every release unwraps its data key afresh: the hardest case for a rotation.
  auto& service = hub.service(/*cache=*/false);
  (void)service;
  const auto ctx = hub.session(hub.owner_);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::string first_failure;
  std::mutex failure_mutex;
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      const std::string name = std::string("halopsa/") + "abc"[t];
      while (!stop) {
        auto r = hub.release(ctx, "halopsa", hub.org_, name);
        if (r.ok() && r.lease().value() == "rotation-value-" + name) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard lock(failure_mutex);
          if (first_failure.empty()) {
            first_failure = r.ok() ? "wrong value" : r.refusal().message;
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  const int before = ok;
  TempDir keys("helm-newkey");
  const std::string new_key = keys.file("new.key");
  write_file(new_key, random_hex_key() + "\n");
  ::chmod(new_key.c_str(), 0600);
  std::string out;
  const int rc = hub_command(
      "vault rotate-master --new-key-file " + new_key + " --data-dir " + hub.dir_.path(), &out);
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& w : workers)
    w.join();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_GT(before, 0);
  EXPECT_GT(ok.load(), before) << "releases continued after the rotation";
  EXPECT_EQ(failed.load(), 0) << first_failure;

  const auto kcv = vault::MasterKey::from_file(new_key)->check_value();
  auto rows = hub.query("SELECT DISTINCT master_kcv FROM vault_data_keys");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0].as<std::string>(), kcv);
  EXPECT_EQ(hub.query("SELECT value FROM hub_meta WHERE key = 'vault_kcv'")[0][0].as<std::string>(),
            kcv);
  EXPECT_FALSE(std::filesystem::exists(hub.dir_.path() + "/master.key.previous"));

  // The running hub picks the new key up by itself, and starts with it after a restart.
  EXPECT_EQ(hub.put_secret("halopsa/a", "rotation-value-halopsa/a").status, 204);
  EXPECT_EQ(hub.hub_->stop(), 0);
  hub.start();
  EXPECT_EQ(hub.put_secret("halopsa/d", "after restart").status, 204);

  // A data-key rotation re-seals every secret; releases still answer the same values.
  const auto old_key = hub.query("SELECT version FROM vault_data_keys")[0][0].as<int>();
  ASSERT_EQ(hub_command("vault rotate-org-key --org " + hub.org_ + " --data-dir " + hub.dir_.path(),
                        &out),
            0)
      << out;
  auto versions = hub.query("SELECT DISTINCT data_key_version FROM vault_secrets");
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0][0].as<int>(), old_key + 1);
  auto r = hub.release(ctx, "halopsa", hub.org_, "halopsa/b");
  ASSERT_TRUE(r.ok()) << r.refusal().message;
  EXPECT_EQ(r.lease().value(), "rotation-value-halopsa/b");
  ASSERT_EQ(hub_command("audit verify --data-dir " + hub.dir_.path(), &out), 0) << out;
}

}  // namespace
}  // namespace helm::test
