// Identity end to end: the real hub and PostgreSQL, driven over HTTPS like a client would.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <future>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "helm/auth/auth_service.hpp"
#include "helm/identity/totp.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kOwnerPassword = "owner password 123";
constexpr const char* kRandomId = "00000000-0000-4000-8000-000000000001";

class Identity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-ident");
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", "owner@a.test", kOwnerPassword, &out), 0)
        << out;
    hub_ = new HubProcess({.data_dir = dir_->path(), .env = kFastPasswordEnv});
    ASSERT_TRUE(hub_->ready()) << hub_->log();
    auto login = must_login("owner@a.test", kOwnerPassword);
    owner_a_ = login["token"];
    org_a_ = login["technician"]["org_id"];

    // A second organization, created by the hub operators.
    auto created = call("POST", "/api/v1/orgs", owner_a_,
                        json{{"name", "Beta MSP"},
                             {"owner_email", "owner@b.test"},
                             {"owner_password", kOwnerPassword}});
    ASSERT_EQ(created.status, 201) << created.body;
    org_b_ = json::parse(created.body)["id"];
    owner_b_ = must_login("owner@b.test", kOwnerPassword)["token"];

    for (const std::string role : {"admin", "technician", "readonly"}) {
      auto r =
          call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
               json{{"email", role + "@a.test"}, {"password", kOwnerPassword}, {"role", role}});
      ASSERT_EQ(r.status, 201) << r.body;
      tokens_[role] = must_login(role + "@a.test", kOwnerPassword)["token"];
    }
    tokens_["owner"] = owner_a_;
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

  static HttpResponse login(const std::string& email, const std::string& password,
                            const std::string& totp = "") {
    json body = {{"email", email}, {"password", password}};
    if (!totp.empty()) body["totp"] = totp;
    return call("POST", "/api/v1/auth/login", "", body);
  }

  static json must_login(const std::string& email, const std::string& password) {
    auto r = login(email, password);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  static inline TempDir* dir_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string owner_a_, owner_b_, org_a_, org_b_;
  static inline std::map<std::string, std::string> tokens_;
};

// Every organization-scoped operation the hub serves, from its own OpenAPI document.
std::vector<std::tuple<std::string, std::string, std::string>> org_routes(const HttpResponse& doc) {
  std::vector<std::tuple<std::string, std::string, std::string>> out;
  const auto paths = json::parse(doc.body)["paths"];
  for (const auto& [path, methods] : paths.items()) {
    if (path.find("{org}") == std::string::npos) continue;
    for (const auto& [method, op] : methods.items()) {
      std::string m = method;
      for (auto& c : m)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out.emplace_back(m, path, op["x-helm-access"].get<std::string>());
    }
  }
  return out;
}

std::string fill(std::string path, const std::string& org) {
  for (size_t pos; (pos = path.find('{')) != std::string::npos;) {
    const auto end = path.find('}', pos);
    const auto name = path.substr(pos + 1, end - pos - 1);
    path.replace(pos, end - pos + 1, name == "org" ? org : kRandomId);
  }
  return path;
}

TEST_F(Identity, LoginAnswersTheSpecShapeAndMeAgrees) {
  auto r = login("OWNER@a.test", kOwnerPassword);  // email is case-insensitive
  ASSERT_EQ(r.status, 200) << r.body;
  const auto body = json::parse(r.body);
  EXPECT_EQ(body["token"].get<std::string>().rfind("hhs_", 0), 0u);
  EXPECT_TRUE(body.contains("expires_at"));
  for (const auto* field : {"id", "email", "org_id", "role"}) {
    EXPECT_TRUE(body["technician"].contains(field)) << field;
  }
  auto me = call("GET", "/api/v1/me", body["token"]);
  ASSERT_EQ(me.status, 200);
  const auto m = json::parse(me.body);
  EXPECT_EQ(m["id"], body["technician"]["id"]);
  EXPECT_EQ(m["org_id"], org_a_);
  EXPECT_EQ(m["role"], "owner");
}

TEST_F(Identity, UnknownUserAndWrongPasswordGetTheSameAnswer) {
  auto unknown = login("nobody@a.test", kOwnerPassword);
  auto wrong = login("readonly@a.test", "not the password");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(unknown.body, wrong.body);
}

