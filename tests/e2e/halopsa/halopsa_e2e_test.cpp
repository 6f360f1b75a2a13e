// psa-halopsa end to end: the real helm-hub (over real PostgreSQL) loads the real plugin (signed
// with this build's development key) and reaches tests/fakes/halopsa/fake_halopsa.py over real
// TLS, with the fake's own CA given to the plugin as the organization's ca_pem — exactly as a
// self-hosted HaloPSA would be configured. Covers the operations (paging, writes, notes,
// clients), the OAuth2 token (cache, refresh, per-organization credentials), the refusals
// (session, grant, ACL, organization) and the vendor's faults (bad secret, 429, 5xx, slowness,
// garbage), and that neither the secret nor the access token reaches a technician or the log.

#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fake_vendor.hpp"
#include "helm/http/tls_files.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kPassword = "owner password 123";
constexpr const char* kPlugin = "psa-halopsa";
// Characters that need form encoding, so the test sees the plugin encode them.
constexpr const char* kSecretA = "A-secret+/=&%?zq9";
constexpr const char* kSecretB = "B-secret!*'() x7";
constexpr const char* kClientA = "org-a-client";
constexpr const char* kClientB = "org-b-client";

std::string form_encode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

/// fake_halopsa.py on loopback with the test's certificate (its own CA).
class FakeHalo : public FakeVendor {
 public:
  FakeHalo(const std::string& cert, const std::string& key, const std::vector<std::string>& args)
      : FakeVendor(HALOPSA_FAKE, cert, key, args) {}
  std::string base() const { return base_url(); }
  /// Forgets recorded requests and injected faults; with `tokens`, every issued token too.
  void reset(bool tokens = false) const { FakeVendor::reset({{"tokens", tokens}}); }
};

/// The plugin's state on `hub` ("running" when it loaded), with its last error after a colon.
std::string plugin_state(HubProcess& hub, const std::string& token) {
  HttpRequestOptions o;
  o.ca_file = hub.ca_file();
  o.headers = {"Authorization: Bearer " + token};
  const json b =
      json::parse(https(hub.base_url() + "/api/v1/plugins/" + kPlugin, o).body, nullptr, false);
  if (!b.is_object()) return "unknown";
  const std::string state = b.value("state", "");
  return state == "running" ? state : state + ": " + b.value("last_error", "");
}

/// What every suite here shares: a hub with only psa-halopsa on its plugin path.
struct HubWithHalo {
  TempDir data{"helm-halo-e2e"};
  TempDir plugins{"helm-halo-e2e-plugins"};
  HubProcess* hub = nullptr;

  explicit HubWithHalo(const std::map<std::string, std::string>& extra_env = {}) {
    fs::copy(std::string(HELM_BUILD_PLUGINS_DIR) + "/" + kPlugin, plugins.path() + "/" + kPlugin,
             fs::copy_options::recursive);
    std::string out;
    if (bootstrap_hub(data.path(), "Alpha MSP", "owner@a.test", kPassword, &out) != 0) {
      ADD_FAILURE() << out;
      return;
    }
    const std::string keys = plugins.file("trusted-keys");
    write_file(keys, read_file(HELM_DEV_PUB) + "\n");
    HubOptions o{.data_dir = data.path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = plugins.path();
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "false";
    o.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = keys;
    for (const auto& [k, v] : extra_env)
      o.env[k] = v;
    hub = new HubProcess(o);
  }
  ~HubWithHalo() { delete hub; }
};

class HaloE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TempDir("helm-halo-e2e-certs");
    auto files = http::ensure_development_certificate(certs_->path());
    ASSERT_TRUE(files) << files.error().message;
    cert_file_ = files->cert_file;
    ca_pem_ = read_file(files->cert_file);
    fake_ = new FakeHalo(
        files->cert_file, files->key_file,
        {"--seed-tickets", "250", "--seed-clients", "6", "--client-id", kClientA, "--client-secret",
         kSecretA, "--credential", std::string(kClientB) + ":" + kSecretB, "--credential",
         "org-c-client:org-c-secret"});
    ASSERT_NE(fake_->port(), 0) << "the fake did not start";

    env_ = new HubWithHalo();
    hub_ = env_->hub;
    ASSERT_TRUE(hub_ != nullptr && hub_->ready()) << (hub_ ? hub_->log() : "");
    // The plugin is loaded and running, signed with the development key.
    const json owner = login("owner@a.test");
    owner_a_ = owner["token"];
    org_a_ = owner["technician"]["org_id"];
    ASSERT_EQ(plugin_state(*hub_, owner_a_), "running");

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

    client_x_ = make_client(org_a_, owner_a_, "Xylo Ltd");
    client_y_ = make_client(org_a_, owner_a_, "Yarrow plc");
    client_z_ = make_client(org_a_, owner_a_, "Zinc GmbH (not in HaloPSA)");
    client_bx_ = make_client(org_b_, owner_b_, "Bravo Co");

    // Organization A: secret, grant, settings, switched on; its technician reaches client X only.
    put_secret(org_a_, owner_a_, kSecretA);
    grant(org_a_, owner_a_);
    configure(org_a_, owner_a_, settings_a());
    enable(org_a_, owner_a_);
    const json policy = {{"groups", {{"tier1", {"tech@a.test"}}}},
                         {"targets", {{"x", {{"clients", {client_x_}}}}}},
                         {"rules", {{{"technicians", {"group:tier1"}}, {"targets", {"x"}}}}},
                         {"tests",
                          {{{"technician", "tech@a.test"},
                            {"allow", {"client:" + client_x_}},
                            {"deny", {"client:" + client_y_}}}}}};
    auto acl = call("PUT", "/api/v1/orgs/" + org_a_ + "/acl-policy", owner_a_, policy);
    ASSERT_EQ(acl.status, 200) << acl.body;

