// The agent routes and the TransportHost seam against a real PostgreSQL and a real HTTPS
// listener, in this process: the hub's own router, auth and AgentService, with a fake
// TransportLink standing in for the transport plugin (which reports its URL and devices' frames).
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "helm/agents/agent_routes.hpp"
#include "helm/agents/agent_service.hpp"
#include "helm/api/openapi.hpp"
#include "helm/auth/auth_service.hpp"
#include "helm/auth/credentials.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/http/router.hpp"
#include "helm/http/server.hpp"
#include "helm/http/tls_files.hpp"
#include "helm/hub/hub.hpp"
#include "helm/metrics/registry.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Records what the agent service sends and closes; devices in `online` accept frames.
class FakeLink : public plugins::TransportLink {
 public:
  helm_status send_to_device(const std::string& device_id, const std::string& frame) override {
    std::lock_guard lock(mutex_);
    if (!online_.count(device_id)) return HELM_STATUS_NOT_FOUND;
    sent_.emplace_back(device_id, json::parse(frame));
    return HELM_STATUS_OK;
  }
  void close_device(const std::string& device_id, std::uint16_t code,
                    const std::string& reason) override {
    std::lock_guard lock(mutex_);
    closed_.push_back({device_id, code, reason});
    online_.erase(device_id);
  }
  void set_online(const std::string& device_id, bool online) {
    std::lock_guard lock(mutex_);
    if (online) {
      online_.insert(device_id);
    } else {
      online_.erase(device_id);
    }
  }
  std::vector<json> frames_for(const std::string& device_id) {
    std::lock_guard lock(mutex_);
    std::vector<json> out;
    for (const auto& [id, frame] : sent_)
      if (id == device_id) out.push_back(frame);
    return out;
  }
  std::vector<std::uint16_t> close_codes_for(const std::string& device_id) {
    std::lock_guard lock(mutex_);
    std::vector<std::uint16_t> out;
    for (const auto& c : closed_)
      if (c.device_id == device_id) out.push_back(c.code);
    return out;
  }

 private:
  struct Close {
    std::string device_id;
    std::uint16_t code;
    std::string reason;
  };
  std::mutex mutex_;
  std::set<std::string> online_;
  std::vector<std::pair<std::string, json>> sent_;
  std::vector<Close> closed_;
};

// Polls `condition` until it holds or `limit` passes.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

struct AuthAnswer {
  helm_status status;
  json body;
  bool other_thread;
};

AuthAnswer authenticate(agents::AgentService& service, const std::string& token) {
  std::promise<AuthAnswer> promise;
  auto answer = promise.get_future();
  const auto caller = std::this_thread::get_id();
  service.authenticate_device(token, [&promise, caller](helm_status status, std::string text) {
    json body = json::parse(text, nullptr, false);
    promise.set_value(
        {status, body.is_discarded() ? json(text) : body, std::this_thread::get_id() != caller});
  });
  if (answer.wait_for(10s) != std::future_status::ready) return {HELM_STATUS_INTERNAL, {}, false};
  return answer.get();
}