TEST_F(Identity, EveryOrganizationScopedRouteAnswers404ToAnotherOrganization) {
  auto doc = call("GET", "/api/v1/openapi.json", "");
  ASSERT_EQ(doc.status, 200);
  const auto routes = org_routes(doc);
  ASSERT_GT(routes.size(), 20u);
  for (const auto& [method, path, access] : routes) {
    auto r = call(method, fill(path, org_a_), owner_b_, json::object());
    EXPECT_EQ(r.status, 404) << method << " " << path
                             << " as another organization's owner: " << r.body;
  }
  // And the other organization's own objects are invisible by id too.
  auto client = call("POST", "/api/v1/orgs/" + org_a_ + "/clients", owner_a_, {{"name", "Secret"}});
  ASSERT_EQ(client.status, 201);
  const std::string id = json::parse(client.body)["id"];
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_b_ + "/clients/" + id, owner_b_).status, 404);
}

TEST_F(Identity, RoleMatrixOverEveryOrganizationRoute) {
  auto doc = call("GET", "/api/v1/openapi.json", "");
  const std::map<std::string, int> level = {
      {"readonly", 0}, {"technician", 1}, {"admin", 2}, {"owner", 3}};
  for (const auto& [method, path, access] : org_routes(doc)) {
    if (!level.count(access)) continue;
    for (const auto& [role, rank] : level) {
      auto r = call(method, fill(path, org_a_), tokens_.at(role), json::object());
      if (rank < level.at(access)) {
        EXPECT_EQ(r.status, 403) << role << " " << method << " " << path;
      } else {
        EXPECT_NE(r.status, 403) << role << " " << method << " " << path << ": " << r.body;
        EXPECT_NE(r.status, 401) << role << " " << method << " " << path;
      }
    }
  }
}

TEST_F(Identity, HubOperatorRoutesRefuseOtherOrganizationsAndLesserRoles) {
  EXPECT_EQ(call("GET", "/api/v1/orgs", owner_a_).status, 200);
  EXPECT_EQ(call("GET", "/api/v1/orgs", owner_b_).status, 403);
  EXPECT_EQ(call("GET", "/api/v1/orgs", tokens_.at("technician")).status, 403);
  EXPECT_EQ(call("POST", "/api/v1/orgs", owner_b_, json::object()).status, 403);
}

TEST_F(Identity, MissingOrBogusTokensAre401) {
  EXPECT_EQ(call("GET", "/api/v1/me", "").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/me", "hhs_bogus").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", "nonsense").status, 401);
}

TEST_F(Identity, DisablingATechnicianCutsItsLiveSessionAtTheNextRequest) {
  auto created =
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
           {{"email", "leaver@a.test"}, {"password", kOwnerPassword}, {"role", "technician"}});
  ASSERT_EQ(created.status, 201);
  const std::string id = json::parse(created.body)["id"];
  const std::string token = must_login("leaver@a.test", kOwnerPassword)["token"];
  ASSERT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", token).status, 200);

  ASSERT_EQ(
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians/" + id + "/disable", owner_a_).status,
      204);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", token).status, 401);
  EXPECT_EQ(login("leaver@a.test", kOwnerPassword).status, 401);

  ASSERT_EQ(
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians/" + id + "/enable", owner_a_).status,
      204);
  EXPECT_EQ(call("GET", "/api/v1/me", token).status, 401) << "old sessions stay revoked";
  EXPECT_EQ(login("leaver@a.test", kOwnerPassword).status, 200);
}

TEST_F(Identity, LogoutEndsOnlyThatSession) {
  const std::string one = must_login("admin@a.test", kOwnerPassword)["token"];
  const std::string two = must_login("admin@a.test", kOwnerPassword)["token"];
  EXPECT_EQ(call("POST", "/api/v1/auth/logout", one).status, 204);
  EXPECT_EQ(call("GET", "/api/v1/me", one).status, 401);
  EXPECT_EQ(call("GET", "/api/v1/me", two).status, 200);
  auto sessions = call("GET", "/api/v1/me/sessions", two);
  ASSERT_EQ(sessions.status, 200);
  EXPECT_GE(json::parse(sessions.body)["items"].size(), 1u);
}