    // Organization B: its own credential and its own HaloPSA client.
    put_secret(org_b_, owner_b_, kSecretB);
    grant(org_b_, owner_b_);
    configure(org_b_, owner_b_, settings_b());
    enable(org_b_, owner_b_);
  }

  static void TearDownTestSuite() {
    delete env_;
    delete fake_;
    delete certs_;
  }

  void SetUp() override {
    ASSERT_NE(fake_, nullptr);
    fake_->reset();
  }

  // -- helpers ------------------------------------------------------------------------------

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const json& body = nullptr,
                           long timeout_ms = 60'000) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = hub_->ca_file();
    o.timeout_ms = timeout_ms;
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    auto r = https(hub_->base_url() + path, o);
    seen_->append(r.body).append("\n");
    for (const auto& [k, v] : r.headers)
      seen_->append(k).append(": ").append(v).append("\n");
    return r;
  }

  static HttpResponse op(const std::string& org, const std::string& token, const std::string& name,
                         const json& input) {
    return call("POST", "/api/v1/orgs/" + org + "/plugins/" + kPlugin + "/ops/" + name, token,
                input);
  }

  static json login(const std::string& email) {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  static std::string problem(const HttpResponse& r) {
    const json b = body_of(r);
    return b.is_object() ? b.value("type", "") : "";
  }

  static std::string make_client(const std::string& org, const std::string& token,
                                 const std::string& name) {
    auto r = call("POST", "/api/v1/orgs/" + org + "/clients", token, {{"name", name}});
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? json::parse(r.body)["id"].get<std::string>() : "";
  }

  static void put_secret(const std::string& org, const std::string& token,
                         const std::string& value) {
    auto r = call("PUT", "/api/v1/orgs/" + org + "/secrets/halopsa/client-secret", token,
                  {{"value", value}});
    ASSERT_EQ(r.status, 204) << r.body;
  }

  static void grant(const std::string& org, const std::string& token) {
    auto r = call("PUT", "/api/v1/orgs/" + org + "/plugins/" + kPlugin + "/grants", token,
                  {{"secrets", {"halopsa/client-secret"}}});
    ASSERT_EQ(r.status, 200) << r.body;
  }

  static void configure(const std::string& org, const std::string& token, const json& settings) {
    auto r =
        call("PUT", "/api/v1/orgs/" + org + "/plugins/" + kPlugin + "/config", token, settings);
    ASSERT_EQ(r.status, 200) << r.body;
  }

  static void enable(const std::string& org, const std::string& token) {
    auto r =
        call("PATCH", "/api/v1/orgs/" + org + "/plugins/" + kPlugin, token, {{"enabled", true}});
    ASSERT_EQ(r.status, 200) << r.body;
  }

  static json settings_a() {
    return {{"resource_url", fake_->base() + "/api"},
            {"auth_url", fake_->base() + "/auth"},
            {"client_id", kClientA},
            {"ca_pem", ca_pem_},
            {"client_map", {{client_x_, 1}, {client_y_, "2"}}}};
  }

  static json settings_b() {
    return {{"resource_url", fake_->base() + "/api/"},
            {"client_id", kClientB},
            {"scope", "read:tickets edit:tickets read:customers"},
            {"ca_pem", ca_pem_},
            {"client_map", {{client_bx_, 3}}}};
  }

  /// Makes the fake refuse every token it issued (as if they expired early or were revoked).
  static void expire_tokens() { fake_->state({{"expire_tokens", true}}); }

  static std::set<std::string> bearer_tokens() {
    std::set<std::string> tokens;
    for (const auto& r : fake_->requests()) {
      const json& h = r["headers"];
      if (h.contains("Authorization")) {
        const std::string v = h["Authorization"];
        if (v.rfind("Bearer ", 0) == 0) tokens.insert(v.substr(7));
      }
    }
    return tokens;
  }

  static void remember_tokens() {
    for (const auto& t : bearer_tokens())
      tokens_->insert(t);
  }

  static inline TempDir* certs_ = nullptr;
  static inline FakeHalo* fake_ = nullptr;
  static inline HubWithHalo* env_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string cert_file_, ca_pem_;
  static inline std::string owner_a_, org_a_, owner_b_, org_b_, tech_a_;
  static inline std::string client_x_, client_y_, client_z_, client_bx_;
  static inline std::string* seen_ = new std::string();  // every response the hub gave
  static inline std::set<std::string>* tokens_ = new std::set<std::string>();
};

// -- operations ---------------------------------------------------------------------------------