// A hub in this process: embedded PostgreSQL, the real router with the identity, tenancy and
// agent routes, an HTTPS listener, an AgentService attached to a FakeLink whose transport
// "listens" on every address.
class AgentHub : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-agents");
    auto pg = storage::EmbeddedPostgres::start({.data_dir = dir_->path(), .supervise = false});
    ASSERT_TRUE(pg.ok()) << (pg.ok() ? "" : pg.error().message);
    pg_ = std::move(pg).value().release();
    {
      pqxx::connection conn(pg_->connection_string());
      ASSERT_TRUE(storage::apply_migrations(conn, storage::builtin_migrations()).ok());
      pqxx::work tx(conn);
      org_a_ = tx.exec1("INSERT INTO organizations (name) VALUES ('A') RETURNING id::text")[0]
                   .as<std::string>();
      org_b_ = tx.exec1("INSERT INTO organizations (name) VALUES ('B') RETURNING id::text")[0]
                   .as<std::string>();
      for (const std::string role : {"owner", "admin", "technician", "readonly"}) {
        tokens_[role] = session(tx, org_a_, role + "@a.test", role);
      }
      tokens_["owner_b"] = session(tx, org_b_, "owner@b.test", "owner");
      tx.commit();
    }
    pool_ = new storage::DbPool({.conninfo = pg_->connection_string(), .size = 4});
    auth_ = new auth::AuthService(*pool_, {});
    cpu_ = new TaskPool(1);
    services_ = new api::Services{*pool_, *auth_, *cpu_, {}};
    auto files = http::ensure_development_certificate(dir_->path());
    ASSERT_TRUE(files.ok());
    ca_file_ = files->cert_file;
    agents_ = new agents::AgentService(*pool_, {.tls_cert_file = files->cert_file,
                                                .tls_key_file = files->key_file,
                                                .heartbeat_s = 30,
                                                .enroll_per_s = 1000,
                                                .enroll_burst = 1000,
                                                .last_seen_interval = 1s});
    ASSERT_TRUE(agents_->start().ok());
    link_ = new FakeLink;
    agents_->set_link(link_);
    agents_->transport_listening("wss://0.0.0.0:7443/agent/v1");
    router_ = new http::Router;
    registry_ = new metrics::Registry;
    hub::add_health_routes(*router_, *pool_, *registry_, false);
    api::add_api_routes(*router_, *services_);
    agents::add_agent_routes(*router_, *services_, *agents_);
    config::ApiConfig api;
    api.listen = {"127.0.0.1", 0};
    server_ = new http::Server({api, files->cert_file, files->key_file}, *router_, *registry_);
    auto port = server_->start();
    ASSERT_TRUE(port.ok());
    base_ = "https://127.0.0.1:" + std::to_string(*port);

    client_1_ = make("/clients", {{"name", "Client One"}});
    client_2_ = make("/clients", {{"name", "Client Two"}});
    site_1_ = make("/clients/" + client_1_ + "/sites", {{"name", "HQ"}});
    site_2_ = make("/clients/" + client_2_ + "/sites", {{"name", "Branch"}});
  }

  static void TearDownTestSuite() {
    server_->stop();
    agents_->stop();
    pool_->stop();
    delete server_;
    delete registry_;
    delete router_;
    delete agents_;
    delete link_;
    delete services_;
    delete cpu_;
    delete auth_;
    delete pool_;
    pg_->stop();
    delete pg_;
    delete dir_;
  }

  static std::string session(pqxx::work& tx, const std::string& org, const std::string& email,
                             const std::string& role) {
    const auto tech = tx.exec_params1(
                            "INSERT INTO technicians (org_id, email, role, password_hash)"
                            " VALUES ($1, $2, $3, 'x') RETURNING id::text",
                            org, email, role)[0]
                          .as<std::string>();
    const auto token = auth::new_token(auth::kSessionTokenPrefix);
    tx.exec_params(
        "INSERT INTO sessions (token_hash, org_id, technician_id, absolute_expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 day')",
        pqxx::binarystring(auth::token_hash(token)), org, tech);
    return token;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = ca_file_;
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(base_ + path, o);
  }

  static std::string org_path(const std::string& rest) { return "/api/v1/orgs/" + org_a_ + rest; }

  static std::string make(const std::string& rest, const json& body) {
    auto r = call("POST", org_path(rest), tokens_.at("owner"), body);
    EXPECT_EQ(r.status, 201) << rest << ": " << r.body;
    return json::parse(r.body).value("id", "");
  }

  static json new_key(const std::string& client, const std::string& site, int uses = 1,
                      int expires_in_s = 3600) {
    auto r = call(
        "POST", org_path("/enrollment-keys"), tokens_.at("admin"),
        {{"client_id", client}, {"site_id", site}, {"uses", uses}, {"expires_in_s", expires_in_s}});
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body);
  }

  static json enroll_body(const std::string& key, const std::string& machine_id) {
    return {{"enrollment_key", key},   {"hostname", "host-" + machine_id},
            {"os", "linux"},           {"os_version", "12"},
            {"arch", "x86_64"},        {"machine_id", machine_id},
            {"agent_version", "1.0.0"}};
  }

  static HttpResponse enroll(const std::string& key, const std::string& machine_id) {
    return call("POST", "/api/v1/agent/enroll", "", enroll_body(key, machine_id));
  }

  // A freshly enrolled device in client 1: {device_id, device_token}.
  static json new_device(const std::string& machine_id) {
    auto key = new_key(client_1_, site_1_);
    auto r = enroll(key["key"], machine_id);
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body);
  }

  static HttpResponse command(const std::string& device_id, const json& body,
                              const std::string& role = "admin") {
    return call("POST", org_path("/devices/" + device_id + "/commands"), tokens_.at(role), body);
  }

  static json get_command(const std::string& id) {
    auto r = call("GET", org_path("/commands/" + id), tokens_.at("admin"));
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  static inline TempDir* dir_ = nullptr;
  static inline storage::EmbeddedPostgres* pg_ = nullptr;
  static inline storage::DbPool* pool_ = nullptr;
  static inline auth::AuthService* auth_ = nullptr;
  static inline TaskPool* cpu_ = nullptr;
  static inline api::Services* services_ = nullptr;
  static inline agents::AgentService* agents_ = nullptr;
  static inline FakeLink* link_ = nullptr;
  static inline http::Router* router_ = nullptr;
  static inline metrics::Registry* registry_ = nullptr;
  static inline http::Server* server_ = nullptr;
  static inline std::string ca_file_, base_, org_a_, org_b_;
  static inline std::string client_1_, client_2_, site_1_, site_2_;
  static inline std::map<std::string, std::string> tokens_;
};

// ---- enrollment keys ----

TEST_F(AgentHub, EnrollmentKeyIsShownOnceAndListedWithItsMetadataOnly) {
  const auto key = new_key(client_1_, site_1_, 3);
  const std::string secret = key["key"];
  EXPECT_EQ(secret.rfind("hek_", 0), 0u);
  EXPECT_GE(secret.size(), 4u + 43u);  // 256 bits in base64url
  EXPECT_EQ(key["uses"], 3);
  EXPECT_EQ(key["uses_left"], 3);
  EXPECT_EQ(key["client_id"], client_1_);
  auto list = call("GET", org_path("/enrollment-keys?limit=500"), tokens_.at("admin"));
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.body.find(secret), std::string::npos) << "the key must never be listed";
  bool found = false;
  const auto listed = json::parse(list.body);
  for (const auto& item : listed["items"]) {
    EXPECT_FALSE(item.contains("key"));
    if (item["id"] == key["id"]) {
      found = true;
      EXPECT_EQ(item["uses_left"], 3);
      EXPECT_EQ(item["revoked"], false);
      EXPECT_TRUE(item["last_used_at"].is_null());
    }
  }
  EXPECT_TRUE(found) << list.body;
}