TEST_F(Identity, AdminRevokesAllSessionsOfATechnician) {
  const auto login_body = must_login("readonly@a.test", kOwnerPassword);
  const std::string token = login_body["token"];
  const std::string id = login_body["technician"]["id"];
  ASSERT_EQ(call("DELETE", "/api/v1/orgs/" + org_a_ + "/technicians/" + id + "/sessions",
                 tokens_.at("admin"))
                .status,
            204);
  EXPECT_EQ(call("GET", "/api/v1/me", token).status, 401);
  tokens_["readonly"] = must_login("readonly@a.test", kOwnerPassword)["token"];
}

TEST_F(Identity, ServicePrincipalTokenWorksUntilDeleted) {
  auto sp = call("POST", "/api/v1/orgs/" + org_a_ + "/service-principals", owner_a_,
                 {{"name", "automation"}, {"role", "readonly"}});
  ASSERT_EQ(sp.status, 201) << sp.body;
  const auto body = json::parse(sp.body);
  const std::string token = body["token"];
  EXPECT_EQ(token.rfind("hhp_", 0), 0u);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", token).status, 200);
  EXPECT_EQ(call("POST", "/api/v1/orgs/" + org_a_ + "/clients", token, {{"name", "x"}}).status,
            403);
  auto list = call("GET", "/api/v1/orgs/" + org_a_ + "/service-principals", owner_a_);
  EXPECT_EQ(list.body.find(token), std::string::npos) << "the token is shown once only";
  ASSERT_EQ(call("DELETE",
                 "/api/v1/orgs/" + org_a_ + "/service-principals/" + body["id"].get<std::string>(),
                 owner_a_)
                .status,
            204);
  EXPECT_EQ(call("GET", "/api/v1/me", token).status, 401);
}

TEST_F(Identity, ListsPageWithAnOpaqueCursor) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(call("POST", "/api/v1/orgs/" + org_b_ + "/clients", owner_b_,
                   {{"name", "Paged " + std::to_string(i)}})
                  .status,
              201);
  }
  auto first =
      json::parse(call("GET", "/api/v1/orgs/" + org_b_ + "/clients?limit=2", owner_b_).body);
  ASSERT_EQ(first["items"].size(), 2u);
  ASSERT_TRUE(first["next_cursor"].is_string());
  auto second = json::parse(call("GET",
                                 "/api/v1/orgs/" + org_b_ + "/clients?limit=2&cursor=" +
                                     first["next_cursor"].get<std::string>(),
                                 owner_b_)
                                .body);
  ASSERT_GE(second["items"].size(), 1u);
  std::set<std::string> ids;
  for (const auto& page : {first, second}) {
    for (const auto& item : page["items"])
      ids.insert(item["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), first["items"].size() + second["items"].size()) << "no item twice";
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_b_ + "/clients?limit=0", owner_b_).status, 400);
}

TEST_F(Identity, ValidationErrorsNameTheField) {
  auto r = call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
                {{"email", "not-an-email"}, {"password", "short"}, {"role", "king"}});
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(r.headers.at("content-type"), "application/problem+json");
  const auto body = json::parse(r.body);
  std::set<std::string> fields;
  for (const auto& e : body["errors"])
    fields.insert(e["field"].get<std::string>());
  EXPECT_EQ(fields, (std::set<std::string>{"/email", "/password", "/role"}));
  auto bad_json = call("POST", "/api/v1/orgs/" + org_a_ + "/clients", owner_a_);
  EXPECT_EQ(bad_json.status, 400);
}

TEST_F(Identity, AdminsCannotManageOwnersAndTheLastOwnerStays) {
  auto me = json::parse(call("GET", "/api/v1/me", owner_b_).body);
  const std::string owner_id = me["id"];
  auto demote = call("PATCH", "/api/v1/orgs/" + org_b_ + "/technicians/" + owner_id, owner_b_,
                     {{"role", "admin"}});
  EXPECT_EQ(demote.status, 409) << demote.body;
  auto promote =
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", tokens_.at("admin"),
           {{"email", "new-owner@a.test"}, {"password", kOwnerPassword}, {"role", "owner"}});
  EXPECT_EQ(promote.status, 403);
}