TEST_F(HaloE2E, ListsTicketsPageByPageWithHalosPageinate) {
  std::set<int64_t> ids;
  for (int page = 1; page <= 3; ++page) {
    auto r = op(org_a_, owner_a_, "tickets.list",
                {{"client_id", client_x_}, {"page", page}, {"page_size", 20}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json b = body_of(r);
    EXPECT_EQ(b["total"], 42);  // 250 tickets over 6 clients: client 1 has 42
    EXPECT_EQ(b["page"], page);
    EXPECT_EQ(b["page_size"], 20);
    EXPECT_EQ(b["has_more"], page < 3);
    EXPECT_EQ(b["tickets"].size(), page < 3 ? 20u : 2u);
    for (const auto& t : b["tickets"]) {
      EXPECT_EQ(t["client_id"], client_x_);
      EXPECT_EQ(t["vendor_client_id"], 1);
      EXPECT_EQ(t["client_name"], "Client 1");
      EXPECT_TRUE(t["opened_at"].is_string());
      EXPECT_FALSE(t.contains("raw"));
      ids.insert(t["id"].get<int64_t>());
    }
  }
  EXPECT_EQ(ids.size(), 42u);
  const auto gets = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(gets.size(), 3u);
  for (size_t i = 0; i < gets.size(); ++i) {
    EXPECT_EQ(gets[i]["query"]["pageinate"], "true");
    EXPECT_EQ(gets[i]["query"]["page_size"], "20");
    EXPECT_EQ(gets[i]["query"]["page_no"], std::to_string(i + 1));
    EXPECT_EQ(gets[i]["query"]["client_id"], "1");
  }
}

TEST_F(HaloE2E, ListsEveryPageWithAllPagesAndStopsAtRecordCount) {
  auto r = op(org_a_, owner_a_, "tickets.list", {{"all_pages", true}, {"page_size", 100}});
  ASSERT_EQ(r.status, 200) << r.body;
  json b = body_of(r);
  EXPECT_EQ(b["tickets"].size(), 250u);
  EXPECT_EQ(b["total"], 250);
  EXPECT_EQ(b["has_more"], false);
  EXPECT_EQ(b["pages_fetched"], 3);
  // Tickets of HaloPSA clients that are not linked carry no hub client id.
  int linked = 0;
  for (const auto& t : b["tickets"]) {
    if (t["client_id"].is_string()) ++linked;
  }
  EXPECT_EQ(linked, 42 + 42);
  auto gets = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(gets.size(), 3u) << "page_no*page_size >= record_count ends the walk";
  EXPECT_EQ(gets[2]["query"]["page_no"], "3");

  fake_->reset();
  r = op(org_a_, owner_a_, "tickets.list",
         {{"all_pages", true}, {"page_size", 50}, {"max_records", 120}, {"include_raw", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  b = body_of(r);
  EXPECT_EQ(b["tickets"].size(), 120u);
  EXPECT_EQ(b["has_more"], true);
  EXPECT_EQ(b["tickets"][0]["raw"]["id"], b["tickets"][0]["id"]);
  EXPECT_EQ(fake_->requests_to("/api/Tickets").size(), 3u);

  // Filters reach HaloPSA as its query parameters.
  fake_->reset();
  r = op(org_a_, owner_a_, "tickets.list",
         {{"client_id", client_y_}, {"open_only", true}, {"agent_id", 2}, {"search", "Ticket 1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  gets = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_EQ(gets[0]["query"]["client_id"], "2");
  EXPECT_EQ(gets[0]["query"]["open_only"], "true");
  EXPECT_EQ(gets[0]["query"]["agent_id"], "2");
  EXPECT_EQ(gets[0]["query"]["search"], "Ticket 1");
  // What comes back belongs to the mapped client only (a client filter alone, so there is some).
  r = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_y_}, {"open_only", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json r_tickets = body_of(r)["tickets"];  // a copy: body_of() is a temporary
  ASSERT_FALSE(r_tickets.empty()) << r.body;
  for (const auto& t : r_tickets) {
    EXPECT_EQ(t["vendor_client_id"], 2);
    EXPECT_EQ(t["client_id"], client_y_);
  }
}

TEST_F(HaloE2E, CreatesUpdatesAndAnnotatesATicketWithArrayBodies) {
  auto created = op(org_a_, owner_a_, "tickets.create",
                    {{"client_id", client_x_},
                     {"summary", "Printer on fire"},
                     {"details", "<p>Third floor</p>"},
                     {"priority_id", 2},
                     {"type_id", 3},
                     {"vendor_site_id", 10}});
  ASSERT_EQ(created.status, 200) << created.body;
  const json ticket = body_of(created)["ticket"];
  EXPECT_EQ(ticket["summary"], "Printer on fire");
  EXPECT_EQ(ticket["client_id"], client_x_);
  EXPECT_EQ(ticket["priority_id"], 2);
  EXPECT_EQ(ticket["type_id"], 3);
  const int64_t id = ticket["id"];
  auto posts = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0]["method"], "POST");
  const json sent = json::parse(posts[0]["body"].get<std::string>());
  ASSERT_TRUE(sent.is_array());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_FALSE(sent[0].contains("id"));
  EXPECT_EQ(sent[0]["client_id"], 1);
  EXPECT_EQ(sent[0]["tickettype_id"], 3);
  EXPECT_EQ(sent[0]["site_id"], 10);

  fake_->reset();
  auto updated =
      op(org_a_, owner_a_, "tickets.update",
         {{"ticket_id", id}, {"client_id", client_x_}, {"status_id", 2}, {"agent_id", 3}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(body_of(updated)["ticket"]["status_id"], 2);
  EXPECT_EQ(body_of(updated)["ticket"]["agent_id"], 3);
  posts = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(posts.size(), 2u) << "ownership is checked (GET) before the update (POST)";
  EXPECT_EQ(posts[0]["method"], "GET");
  const json update = json::parse(posts[1]["body"].get<std::string>());
  ASSERT_TRUE(update.is_array());
  EXPECT_EQ(update[0]["id"], id);
  EXPECT_EQ(update[0]["status_id"], 2);

  auto got = op(org_a_, owner_a_, "tickets.get", {{"ticket_id", id}, {"client_id", client_x_}});
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(body_of(got)["ticket"]["details"], "<p>Third floor</p>");
  EXPECT_EQ(body_of(got)["ticket"]["status_id"], 2);

  fake_->reset();
  auto note = op(org_a_, owner_a_, "tickets.add_note",
                 {{"ticket_id", id}, {"note", "Extinguished."}, {"hidden_from_user", true}});
  ASSERT_EQ(note.status, 200) << note.body;
  EXPECT_EQ(body_of(note)["action"]["ticket_id"], id);
  EXPECT_EQ(body_of(note)["action"]["hidden_from_user"], true);
  const auto actions = fake_->requests_to("/api/Actions");
  ASSERT_EQ(actions.size(), 1u);
  const json action = json::parse(actions[0]["body"].get<std::string>());
  ASSERT_TRUE(action.is_array());
  EXPECT_EQ(action[0]["ticket_id"], id);
  EXPECT_EQ(action[0]["note"], "Extinguished.");
  EXPECT_EQ(action[0]["hiddenfromuser"], true);
  EXPECT_EQ(action[0]["outcome"], "Note");
}

TEST_F(HaloE2E, ATicketOfAnotherClientIsNotFoundAndNothingIsWritten) {
  // Ticket 2 belongs to HaloPSA client 2 (hub client Y).
  auto got = op(org_a_, owner_a_, "tickets.get", {{"ticket_id", 2}, {"client_id", client_x_}});
  EXPECT_EQ(got.status, 404) << got.body;
  EXPECT_EQ(got.body.find("Client 2"), std::string::npos) << "nothing of the ticket leaks";
  auto upd = op(org_a_, owner_a_, "tickets.update",
                {{"ticket_id", 2}, {"client_id", client_x_}, {"summary", "hijack"}});
  EXPECT_EQ(upd.status, 404) << upd.body;
  auto note = op(org_a_, owner_a_, "tickets.add_note",
                 {{"ticket_id", 2}, {"client_id", client_x_}, {"note", "hijack"}});
  EXPECT_EQ(note.status, 404) << note.body;
  for (const auto& r : fake_->requests())
    EXPECT_EQ(r["method"], r["path"] == "/auth/token" ? "POST" : "GET") << r.dump();
  EXPECT_EQ(op(org_a_, owner_a_, "tickets.get", {{"ticket_id", 99999}}).status, 404);
  // A hub client that is not linked in client_map: refused before HaloPSA is asked.
  fake_->reset();
  auto unlinked = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_z_}});
  EXPECT_EQ(unlinked.status, 404) << unlinked.body;
  EXPECT_NE(unlinked.body.find("not linked to HaloPSA"), std::string::npos) << unlinked.body;
  EXPECT_TRUE(fake_->requests().empty());
}

TEST_F(HaloE2E, ListsClientsWithTheirHubClients) {
  auto r = op(org_a_, owner_a_, "clients.list", {{"page_size", 4}});
  ASSERT_EQ(r.status, 200) << r.body;
  json b = body_of(r);
  EXPECT_EQ(b["total"], 6);
  EXPECT_EQ(b["has_more"], true);
  ASSERT_EQ(b["clients"].size(), 4u);
  EXPECT_EQ(b["clients"][0]["id"], 1);
  EXPECT_EQ(b["clients"][0]["client_id"], client_x_);
  EXPECT_EQ(b["clients"][1]["client_id"], client_y_);
  EXPECT_TRUE(b["clients"][2]["client_id"].is_null());
  const auto gets = fake_->requests_to("/api/Client");
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_EQ(gets[0]["query"]["pageinate"], "true");
  EXPECT_EQ(gets[0]["query"]["page_size"], "4");

  r = op(org_a_, owner_a_, "clients.list", {{"client_id", client_y_}});
  ASSERT_EQ(r.status, 200) << r.body;
  b = body_of(r);
  ASSERT_EQ(b["clients"].size(), 1u);
  EXPECT_EQ(b["clients"][0]["name"], "Client 2");
}

// -- the access token ---------------------------------------------------------------------------

TEST_F(HaloE2E, OneTokenServesManyCallsAndTheFakeSawTheRightCredentials) {
  expire_tokens();  // start from no usable token
  fake_->reset();
  for (int i = 0; i < 4; ++i) {
    auto r = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 5}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  ASSERT_EQ(op(org_a_, owner_a_, "clients.list", json::object()).status, 200);
  const auto tokens = fake_->requests_to("/auth/token");
  ASSERT_EQ(tokens.size(), 1u) << "the token is cached in memory between calls";
  const std::string form = tokens[0]["body"];
  EXPECT_NE(form.find("grant_type=client_credentials"), std::string::npos) << form;
  EXPECT_NE(form.find(std::string("client_id=") + kClientA), std::string::npos) << form;
  EXPECT_NE(form.find("client_secret=" + form_encode(kSecretA)), std::string::npos) << form;
  EXPECT_NE(form.find("scope=all"), std::string::npos) << form;
  EXPECT_EQ(tokens[0]["headers"]["Content-Type"], "application/x-www-form-urlencoded");
  EXPECT_EQ(tokens[0]["status"], 200);
  int api_calls = 0;
  for (const auto& r : fake_->requests_to("/api/")) {
    if (r["status"] == 401) continue;  // the first call's cached token had been expired
    ++api_calls;
    EXPECT_EQ(r["token_client_id"], kClientA) << r.dump();
  }
  EXPECT_EQ(api_calls, 5);
  remember_tokens();
}

TEST_F(HaloE2E, ATokenExpiringMidRunIsRefreshedOnceTransparently) {
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  fake_->reset();
  expire_tokens();  // HaloPSA now refuses the cached token before its announced expiry
  auto r = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto all = fake_->requests();
  ASSERT_EQ(all.size(), 3u) << all.dump();
  EXPECT_EQ(all[0]["path"], "/api/Tickets");
  EXPECT_EQ(all[0]["status"], 401);
  EXPECT_EQ(all[1]["path"], "/auth/token");
  EXPECT_EQ(all[2]["path"], "/api/Tickets");
  EXPECT_EQ(all[2]["status"], 200);
  EXPECT_NE(all[0]["headers"]["Authorization"], all[2]["headers"]["Authorization"]);
  remember_tokens();

  // A second 401 in a row is HaloPSA refusing the credential: reported, not retried forever.
  fake_->reset();
  fake_->inject({{"status", 401}, {"count", 2}, {"path", "/api/"}});
  auto refused = op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}});
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_EQ(problem(refused), "urn:helm:problem:upstream-unauthorized") << refused.body;
  EXPECT_EQ(fake_->requests_to("/api/").size(), 2u);
  EXPECT_EQ(fake_->requests_to("/auth/token").size(), 1u);
  remember_tokens();
}

TEST_F(HaloE2E, ATokenIsFetchedAgainShortlyBeforeItsAnnouncedExpiry) {
  fake_->state({{"token_lifetime", 4}});
  expire_tokens();
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  fake_->state({{"token_lifetime", 3600}});
  fake_->reset();
  // Cached for expires_in minus min(60 s, half of it): 2 s here.
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  EXPECT_TRUE(fake_->requests_to("/auth/token").empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));
  fake_->reset();
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  const auto all = fake_->requests();
  ASSERT_EQ(all.size(), 2u) << all.dump();
  EXPECT_EQ(all[0]["path"], "/auth/token") << "fetched before use, not after a 401";
  EXPECT_EQ(all[1]["status"], 200);
  remember_tokens();
}

TEST_F(HaloE2E, ABurstOfCallsSharesOneTokenRequestAndAllSucceed) {
  // New settings (another scope) need a new token; eight calls arrive at once.
  json narrower = settings_a();
  narrower["scope"] = "read:tickets read:customers";
  configure(org_a_, owner_a_, narrower);
  constexpr int kCalls = 8;
  std::vector<long> statuses(kCalls, 0);
  std::vector<size_t> counts(kCalls, 0);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([i, &statuses, &counts] {
      const bool mine = i % 2 == 0;
      auto r =
          op(org_a_, mine ? tech_a_ : owner_a_, "tickets.list",
             {{"client_id", mine ? client_x_ : client_y_}, {"page", 1 + i / 2}, {"page_size", 10}});
      statuses[i] = r.status;
      if (r.status == 200) counts[i] = body_of(r)["tickets"].size();
    });
  }
  for (auto& t : callers)
    t.join();
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(statuses[i], 200) << "call " << i;
    EXPECT_EQ(counts[i], 10u) << "call " << i;
  }
  const auto tokens = fake_->requests_to("/auth/token");
  ASSERT_EQ(tokens.size(), 1u) << "one token request served the whole burst";
  EXPECT_NE(tokens[0]["body"].get<std::string>().find("scope=read%3Atickets%20read%3Acustomers"),
            std::string::npos);
  EXPECT_EQ(fake_->requests_to("/api/Tickets").size(), static_cast<size_t>(kCalls));
  configure(org_a_, owner_a_, settings_a());
  remember_tokens();
}