TEST_F(AgentHub, EnrollmentKeysPageWithACursor) {
  for (int i = 0; i < 3; ++i)
    new_key(client_2_, site_2_);
  auto first =
      json::parse(call("GET", org_path("/enrollment-keys?limit=2"), tokens_.at("admin")).body);
  ASSERT_EQ(first["items"].size(), 2u);
  ASSERT_TRUE(first["next_cursor"].is_string());
  auto second = json::parse(
      call("GET",
           org_path("/enrollment-keys?limit=2&cursor=" + first["next_cursor"].get<std::string>()),
           tokens_.at("admin"))
          .body);
  ASSERT_FALSE(second["items"].empty());
  EXPECT_GT(second["items"][0]["id"].get<std::string>(),
            first["items"][1]["id"].get<std::string>());
}

TEST_F(AgentHub, EnrollmentKeyPlacementIsCheckedAndNamesTheField) {
  auto wrong_site = call("POST", org_path("/enrollment-keys"), tokens_.at("admin"),
                         {{"client_id", client_1_}, {"site_id", site_2_}});
  EXPECT_EQ(wrong_site.status, 422) << wrong_site.body;
  EXPECT_NE(wrong_site.body.find("/site_id"), std::string::npos) << wrong_site.body;

  auto unknown_client =
      call("POST", org_path("/enrollment-keys"), tokens_.at("admin"),
           {{"client_id", "00000000-0000-4000-8000-000000000001"}, {"site_id", site_1_}});
  EXPECT_EQ(unknown_client.status, 422);
  EXPECT_NE(unknown_client.body.find("/client_id"), std::string::npos) << unknown_client.body;

  auto malformed = call("POST", org_path("/enrollment-keys"), tokens_.at("admin"),
                        {{"client_id", "nope"}, {"uses", 0}});
  EXPECT_EQ(malformed.status, 400);
  const auto errors = json::parse(malformed.body)["errors"].dump();
  for (const char* field : {"/client_id", "/site_id", "/uses"}) {
    EXPECT_NE(errors.find(field), std::string::npos) << field << " in " << errors;
  }
}

TEST_F(AgentHub, EnrollmentKeyRoutesAreForAdminsOfTheirOwnOrganization) {
  const json body = {{"client_id", client_1_}, {"site_id", site_1_}};
  EXPECT_EQ(call("POST", org_path("/enrollment-keys"), tokens_.at("technician"), body).status, 403);
  EXPECT_EQ(call("GET", org_path("/enrollment-keys"), tokens_.at("technician")).status, 403);
  EXPECT_EQ(call("POST", org_path("/enrollment-keys"), tokens_.at("owner_b"), body).status, 404);
  EXPECT_EQ(call("POST", "/api/v1/orgs/" + org_b_ + "/enrollment-keys", tokens_.at("owner_b"), body)
                .status,
            422);  // org A's client is nothing in org B
  EXPECT_EQ(call("POST", org_path("/enrollment-keys"), "", body).status, 401);
}

// ---- enrollment ----

TEST_F(AgentHub, EnrollAnswersDeviceTokenAndTheTransportUrlWithTheRequestHost) {
  const auto key = new_key(client_1_, site_1_);
  auto r = enroll(key["key"], "machine-enroll");
  ASSERT_EQ(r.status, 201) << r.body;
  const auto body = json::parse(r.body);
  const std::string token = body["device_token"];
  EXPECT_EQ(token.rfind("hdt_", 0), 0u);
  EXPECT_GE(token.size(), 4u + 43u);
  EXPECT_TRUE(api::is_uuid(body["device_id"].get<std::string>()));
  EXPECT_EQ(body["transport_url"], "wss://127.0.0.1:7443/agent/v1");
  EXPECT_EQ(body["heartbeat_s"], 30);

  auto device = call("GET", org_path("/devices/" + body["device_id"].get<std::string>()),
                     tokens_.at("admin"));
  ASSERT_EQ(device.status, 200) << device.body;
  const auto d = json::parse(device.body);
  EXPECT_EQ(d["hostname"], "host-machine-enroll");
  EXPECT_EQ(d["client_id"], client_1_);
  EXPECT_EQ(d["site_id"], site_1_);
  EXPECT_EQ(d["online"], false);
  EXPECT_EQ(d["agent_version"], "1.0.0");

  auto keys =
      json::parse(call("GET", org_path("/enrollment-keys?limit=500"), tokens_.at("admin")).body);
  for (const auto& item : keys["items"]) {
    if (item["id"] != key["id"]) continue;
    EXPECT_EQ(item["uses_left"], 0);
    EXPECT_TRUE(item["last_used_at"].is_string());
  }
}

TEST_F(AgentHub, UsedUpExpiredRevokedAndUnknownKeysGetOneGeneric401) {
  const auto two = new_key(client_1_, site_1_, 2);
  EXPECT_EQ(enroll(two["key"], "m-two-1").status, 201);
  EXPECT_EQ(enroll(two["key"], "m-two-2").status, 201);
  const auto used_up = enroll(two["key"], "m-two-3");

  const auto revoked_key = new_key(client_1_, site_1_);
  EXPECT_EQ(call("DELETE", org_path("/enrollment-keys/" + revoked_key["id"].get<std::string>()),
                 tokens_.at("admin"))
                .status,
            204);
  const auto revoked = enroll(revoked_key["key"], "m-revoked");

  const auto short_key = new_key(client_1_, site_1_, 1, 1);
  std::this_thread::sleep_for(1500ms);
  const auto expired = enroll(short_key["key"], "m-expired");

  const auto unknown = enroll(auth::new_token("hek_"), "m-unknown");
  for (const auto* r : {&used_up, &revoked, &expired, &unknown}) {
    EXPECT_EQ(r->status, 401) << r->body;
    EXPECT_EQ(r->body, unknown.body) << "no oracle: every refused key gets the same answer";
  }
  EXPECT_EQ(call("DELETE", org_path("/enrollment-keys/00000000-0000-4000-8000-000000000009"),
                 tokens_.at("admin"))
                .status,
            404);
}