TEST_F(Identity, TotpEnrollmentThenLoginNeedsAFreshCodeAndRefusesReplay) {
  auto created =
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
           {{"email", "totp@a.test"}, {"password", kOwnerPassword}, {"role", "technician"}});
  ASSERT_EQ(created.status, 201);
  const std::string token = must_login("totp@a.test", kOwnerPassword)["token"];
  auto start = call("POST", "/api/v1/me/totp", token);
  ASSERT_EQ(start.status, 200) << start.body;
  const auto secret = identity::base32_decode(json::parse(start.body)["secret"].get<std::string>());
  ASSERT_TRUE(secret.ok());
  const auto now = std::time(nullptr);
  const auto code = identity::totp_code(secret.value(), now);
  ASSERT_EQ(call("POST", "/api/v1/me/totp/confirm", token, {{"code", code}}).status, 204);

  EXPECT_EQ(login("totp@a.test", kOwnerPassword).status, 401) << "password alone is not enough";
  EXPECT_EQ(login("totp@a.test", kOwnerPassword, code).status, 401)
      << "the enrollment code was already used";
  const auto next = identity::totp_code(secret.value(), now + 30);
  EXPECT_EQ(login("totp@a.test", kOwnerPassword, next).status, 200);
  EXPECT_EQ(login("totp@a.test", kOwnerPassword, next).status, 401) << "a code is accepted once";
}

TEST_F(Identity, AclPolicyDecidesWhichClientsATechnicianSees) {
  auto mk = [&](const std::string& name) {
    auto r = call("POST", "/api/v1/orgs/" + org_a_ + "/clients", owner_a_, {{"name", name}});
    EXPECT_EQ(r.status, 201);
    return json::parse(r.body)["id"].get<std::string>();
  };
  const auto allowed = mk("Allowed Co");
  const auto denied = mk("Denied Co");
  const std::string tech = tokens_.at("technician");
  // Deny by default: no policy, nothing visible.
  auto none = json::parse(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", tech).body);
  EXPECT_TRUE(none["items"].empty()) << none.dump();

  json policy = {{"groups", {{"tier1", {"technician@a.test"}}}},
                 {"targets", {{"allowed", {{"clients", {allowed}}}}}},
                 {"rules", {{{"technicians", {"group:tier1"}}, {"targets", {"allowed"}}}}},
                 {"tests",
                  {{{"technician", "technician@a.test"},
                    {"allow", {"client:" + allowed}},
                    {"deny", {"client:" + denied}}}}}};
  auto failing = policy;
  failing["tests"][0]["allow"] = {"client:" + denied};
  auto rejected = call("PUT", "/api/v1/orgs/" + org_a_ + "/acl-policy", owner_a_, failing);
  EXPECT_EQ(rejected.status, 422);
  EXPECT_NE(rejected.body.find("technician@a.test"), std::string::npos) << rejected.body;

  auto saved = call("PUT", "/api/v1/orgs/" + org_a_ + "/acl-policy", owner_a_, policy);
  ASSERT_EQ(saved.status, 200) << saved.body;
  auto seen = json::parse(call("GET", "/api/v1/orgs/" + org_a_ + "/clients", tech).body);
  ASSERT_EQ(seen["items"].size(), 1u) << seen.dump();
  EXPECT_EQ(seen["items"][0]["id"], allowed);
  // Known but out of reach: 403, not 404 (that is for other organizations' objects).
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients/" + denied, tech).status, 403);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_a_ + "/clients/" + allowed, tech).status, 200);

  auto stale = call("PUT", "/api/v1/orgs/" + org_a_ + "/acl-policy", owner_a_, policy);
  ASSERT_EQ(stale.status, 200);
  HttpRequestOptions o;
  o.method = "PUT";
  o.ca_file = hub_->ca_file();
  o.body = policy.dump();
  o.headers = {"Authorization: Bearer " + owner_a_, "If-Match: \"1\""};
  EXPECT_EQ(https(hub_->base_url() + "/api/v1/orgs/" + org_a_ + "/acl-policy", o).status, 412);
}

TEST_F(Identity, BootstrapRefusesOnceAnOrganizationExistsEvenWhileTheHubRuns) {
  std::string out;
  EXPECT_EQ(bootstrap_hub(dir_->path(), "Again", "x@x.test", kOwnerPassword, &out), 1);
  EXPECT_NE(out.find("already bootstrapped"), std::string::npos) << out;
}

// The check every vault release makes: a session context that was valid stops being valid within
// the cache's second once its account is disabled — here seen from another process's cache.
TEST_F(Identity, SessionContextSeesADisabledAccountWithinOneSecond) {
  auto created =
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians", owner_a_,
           {{"email", "ctx@a.test"}, {"password", kOwnerPassword}, {"role", "technician"}});
  ASSERT_EQ(created.status, 201);
  const std::string id = json::parse(created.body)["id"];
  const std::string token = must_login("ctx@a.test", kOwnerPassword)["token"];

  storage::DbPool pool(
      {.conninfo = storage::EmbeddedPostgres::connection_string_for(dir_->path()), .size = 1});
  auth::AuthService service(pool, {});
  std::promise<auth::AuthResult> authed;
  service.authenticate(token, [&](auth::AuthResult r) { authed.set_value(std::move(r)); });
  const auto result = authed.get_future().get();
  ASSERT_TRUE(std::holds_alternative<auth::SessionContext>(result));
  const auto ctx = std::get<auth::SessionContext>(result);
  auto still_valid = [&] {
    std::promise<bool> p;
    service.check_still_valid(ctx, [&](bool ok) { p.set_value(ok); });
    return p.get_future().get();
  };
  EXPECT_TRUE(still_valid());

  ASSERT_EQ(
      call("POST", "/api/v1/orgs/" + org_a_ + "/technicians/" + id + "/disable", owner_a_).status,
      204);
  std::this_thread::sleep_for(1100ms);
  EXPECT_FALSE(still_valid());
}