TEST_F(HaloE2E, AHostedInstanceGetsItsTenantOnTheTokenRequest) {
  fake_->state({{"tenants", {"contoso"}}});  // hosted: /auth/token now needs ?tenant=
  json hosted = settings_a();
  hosted["tenant"] = "contoso";
  configure(org_a_, owner_a_, hosted);
  auto r = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 1}});
  EXPECT_EQ(r.status, 200) << r.body;
  auto tokens = fake_->requests_to("/auth/token");
  ASSERT_EQ(tokens.size(), 1u) << "a new tenant is a new token";
  EXPECT_EQ(tokens[0]["query"]["tenant"], "contoso");

  hosted["tenant"] = "fabrikam";
  configure(org_a_, owner_a_, hosted);
  auto unknown = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(unknown.status, 502) << unknown.body;
  EXPECT_EQ(problem(unknown), "urn:helm:problem:upstream-unauthorized") << unknown.body;
  EXPECT_NE(unknown.body.find("invalid_request"), std::string::npos) << unknown.body;

  fake_->state({{"hosted", false}});
  configure(org_a_, owner_a_, settings_a());
  EXPECT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  remember_tokens();
}

// -- refusals -----------------------------------------------------------------------------------

TEST_F(HaloE2E, ALoggedOutSessionIsRefusedAndHaloPsaHearsNothing) {
  const std::string token = login("tech@a.test")["token"];
  ASSERT_EQ(op(org_a_, token, "tickets.list", {{"client_id", client_x_}}).status, 200);
  ASSERT_EQ(call("POST", "/api/v1/auth/logout", token).status / 100, 2);
  fake_->reset();
  auto r = op(org_a_, token, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_TRUE(fake_->requests().empty()) << fake_->requests().dump();
}

TEST_F(HaloE2E, EachOrganizationReachesHaloPsaWithItsOwnCredential) {
  expire_tokens();
  fake_->reset();
  auto a = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 1}});
  auto b = op(org_b_, owner_b_, "tickets.list", {{"client_id", client_bx_}, {"page_size", 50}});
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  const json b_tickets = body_of(b)["tickets"];  // a copy: body_of() is a temporary
  ASSERT_FALSE(b_tickets.empty());
  for (const auto& t : b_tickets) {
    EXPECT_EQ(t["client_id"], client_bx_);
    EXPECT_EQ(t["vendor_client_id"], 3);
  }
  const auto tokens = fake_->requests_to("/auth/token");
  ASSERT_EQ(tokens.size(), 2u);
  std::set<std::string> forms;
  for (const auto& t : tokens)
    forms.insert(t["body"].get<std::string>());
  bool saw_a = false, saw_b = false;
  for (const auto& f : forms) {
    if (f.find(std::string("client_id=") + kClientA) != std::string::npos) {
      saw_a = true;
      EXPECT_NE(f.find("client_secret=" + form_encode(kSecretA)), std::string::npos);
    }
    if (f.find(std::string("client_id=") + kClientB) != std::string::npos) {
      saw_b = true;
      EXPECT_NE(f.find("client_secret=" + form_encode(kSecretB)), std::string::npos);
      EXPECT_NE(f.find("scope=read%3Atickets%20edit%3Atickets%20read%3Acustomers"),
                std::string::npos)
          << f;
    }
  }
  EXPECT_TRUE(saw_a && saw_b);
  for (const auto& r : fake_->requests_to("/api/")) {
    if (r["status"] != 200) continue;
    const bool for_b = r["query"].value("client_id", "") == "3";
    EXPECT_EQ(r["token_client_id"], for_b ? kClientB : kClientA) << r.dump();
  }
  remember_tokens();

  // Organization B naming organization A's client id gets nothing: its vault holds B's secret.
  json borrowed = settings_b();
  borrowed["client_id"] = kClientA;
  configure(org_b_, owner_b_, borrowed);
  fake_->reset();
  auto refused = op(org_b_, owner_b_, "tickets.list", {{"client_id", client_bx_}});
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_EQ(problem(refused), "urn:helm:problem:upstream-unauthorized");
  EXPECT_NE(refused.body.find("invalid_client"), std::string::npos) << refused.body;
  for (const auto& r : fake_->requests_to("/api/")) {
    ADD_FAILURE() << "no resource call without B's own token: " << r.dump();
  }
  configure(org_b_, owner_b_, settings_b());
  // And B cannot run A's operations at all.
  EXPECT_EQ(op(org_a_, owner_b_, "tickets.list", json::object()).status, 404);
}