TEST_F(AgentHub, ConcurrentEnrollmentsTakeAKeysUsesExactlyOnceEach) {
  const auto key = new_key(client_2_, site_2_, 3);
  std::vector<std::future<long>> attempts;
  for (int i = 0; i < 6; ++i) {
    attempts.push_back(std::async(std::launch::async, [&key, i] {
      return enroll(key["key"], "m-race-" + std::to_string(i)).status;
    }));
  }
  int created = 0, refused = 0;
  for (auto& a : attempts) {
    const long status = a.get();
    created += status == 201;
    refused += status == 401;
  }
  EXPECT_EQ(created, 3);
  EXPECT_EQ(refused, 3);
}

TEST_F(AgentHub, MalformedEnrollmentIs400NamingEachField) {
  auto r = call("POST", "/api/v1/agent/enroll", "", {{"hostname", 7}});
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.headers["content-type"], "application/problem+json");
  const auto errors = json::parse(r.body)["errors"].dump();
  for (const char* field : {"/enrollment_key", "/hostname", "/os", "/os_version", "/arch",
                            "/machine_id", "/agent_version"}) {
    EXPECT_NE(errors.find(field), std::string::npos) << field << " in " << errors;
  }
  EXPECT_EQ(call("POST", "/api/v1/agent/enroll", "", "not an object").status, 400);
}

TEST_F(AgentHub, ReEnrollingAMachineReplacesItsTokenAndClosesTheOldConnection) {
  const auto first = new_device("machine-re");
  const std::string device = first["device_id"];
  ASSERT_EQ(authenticate(*agents_, first["device_token"]).status, HELM_STATUS_OK);
  link_->set_online(device, true);
  agents_->device_connected(101, device, R"({"t":"hello"})");

  const auto second = new_device("machine-re");
  EXPECT_EQ(second["device_id"], device) << "same machine, same organization: same device";
  EXPECT_NE(second["device_token"], first["device_token"]);
  EXPECT_EQ(authenticate(*agents_, first["device_token"]).status, HELM_STATUS_UNAUTHORIZED);
  EXPECT_EQ(authenticate(*agents_, second["device_token"]).status, HELM_STATUS_OK);
  EXPECT_EQ(link_->close_codes_for(device), std::vector<std::uint16_t>{4001});

  int copies = 0;
  auto list = json::parse(call("GET", org_path("/devices?limit=500"), tokens_.at("admin")).body);
  for (const auto& item : list["items"])
    copies += item["machine_id"] == "machine-re";
  EXPECT_EQ(copies, 1);
  agents_->device_disconnected(101, device);
}

// ---- devices ----

TEST_F(AgentHub, DeviceListIsFilteredByTheAclPolicy) {
  const auto in_one = new_device("machine-acl-1");
  const auto key_two = new_key(client_2_, site_2_);
  auto r = enroll(key_two["key"], "machine-acl-2");
  ASSERT_EQ(r.status, 201);
  const auto in_two = json::parse(r.body);

  auto ids = [](const HttpResponse& response) {
    std::set<std::string> out;
    const auto listed = json::parse(response.body);
    for (const auto& item : listed["items"])
      out.insert(item["id"].get<std::string>());
    return out;
  };
  const auto admin_sees = ids(call("GET", org_path("/devices?limit=500"), tokens_.at("admin")));
  EXPECT_TRUE(admin_sees.count(in_one["device_id"]))
      << call("GET", org_path("/devices?limit=500"), tokens_.at("admin")).body;
  EXPECT_TRUE(admin_sees.count(in_two["device_id"]));

  // Deny by default: no policy, no devices.
  EXPECT_TRUE(ids(call("GET", org_path("/devices"), tokens_.at("technician"))).empty());

  {
    pqxx::connection conn(pg_->connection_string());
    pqxx::work tx(conn);
    const json policy = {
        {"targets", {{"one", {{"clients", {client_1_}}}}}},
        {"rules", {{{"technicians", {"technician@a.test"}}, {"targets", {"one"}}}}}};
    tx.exec_params("INSERT INTO acl_policies (org_id, policy) VALUES ($1, $2::jsonb)", org_a_,
                   policy.dump());
    tx.commit();
  }
  const auto tech_sees = ids(call("GET", org_path("/devices?limit=500"), tokens_.at("technician")));
  EXPECT_TRUE(tech_sees.count(in_one["device_id"]));
  EXPECT_FALSE(tech_sees.count(in_two["device_id"]));
  EXPECT_EQ(call("GET", org_path("/devices/" + in_two["device_id"].get<std::string>()),
                 tokens_.at("technician"))
                .status,
            403);
  EXPECT_EQ(command(in_two["device_id"], {{"kind", "ping"}}, "technician").status, 403);
  const auto mine = command(in_one["device_id"], {{"kind", "ping"}}, "technician");
  ASSERT_EQ(mine.status, 202) << mine.body;
  // A command is seen through its device: within reach 200, out of reach 403 (waiting or not),
  // though an admin sees it; another organization's is a 404 (tested below).
  const auto mine_id = json::parse(mine.body)["id"].get<std::string>();
  auto read = call("GET", org_path("/commands/" + mine_id), tokens_.at("technician"));
  EXPECT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(json::parse(read.body)["device_id"], in_one["device_id"]);
  const auto theirs = command(in_two["device_id"], {{"kind", "ping"}});
  ASSERT_EQ(theirs.status, 202) << theirs.body;
  const auto theirs_id = json::parse(theirs.body)["id"].get<std::string>();
  EXPECT_EQ(call("GET", org_path("/commands/" + theirs_id), tokens_.at("technician")).status, 403);
  EXPECT_EQ(call("GET", org_path("/commands/" + theirs_id + "?wait_s=1"), tokens_.at("technician"))
                .status,
            403);
  EXPECT_EQ(
      call("GET", org_path("/devices/" + in_two["device_id"].get<std::string>() + "/commands"),
           tokens_.at("technician"))
          .status,
      403);
  EXPECT_EQ(get_command(theirs_id)["state"], "queued");
  EXPECT_EQ(call("GET", org_path("/devices"), tokens_.at("readonly")).status, 403);
  EXPECT_EQ(call("GET", org_path("/devices"), tokens_.at("owner_b")).status, 404);

  pqxx::connection conn(pg_->connection_string());
  pqxx::work tx(conn);
  tx.exec_params("DELETE FROM acl_policies WHERE org_id = $1", org_a_);
  tx.commit();
}