TEST_F(Identity, MandatoryTotpKeepsAdminsOutUntilTheyEnroll) {
  ASSERT_EQ(
      call("PATCH", "/api/v1/orgs/" + org_b_, owner_b_, {{"require_totp_for_admins", true}}).status,
      204);
  auto created = call("POST", "/api/v1/orgs/" + org_b_ + "/technicians", owner_b_,
                      {{"email", "admin@b.test"}, {"password", kOwnerPassword}, {"role", "admin"}});
  ASSERT_EQ(created.status, 201);
  const auto body = must_login("admin@b.test", kOwnerPassword);
  EXPECT_TRUE(body["totp_enrollment_required"].get<bool>());
  const std::string token = body["token"];
  auto blocked = call("GET", "/api/v1/orgs/" + org_b_ + "/clients", token);
  EXPECT_EQ(blocked.status, 403);
  EXPECT_NE(blocked.body.find("totp-enrollment-required"), std::string::npos);

  auto start = call("POST", "/api/v1/me/totp", token);
  ASSERT_EQ(start.status, 200);
  const auto secret = identity::base32_decode(json::parse(start.body)["secret"].get<std::string>());
  ASSERT_TRUE(secret.ok());
  ASSERT_EQ(call("POST", "/api/v1/me/totp/confirm", token,
                 {{"code", identity::totp_code(secret.value(), std::time(nullptr))}})
                .status,
            204);
  EXPECT_EQ(call("GET", "/api/v1/orgs/" + org_b_ + "/clients", token).status, 200);
  ASSERT_EQ(call("PATCH", "/api/v1/orgs/" + org_b_, owner_b_, {{"require_totp_for_admins", false}})
                .status,
            204);
}