TEST_F(HaloE2E, APluginWithoutTheGrantGetsNoSecretAndFetchesNoToken) {
  auto created =
      call("POST", "/api/v1/orgs", owner_a_,
           {{"name", "Gamma MSP"}, {"owner_email", "owner@c.test"}, {"owner_password", kPassword}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string org_c = json::parse(created.body)["id"];
  const std::string owner_c = login("owner@c.test")["token"];
  put_secret(org_c, owner_c, "org-c-secret");
  json settings = settings_b();
  settings["client_id"] = "org-c-client";
  settings["client_map"] = json::object();
  configure(org_c, owner_c, settings);
  enable(org_c, owner_c);
  fake_->reset();
  auto r = op(org_c, owner_c, "clients.list", json::object());
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("grant"), std::string::npos) << r.body;
  EXPECT_TRUE(fake_->requests().empty()) << fake_->requests().dump();
  grant(org_c, owner_c);
  auto granted = op(org_c, owner_c, "clients.list", json::object());
  EXPECT_EQ(granted.status, 200) << granted.body;
  remember_tokens();
}

// A cached access token does not outlive the organization's decision: with the grant revoked or
// the secret deleted, the next call is refused before HaloPSA hears of it, though the token
// would still be good there; given back, the same cached token serves again.
TEST_F(HaloE2E, RevokingTheGrantOrDeletingTheSecretStopsCallsDespiteACachedToken) {
  ASSERT_EQ(op(org_a_, owner_a_, "clients.list", json::object()).status, 200);
  fake_->reset();
  ASSERT_EQ(op(org_a_, owner_a_, "clients.list", json::object()).status, 200);
  ASSERT_TRUE(fake_->requests_to("/auth/token").empty()) << "the token is cached";

  auto revoked = call("PUT", "/api/v1/orgs/" + org_a_ + "/plugins/" + kPlugin + "/grants", owner_a_,
                      {{"secrets", json::array()}});
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  fake_->reset();
  auto r = op(org_a_, owner_a_, "clients.list", json::object());
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("grant"), std::string::npos) << r.body;
  EXPECT_TRUE(fake_->requests().empty()) << fake_->requests().dump();

  grant(org_a_, owner_a_);
  ASSERT_EQ(
      call("DELETE", "/api/v1/orgs/" + org_a_ + "/secrets/halopsa/client-secret", owner_a_).status /
          100,
      2);
  r = op(org_a_, owner_a_, "clients.list", json::object());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("not stored"), std::string::npos) << r.body;
  EXPECT_TRUE(fake_->requests().empty()) << fake_->requests().dump();

  put_secret(org_a_, owner_a_, kSecretA);
  EXPECT_EQ(op(org_a_, owner_a_, "clients.list", json::object()).status, 200);
  EXPECT_TRUE(fake_->requests_to("/auth/token").empty()) << "the cached token serves again";
  remember_tokens();
}