TEST_F(AgentHub, DeletingADeviceRevokesItsTokenAndClosesItsConnectionWith4001) {
  const auto d = new_device("machine-delete");
  const std::string device = d["device_id"];
  link_->set_online(device, true);
  agents_->device_connected(201, device, R"({"t":"hello"})");
  EXPECT_EQ(call("DELETE", org_path("/devices/" + device), tokens_.at("technician")).status, 403);
  EXPECT_EQ(call("DELETE", org_path("/devices/" + device), tokens_.at("admin")).status, 204);
  EXPECT_EQ(link_->close_codes_for(device), std::vector<std::uint16_t>{4001});
  EXPECT_EQ(authenticate(*agents_, d["device_token"]).status, HELM_STATUS_UNAUTHORIZED);
  EXPECT_EQ(call("GET", org_path("/devices/" + device), tokens_.at("admin")).status, 404);
  EXPECT_EQ(call("DELETE", org_path("/devices/" + device), tokens_.at("admin")).status, 404);
}

TEST_F(AgentHub, ADeviceDeletedWithItsClientLosesItsConnectionToo) {
  const auto d = new_device("machine-cascade");
  const std::string device = d["device_id"];
  link_->set_online(device, true);
  agents_->device_connected(251, device, "{}");
  {
    pqxx::connection conn(pg_->connection_string());
    pqxx::work tx(conn);
    tx.exec_params("DELETE FROM devices WHERE id = $1", device);  // as a client's cascade does
    tx.commit();
  }
  EXPECT_TRUE(eventually(
      [&] { return link_->close_codes_for(device) == std::vector<std::uint16_t>{4001}; }, 4000ms));
}

// ---- commands ----

TEST_F(AgentHub, CommandToAnOfflineDeviceIsQueuedThenExpiresAtItsDeadline) {
  const auto d = new_device("machine-offline");
  auto r = command(d["device_id"], {{"kind", "ping"}, {"deadline_s", 1}});
  ASSERT_EQ(r.status, 202) << r.body;
  const auto created = json::parse(r.body);
  EXPECT_EQ(created["state"], "queued");
  EXPECT_TRUE(api::is_uuid(created["id"].get<std::string>()));
  EXPECT_EQ(get_command(created["id"])["state"], "queued");
  EXPECT_TRUE(eventually([&] { return get_command(created["id"])["state"] == "expired"; }, 4000ms));

  // An expired command is not delivered when the device shows up.
  link_->set_online(d["device_id"], true);
  agents_->device_connected(301, d["device_id"], "{}");
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(link_->frames_for(d["device_id"]).empty());
  agents_->device_disconnected(301, d["device_id"]);
}

TEST_F(AgentHub, CommandsAreValidatedByKind) {
  const auto d = new_device("machine-validate");
  const std::string device = d["device_id"];
  auto unknown = command(device, {{"kind", "format_disk"}});
  EXPECT_EQ(unknown.status, 422);
  EXPECT_NE(unknown.body.find("/kind"), std::string::npos);
  auto script = command(device, {{"kind", "run_script"}, {"args", {{"interpreter", "bash"}}}});
  EXPECT_EQ(script.status, 422);
  EXPECT_NE(script.body.find("/args/script"), std::string::npos) << script.body;
  EXPECT_NE(script.body.find("/args/timeout_s"), std::string::npos) << script.body;
  EXPECT_EQ(command(device,
                    {{"kind", "run_script"},
                     {"args", {{"interpreter", "bash"}, {"script", "echo hi"}, {"timeout_s", 30}}}})
                .status,
            202);
  EXPECT_EQ(command(device, {{"args", 5}}).status, 400);
  EXPECT_EQ(command(device, {{"kind", "ping"}}, "readonly").status, 403);
  EXPECT_EQ(command("00000000-0000-4000-8000-000000000001", {{"kind", "ping"}}).status, 404);
  EXPECT_EQ(call("POST", "/api/v1/orgs/" + org_a_ + "/devices/" + device + "/commands",
                 tokens_.at("owner_b"), {{"kind", "ping"}})
                .status,
            404);
}