TEST_F(Identity, MutationsAndLoginsAreInTheVerifiedAuditLog) {
  auto created =
      call("POST", "/api/v1/orgs/" + org_a_ + "/clients", owner_a_, {{"name", "Audited"}});
  ASSERT_EQ(created.status, 201);
  EXPECT_EQ(call("POST", "/api/v1/orgs/" + org_a_ + "/clients", tokens_.at("readonly"),
                 {{"name", "Refused"}})
                .status,
            403);
  const std::string owner_id = json::parse(call("GET", "/api/v1/me", owner_a_).body)["id"];
  pqxx::connection conn(storage::EmbeddedPostgres::connection_string_for(dir_->path()));
  std::vector<std::tuple<std::string, std::string, std::string>> rows;
  // The route layer writes after answering: give it a moment.
  for (int i = 0; i < 50 && rows.size() < 2; ++i) {
    rows.clear();
    pqxx::work tx(conn);
    for (const auto& r : tx.exec("SELECT actor, action, outcome FROM audit_log"
                                 " WHERE action = 'post.orgs.org.clients'"
                                 " ORDER BY seq")) {
      rows.emplace_back(r[0].c_str(), r[1].c_str(), r[2].c_str());
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(rows.size(), 2u);
  EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [&](const auto& r) {
    return std::get<0>(r) == owner_id && std::get<2>(r) == "allowed";
  }));
  EXPECT_TRUE(std::any_of(rows.begin(), rows.end(),
                          [&](const auto& r) { return std::get<2>(r) == "denied"; }));
  {
    pqxx::work tx(conn);
    EXPECT_GE(
        tx.exec1("SELECT count(*) FROM audit_log WHERE action = 'post.auth.login'")[0].as<int>(),
        4);
  }
  std::string out;
  const int rc = run_command(hub_binary() + " audit verify --data-dir " + dir_->path() + " > " +
                             dir_->file("verify.out") + " 2>&1");
  out = read_file(dir_->file("verify.out"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
}

TEST(IdentityTimeouts, AnIdleSessionExpires) {
  TempDir dir("helm-idle");
  ASSERT_EQ(bootstrap_hub(dir.path(), "Ops", "o@o.test", kOwnerPassword, nullptr), 0);
  auto env = kFastPasswordEnv;
  env["HELM_IDENTITY_SESSION_IDLE_TIMEOUT_S"] = "2";
  HubProcess hub({.data_dir = dir.path(), .env = env});
  ASSERT_TRUE(hub.ready()) << hub.log();
  HttpRequestOptions o;
  o.method = "POST";
  o.ca_file = hub.ca_file();
  o.body = json{{"email", "o@o.test"}, {"password", kOwnerPassword}}.dump();
  auto r = https(hub.base_url() + "/api/v1/auth/login", o);
  ASSERT_EQ(r.status, 200);
  HttpRequestOptions me;
  me.ca_file = hub.ca_file();
  me.headers = {"Authorization: Bearer " + json::parse(r.body)["token"].get<std::string>()};
  EXPECT_EQ(https(hub.base_url() + "/api/v1/me", me).status, 200);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(https(hub.base_url() + "/api/v1/me", me).status, 401);
}

TEST(IdentityBackoff, RepeatedWrongPasswordsFromOneAddressAreSlowedDown) {
  TempDir dir("helm-backoff");
  ASSERT_EQ(bootstrap_hub(dir.path(), "Ops", "o@o.test", kOwnerPassword, nullptr), 0);
  HubProcess hub({.data_dir = dir.path(), .env = kFastPasswordEnv});
  ASSERT_TRUE(hub.ready()) << hub.log();
  HttpRequestOptions o;
  o.method = "POST";
  o.ca_file = hub.ca_file();
  o.body = json{{"email", "o@o.test"}, {"password", "wrong password"}}.dump();
  std::vector<long> statuses;
  HttpResponse last;
  for (int i = 0; i < 7; ++i) {
    last = https(hub.base_url() + "/api/v1/auth/login", o);
    statuses.push_back(last.status);
  }
  EXPECT_EQ(statuses.front(), 401);
  EXPECT_EQ(statuses.back(), 429);
  EXPECT_TRUE(last.headers.count("retry-after"));
  // Even the right password waits its turn.
  o.body = json{{"email", "o@o.test"}, {"password", kOwnerPassword}}.dump();
  EXPECT_EQ(https(hub.base_url() + "/api/v1/auth/login", o).status, 429);
}

}  // namespace
}  // namespace helm::test