TEST_F(HaloE2E, TheAclKeepsATechnicianToItsClients) {
  auto mine = op(org_a_, tech_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 5}});
  ASSERT_EQ(mine.status, 200) << mine.body;
  const json mine_tickets = body_of(mine)["tickets"];  // a copy: body_of() is a temporary
  ASSERT_FALSE(mine_tickets.empty());
  for (const auto& t : mine_tickets)
    EXPECT_EQ(t["client_id"], client_x_);
  fake_->reset();
  auto other = op(org_a_, tech_a_, "tickets.list", {{"client_id", client_y_}});
  EXPECT_EQ(other.status, 403) << other.body;
  auto other_get = op(org_a_, tech_a_, "tickets.get", {{"ticket_id", 2}, {"client_id", client_y_}});
  EXPECT_EQ(other_get.status, 403) << other_get.body;
  auto create = op(org_a_, tech_a_, "tickets.create", {{"client_id", client_y_}, {"summary", "x"}});
  EXPECT_EQ(create.status, 403) << create.body;
  // Naming no client would reach them all: a technician with a limited ACL must name one.
  auto unnamed = op(org_a_, tech_a_, "tickets.list", json::object());
  EXPECT_EQ(unnamed.status, 403) << unnamed.body;
  auto unnamed_get = op(org_a_, tech_a_, "tickets.get", {{"ticket_id", 2}});
  EXPECT_EQ(unnamed_get.status, 403) << unnamed_get.body;
  EXPECT_TRUE(fake_->requests().empty()) << fake_->requests().dump();
}