// ---- the TransportHost seam ----

TEST_F(AgentHub, AuthenticateAnswersLaterOnAnotherThread) {
  const auto d = new_device("machine-auth");
  const auto good = authenticate(*agents_, d["device_token"]);
  ASSERT_EQ(good.status, HELM_STATUS_OK) << good.body.dump();
  EXPECT_TRUE(good.other_thread);
  EXPECT_EQ(good.body["device_id"], d["device_id"]);
  EXPECT_EQ(good.body["organization_id"], org_a_);
  EXPECT_EQ(good.body["heartbeat_s"], 30);
  EXPECT_EQ(authenticate(*agents_, "hdt_" + std::string(43, 'A')).status, HELM_STATUS_UNAUTHORIZED);
  const auto malformed = authenticate(*agents_, "not a token");
  EXPECT_EQ(malformed.status, HELM_STATUS_UNAUTHORIZED);
  EXPECT_TRUE(malformed.other_thread);
}

// A reconnect storm: token checks and hellos from many threads at once are answered in
// batches, and every agent still gets its own answer and only its own commands.
TEST_F(AgentHub, ConcurrentTokenChecksAndHellosEachGetTheirOwnAnswer) {
  constexpr int kDevices = 24;
  std::vector<json> devices;
  std::vector<std::string> command_of;
  for (int i = 0; i < kDevices; ++i) {
    devices.push_back(new_device("machine-storm-" + std::to_string(i)));
    auto r = command(devices.back()["device_id"], {{"kind", "ping"}});
    ASSERT_EQ(r.status, 202) << r.body;
    command_of.push_back(json::parse(r.body)["id"]);
  }
  std::vector<AuthAnswer> answers(kDevices * 2);
  std::vector<std::thread> threads;
  for (int i = 0; i < kDevices * 2; ++i) {
    threads.emplace_back([&, i] {
      // Odd ones send a well-formed token nobody issued.
      const std::string token = i % 2 == 0
                                    ? devices[i / 2]["device_token"].get<std::string>()
                                    : "hdt_" + std::string(43, static_cast<char>('a' + i % 26));
      answers[i] = authenticate(*agents_, token);
    });
  }
  for (auto& t : threads)
    t.join();
  threads.clear();
  for (int i = 0; i < kDevices * 2; ++i) {
    if (i % 2 == 0) {
      ASSERT_EQ(answers[i].status, HELM_STATUS_OK) << i;
      EXPECT_EQ(answers[i].body["device_id"], devices[i / 2]["device_id"]) << i;
      EXPECT_TRUE(answers[i].other_thread);
    } else {
      EXPECT_EQ(answers[i].status, HELM_STATUS_UNAUTHORIZED) << i;
    }
  }

  // Hellos at once, one of them odd (NUL, a name longer than the column takes, cut inside a
  // multi-byte character): it must not fail the batch it shares with the others.
  for (int i = 0; i < kDevices; ++i)
    link_->set_online(devices[i]["device_id"], true);
  for (int i = 0; i < kDevices; ++i) {
    threads.emplace_back([&, i] {
      json hello = {{"t", "hello"}, {"hostname", "storm-" + std::to_string(i)}};
      if (i == 0)
        hello["hostname"] = std::string("a\0b", 3) + std::string(252, 'x') + "\u00e9\u00e9";
      agents_->device_connected(600 + i, devices[i]["device_id"], hello.dump());
    });
  }
  for (auto& t : threads)
    t.join();
  for (int i = 0; i < kDevices; ++i) {
    const std::string device = devices[i]["device_id"];
    ASSERT_TRUE(eventually([&] { return link_->frames_for(device).size() == 1; })) << i;
    EXPECT_EQ(link_->frames_for(device)[0]["id"], command_of[i]) << i;
  }
  for (int i = 0; i < kDevices; ++i)
    EXPECT_TRUE(eventually([&] { return get_command(command_of[i])["state"] == "sent"; })) << i;
  const auto odd =
      json::parse(call("GET", org_path("/devices/" + devices[0]["device_id"].get<std::string>()),
                       tokens_.at("admin"))
                      .body);
  const std::string name = odd["hostname"];
  EXPECT_EQ(name.substr(0, 2), "ab");
  EXPECT_LE(name.size(), 255u);
  EXPECT_EQ(name.size(), 254u) << "cut before the first é, which would not fit whole";
  EXPECT_NO_THROW((void)json(name).dump()) << "valid UTF-8";
  const auto other =
      json::parse(call("GET", org_path("/devices/" + devices[5]["device_id"].get<std::string>()),
                       tokens_.at("admin"))
                      .body);
  EXPECT_EQ(other["hostname"], "storm-5");
  for (int i = 0; i < kDevices; ++i) {
    link_->set_online(devices[i]["device_id"], false);
    agents_->device_disconnected(600 + i, devices[i]["device_id"]);
  }
}