// -- the vendor's faults ------------------------------------------------------------------------

TEST_F(HaloE2E, ABadSecretIsUpstreamUnauthorizedWithoutTheSecret) {
  put_secret(org_b_, owner_b_, "wrong secret value 42");
  expire_tokens();
  fake_->reset();
  auto r = op(org_b_, owner_b_, "tickets.list", {{"client_id", client_bx_}});
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(problem(r), "urn:helm:problem:upstream-unauthorized") << r.body;
  EXPECT_NE(r.body.find("invalid_client"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("wrong secret"), std::string::npos) << r.body;
  const auto tokens = fake_->requests_to("/auth/token");
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_NE(tokens[0]["body"].get<std::string>().find("client_secret=" +
                                                      form_encode("wrong secret value 42")),
            std::string::npos);
  put_secret(org_b_, owner_b_, kSecretB);
  auto fixed = op(org_b_, owner_b_, "tickets.list", {{"client_id", client_bx_}});
  EXPECT_EQ(fixed.status, 200) << fixed.body;
  remember_tokens();
}

TEST_F(HaloE2E, A429IsRetriedAfterRetryAfterThenReportedWithRetryAfter) {
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  fake_->reset();
  fake_->inject({{"status", 429}, {"retry_after", 1}, {"path", "/api/Tickets"}});
  auto r = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}, {"page_size", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto gets = fake_->requests_to("/api/Tickets");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[0]["status"], 429);
  EXPECT_EQ(gets[1]["status"], 200);
  EXPECT_GE(gets[1]["time"].get<double>() - gets[0]["time"].get<double>(), 0.95)
      << "the retry waits for Retry-After";

  fake_->reset();
  fake_->inject({{"status", 429}, {"retry_after", 1}, {"count", 5}, {"path", "/api/Tickets"}});
  auto limited = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(problem(limited), "urn:helm:problem:upstream-rate-limited") << limited.body;
  EXPECT_EQ(limited.headers["retry-after"], "1");
  gets = fake_->requests_to("/api/Tickets");
  EXPECT_EQ(gets.size(), 3u) << "one try and two retries";

  // A Retry-After longer than the plugin waits is passed on at once.
  fake_->reset();
  fake_->inject({{"status", 429}, {"retry_after", 120}, {"path", "/api/Tickets"}});
  auto later = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(later.status, 429) << later.body;
  EXPECT_EQ(later.headers["retry-after"], "120");
  EXPECT_EQ(fake_->requests_to("/api/Tickets").size(), 1u);
  remember_tokens();
}

TEST_F(HaloE2E, ServerErrorsSlownessAndGarbageAreMapped) {
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  fake_->inject({{"status", 503}, {"path", "/api/"}});
  auto down = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(down.status, 502) << down.body;
  EXPECT_EQ(problem(down), "urn:helm:problem:upstream-unavailable") << down.body;

  fake_->inject({{"status", 200}, {"body", "<html>login page</html>"}, {"path", "/api/"}});
  auto garbage = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(garbage.status, 502) << garbage.body;
  EXPECT_EQ(problem(garbage), "urn:helm:problem:upstream-error") << garbage.body;

  fake_->inject({{"status", 200}, {"body", {{"tickets", "not a list"}}}, {"path", "/api/"}});
  auto odd = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(odd.status, 502) << odd.body;

  fake_->inject({{"status", 400},
                 {"body", {{"ClassName", "HaloException"}, {"Message", "Summary is too long"}}},
                 {"path", "/api/Tickets"},
                 {"method", "POST"}});
  auto invalid =
      op(org_a_, owner_a_, "tickets.create", {{"client_id", client_x_}, {"summary", "long"}});
  EXPECT_EQ(invalid.status, 422) << invalid.body;
  EXPECT_NE(invalid.body.find("Summary is too long"), std::string::npos) << invalid.body;

  fake_->inject({{"status", 403}, {"body", {{"Message", "missing scope"}}}, {"path", "/api/"}});
  auto scope = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  EXPECT_EQ(scope.status, 502) << scope.body;
  EXPECT_EQ(problem(scope), "urn:helm:problem:upstream-unauthorized") << scope.body;

  // Slower than the organization's request timeout: 504 timeout, well before HaloPSA answers.
  json quick = settings_a();
  quick["request_timeout_ms"] = 800;
  configure(org_a_, owner_a_, quick);
  fake_->inject({{"latency_ms", 3000}, {"path", "/api/"}});
  const auto started = std::chrono::steady_clock::now();
  auto slow = op(org_a_, owner_a_, "tickets.list", {{"client_id", client_x_}});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(slow.status, 504) << slow.body;
  EXPECT_EQ(problem(slow), "urn:helm:problem:timeout") << slow.body;
  EXPECT_LT(took, std::chrono::milliseconds(2800));
  configure(org_a_, owner_a_, settings_a());
  EXPECT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 1}}).status, 200);
  remember_tokens();
}

// Last: everything the technicians got back, and the hub's log, are free of the credentials.
TEST_F(HaloE2E, NeitherResponsesNorTheHubLogContainTheSecretOrAnAccessToken) {
  ASSERT_EQ(op(org_a_, owner_a_, "tickets.list", {{"page_size", 3}}).status, 200);
  remember_tokens();
  ASSERT_FALSE(tokens_->empty());
  const std::string log = hub_->log() + hub_->output();
  for (const std::string secret : {kSecretA, kSecretB}) {
    EXPECT_EQ(seen_->find(secret), std::string::npos);
    EXPECT_EQ(seen_->find(form_encode(secret)), std::string::npos);
    EXPECT_EQ(log.find(secret), std::string::npos);
    EXPECT_EQ(log.find(form_encode(secret)), std::string::npos);
  }
  for (const auto& token : *tokens_) {
    EXPECT_EQ(seen_->find(token), std::string::npos) << "a response carried an access token";
    EXPECT_EQ(log.find(token), std::string::npos) << "the hub logged an access token";
  }
  EXPECT_FALSE(seen_->empty());
}

// -- sessions that expire -----------------------------------------------------------------------

// A hub whose sessions expire after 2 s idle: a technician whose session expired is refused
// before the plugin runs, so HaloPSA receives nothing.
TEST(HaloE2ESessions, AnExpiredSessionIsRefusedAndHaloPsaHearsNothing) {
  TempDir certs("helm-halo-e2e-certs2");
  auto files = http::ensure_development_certificate(certs.path());
  ASSERT_TRUE(files) << files.error().message;
  FakeHalo fake(files->cert_file, files->key_file, {"--seed-tickets", "10", "--seed-clients", "1"});
  ASSERT_NE(fake.port(), 0);
  HubWithHalo env(
      std::map<std::string, std::string>{{"HELM_IDENTITY_SESSION_IDLE_TIMEOUT_S", "2"}});
  ASSERT_TRUE(env.hub != nullptr && env.hub->ready());
  auto call = [&](const std::string& method, const std::string& path, const std::string& token,
                  const json& body) {
    HttpRequestOptions o;
    o.method = method;
    o.ca_file = env.hub->ca_file();
    if (!body.is_null()) o.body = body.dump();
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: application/json");
    return https(env.hub->base_url() + path, o);
  };
  auto login =
      call("POST", "/api/v1/auth/login", "", {{"email", "owner@a.test"}, {"password", kPassword}});
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string token = json::parse(login.body)["token"];
  const std::string org = json::parse(login.body)["technician"]["org_id"];
  ASSERT_EQ(plugin_state(*env.hub, token), "running");
  const std::string base = "/api/v1/orgs/" + org + "/plugins/" + kPlugin;
  ASSERT_EQ(call("PUT", "/api/v1/orgs/" + org + "/secrets/halopsa/client-secret", token,
                 {{"value", "helm-secret"}})
                .status,
            204);
  ASSERT_EQ(call("PUT", base + "/grants", token, {{"secrets", {"halopsa/client-secret"}}}).status,
            200);
  ASSERT_EQ(call("PUT", base + "/config", token,
                 {{"resource_url", fake.base() + "/api"},
                  {"client_id", "helm-client"},
                  {"ca_pem", read_file(files->cert_file)}})
                .status,
            200);
  ASSERT_EQ(call("PATCH", base, token, {{"enabled", true}}).status, 200);
  auto ok = call("POST", base + "/ops/clients.list", token, json::object());
  ASSERT_EQ(ok.status, 200) << ok.body;
  fake.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));  // the session's idle limit
  auto expired = call("POST", base + "/ops/clients.list", token, json::object());
  EXPECT_EQ(expired.status, 401) << expired.body;
  EXPECT_TRUE(fake.requests().empty()) << fake.requests().dump();
}

}  // namespace
}  // namespace helm::test