TEST_F(AgentHub, ConnectPushesPendingCommandsInOrderAndAckAndResultMoveThemOn) {
  const auto d = new_device("machine-outbox");
  const std::string device = d["device_id"];
  std::vector<std::string> ids;
  for (const char* kind : {"ping", "inventory", "ping"}) {
    auto r = command(device, {{"kind", kind}});
    ASSERT_EQ(r.status, 202);
    EXPECT_EQ(json::parse(r.body)["state"], "queued");
    ids.push_back(json::parse(r.body)["id"]);
  }
  link_->set_online(device, true);
  agents_->device_connected(401, device, R"({"t":"hello","hostname":"renamed"})");
  ASSERT_TRUE(eventually([&] { return link_->frames_for(device).size() == 3; }));
  const auto frames = link_->frames_for(device);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(frames[i]["t"], "cmd");
    EXPECT_EQ(frames[i]["id"], ids[i]) << "creation order";
    EXPECT_TRUE(frames[i]["args"].is_object());
    EXPECT_TRUE(frames[i]["deadline"].get<std::string>().ends_with("Z"));
  }
  EXPECT_EQ(frames[1]["kind"], "inventory");
  EXPECT_TRUE(eventually([&] { return get_command(ids[0])["state"] == "sent"; }));

  agents_->device_frame(401, device, json{{"t", "ack"}, {"id", ids[0]}}.dump());
  agents_->device_frame(401, device,
                        json{{"t", "result"},
                             {"id", ids[1]},
                             {"status", "ok"},
                             {"exit_code", 0},
                             {"stdout", "out"},
                             {"stderr", ""},
                             {"data", {{"cpu", "x"}}}}
                            .dump());
  agents_->device_frame(401, device, R"({"t":"ack","id":"00000000-0000-4000-8000-00000000abcd"})");
  agents_->device_frame(
      401, device, R"({"t":"event","kind":"inventory","data":{"hostname":"inv-host","cpus":4}})");
  EXPECT_TRUE(eventually([&] { return get_command(ids[0])["state"] == "acked"; }));
  ASSERT_TRUE(eventually([&] { return get_command(ids[1])["state"] == "done"; }));
  const auto done = get_command(ids[1]);
  EXPECT_EQ(done["result"]["status"], "ok");
  EXPECT_EQ(done["result"]["exit_code"], 0);
  EXPECT_EQ(done["result"]["stdout"], "out");
  EXPECT_EQ(done["result"]["data"]["cpu"], "x");
  EXPECT_EQ(get_command(ids[2])["state"], "sent");

  EXPECT_TRUE(eventually([&] {
    auto dev = json::parse(call("GET", org_path("/devices/" + device), tokens_.at("admin")).body);
    return dev["hostname"] == "inv-host" && dev["facts"]["cpus"] == 4 && dev["online"] == true &&
           dev["last_seen"].is_string();
  }));

  const auto listed = json::parse(
      call("GET", org_path("/devices/" + device + "/commands"), tokens_.at("admin")).body);
  ASSERT_EQ(listed["items"].size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(listed["items"][i]["id"], ids[i]) << "oldest first";

  // Reconnect: everything not acked yet goes again, acked and done ones do not.
  agents_->device_disconnected(401, device);
  agents_->device_connected(402, device, "{}");
  ASSERT_TRUE(eventually([&] { return link_->frames_for(device).size() == 4; }));
  std::this_thread::sleep_for(200ms);
  const auto again = link_->frames_for(device);
  ASSERT_EQ(again.size(), 4u);
  EXPECT_EQ(again[3]["id"], ids[2]);
  EXPECT_EQ(get_command(ids[2])["send_count"], 2);

  // Connected: a new command goes out at once.
  auto now = command(device, {{"kind", "ping"}});
  ASSERT_EQ(now.status, 202);
  EXPECT_EQ(json::parse(now.body)["state"], "sent");
  EXPECT_EQ(link_->frames_for(device).back()["id"], json::parse(now.body)["id"]);
  agents_->device_disconnected(402, device);
}

// GET .../commands/{id}?wait_s=N answers when the result arrives (or the command expires, or
// the N seconds pass), so a client sees a result without polling.
TEST_F(AgentHub, WaitingForACommandAnswersWhenItsResultArrives) {
  const auto d = new_device("machine-wait");
  const std::string device = d["device_id"];
  link_->set_online(device, true);
  agents_->device_connected(801, device, "{}");
  auto posted = command(device, {{"kind", "ping"}});
  ASSERT_EQ(posted.status, 202) << posted.body;
  const std::string id = json::parse(posted.body)["id"];
  const std::string path = org_path("/commands/" + id);

  const auto started = std::chrono::steady_clock::now();
  std::thread agent([&] {
    std::this_thread::sleep_for(400ms);
    agents_->device_frame(801, device,
                          json{{"t", "result"},
                               {"id", id},
                               {"status", "ok"},
                               {"exit_code", 0},
                               {"data", {{"pong", true}}}}
                              .dump());
  });
  auto waited = call("GET", path + "?wait_s=10", tokens_.at("admin"));
  const auto took = std::chrono::steady_clock::now() - started;
  agent.join();
  ASSERT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(json::parse(waited.body)["state"], "done") << waited.body;
  EXPECT_EQ(json::parse(waited.body)["result"]["data"]["pong"], true);
  EXPECT_GE(took, 350ms) << "it waited for the result";
  EXPECT_LT(took, 3s) << "and answered when it came, not at the end of wait_s";

  // Already done: at once.
  const auto again_at = std::chrono::steady_clock::now();
  EXPECT_EQ(json::parse(call("GET", path + "?wait_s=10", tokens_.at("admin")).body)["state"],
            "done");
  EXPECT_LT(std::chrono::steady_clock::now() - again_at, 1s);
  EXPECT_EQ(agents_->command_waiters(), 0u) << "an answered wait leaves nothing behind";

  // Nothing arrives: the state as it is once wait_s has passed.
  agents_->device_disconnected(801, device);
  link_->set_online(device, false);
  auto queued = command(device, {{"kind", "ping"}});
  const std::string queued_id = json::parse(queued.body)["id"];
  const auto quiet_at = std::chrono::steady_clock::now();
  auto quiet = call("GET", org_path("/commands/" + queued_id) + "?wait_s=1", tokens_.at("admin"));
  EXPECT_EQ(json::parse(quiet.body)["state"], "queued") << quiet.body;
  EXPECT_GE(std::chrono::steady_clock::now() - quiet_at, 900ms);
  EXPECT_LT(std::chrono::steady_clock::now() - quiet_at, 4s);

  // Its deadline passes while a client waits: answered with `expired`, before wait_s is over.
  auto short_lived = command(device, {{"kind", "ping"}, {"deadline_s", 1}});
  const std::string short_id = json::parse(short_lived.body)["id"];
  const auto expiry_at = std::chrono::steady_clock::now();
  auto expired = call("GET", org_path("/commands/" + short_id) + "?wait_s=20", tokens_.at("admin"));
  EXPECT_EQ(json::parse(expired.body)["state"], "expired") << expired.body;
  EXPECT_LT(std::chrono::steady_clock::now() - expiry_at, 5s);

  for (const char* bad : {"31", "-1", "soon", ""}) {
    auto refused = call("GET", path + "?wait_s=" + bad, tokens_.at("admin"));
    EXPECT_EQ(refused.status, 400) << bad << " " << refused.body;
  }
  // Another organization's command stays a 404, waiting or not.
  EXPECT_EQ(
      call("GET", "/api/v1/orgs/" + org_b_ + "/commands/" + id + "?wait_s=1", tokens_.at("owner_b"))
          .status,
      404);
}

TEST_F(AgentHub, AnOldConnectionsDisconnectDoesNotTakeANewerOneOffline) {
  const auto d = new_device("machine-twice");
  const std::string device = d["device_id"];
  auto online = [&] {
    return json::parse(call("GET", org_path("/devices/" + device), tokens_.at("admin")).body)
        .value("online", false);
  };
  agents_->device_connected(501, device, "{}");
  agents_->device_connected(502, device, "{}");
  agents_->device_disconnected(501, device);
  EXPECT_TRUE(online());
  agents_->device_disconnected(502, device);
  EXPECT_FALSE(online());
}

TEST_F(AgentHub, TransportSettingsNameTheApiCertificate) {
  const auto settings = json::parse(agents_->transport_settings());
  EXPECT_EQ(settings["tls_cert_file"], ca_file_);
  EXPECT_FALSE(settings["tls_key_file"].get<std::string>().empty());
  EXPECT_EQ(settings["heartbeat_s"], 30);
  EXPECT_EQ(settings["max_frame_bytes"], 1048576);
}

TEST_F(AgentHub, EveryAgentRouteIsDocumented) {
  EXPECT_EQ(api::undocumented_routes(*router_), std::vector<std::string>{});
  EXPECT_EQ(api::documented_but_not_served(*router_), std::vector<std::string>{});
}

// ---- without the shared hub ----

TEST(AgentServiceAlone, DeviceTokenChecksAreUnavailableWhileTheDatabaseIsDown) {
  TempDir dir("helm-agents-down");
  auto pg = storage::EmbeddedPostgres::start({.data_dir = dir.path(), .supervise = false});
  ASSERT_TRUE(pg.ok());
  {
    pqxx::connection conn((*pg)->connection_string());
    ASSERT_TRUE(storage::apply_migrations(conn, storage::builtin_migrations()).ok());
  }
  storage::DbPool pool({.conninfo = (*pg)->connection_string(), .size = 1});
  agents::AgentService service(pool, {});
  ASSERT_TRUE(service.start().ok());
  const auto token = auth::new_token(agents::kDeviceTokenPrefix);
  EXPECT_EQ(authenticate(service, token).status, HELM_STATUS_UNAUTHORIZED);
  (*pg)->stop();
  const auto down = authenticate(service, token);
  EXPECT_EQ(down.status, HELM_STATUS_UNAVAILABLE) << down.body.dump();
  service.stop();
  pool.stop();
}

TEST(AgentServiceAlone, EnrollmentRateLimitIsPerAddressWithARetryAfter) {
  storage::DbPool pool({.conninfo = "", .size = 0});
  agents::AgentService service(pool, {.enroll_per_s = 0.5, .enroll_burst = 3});
  int retry = 0;
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(service.admit_enrollment("10.0.0.1", retry)) << i;
  EXPECT_FALSE(service.admit_enrollment("10.0.0.1", retry));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 2);
  EXPECT_TRUE(service.admit_enrollment("10.0.0.2", retry)) << "another address has its own bucket";
}

TEST(AgentServiceAlone, TransportUrlGetsTheRequestHostOnlyWhenItsOwnIsUnspecific) {
  storage::DbPool pool({.conninfo = "", .size = 0});
  agents::AgentService service(pool, {});
  EXPECT_FALSE(service.transport_url_for("hub.example:8443"));
  service.transport_listening("wss://[::]:7443/agent/v1");
  EXPECT_EQ(service.transport_url_for("hub.example:8443"), "wss://hub.example:7443/agent/v1");
  EXPECT_EQ(service.transport_url_for("[2001:db8::1]:8443"), "wss://[2001:db8::1]:7443/agent/v1");
  service.transport_listening("wss://agents.example:443/agent/v1");
  EXPECT_EQ(service.transport_url_for("hub.example"), "wss://agents.example:443/agent/v1");
}

}  // namespace
}  // namespace helm::test
