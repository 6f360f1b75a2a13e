// Plugin bundles over real HTTPS against the real hub: `helm-plugin pack` makes the bundle,
// POST /api/v1/plugins installs it (listed disabled, nothing of it running), enabling it runs
// the real example-echo code, DELETE removes it with its settings. Refusals — tampered library,
// untrusted publisher, not a bundle, duplicates, wrong media type, a technician — change nothing
// on disk.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "helm/storage/embedded_postgres.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kPassword = "owner password 123";

/// Every path under `root` (names only, recursively), to compare before and after a refusal.
std::set<std::string> tree(const fs::path& root) {
  std::set<std::string> out;
  for (const auto& item : fs::recursive_directory_iterator(root))
    out.insert(fs::relative(item.path(), root).string());
  return out;
}

class PluginBundles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir("helm-bundles-data");
    work_ = new TempDir("helm-bundles-work");
    install_ = work_->path() + "/plugins";
    fs::create_directories(install_);
    // The plugin to ship: example-echo as built, packed with the test publisher's key (trusted)
    // and with a stranger's key (not trusted).
    const std::string source = work_->path() + "/example-echo";
    fs::copy(std::string(HELM_BUILD_PLUGINS_DIR) + "/example-echo", source,
             fs::copy_options::recursive);
    fs::remove(source + "/signature");
    ASSERT_EQ(pack(source, HELM_TEST_TRUSTED_KEY, bundle_file()), 0);
    ASSERT_EQ(pack(source, HELM_TEST_STRANGER_KEY, work_->path() + "/stranger.hpb"), 0);

    std::string out;
    ASSERT_EQ(bootstrap_hub(data_->path(), "Operators", "owner@a.test", kPassword, &out), 0) << out;
    HubOptions o{.data_dir = data_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = install_;
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "false";
    o.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = HELM_TEST_TRUSTED_PUB;
    hub_ = new HubProcess(o);
    ASSERT_TRUE(hub_->ready()) << hub_->log();
    const json owner = login("owner@a.test");
    owner_ = owner["token"];
    org_ = owner["technician"]["org_id"];
    auto tech = call("POST", "/api/v1/orgs/" + org_ + "/technicians", owner_,
                     {{"email", "tech@a.test"}, {"password", kPassword}, {"role", "technician"}});
    ASSERT_EQ(tech.status, 201) << tech.body;
    tech_ = login("tech@a.test")["token"];
  }

  static void TearDownTestSuite() {
    delete hub_;
    delete work_;
    delete data_;
  }

  static int pack(const std::string& dir, const std::string& key, const std::string& out) {
    const std::string command = std::string(HELM_PLUGIN_TOOL) + " pack --dir '" + dir +
                                "' --key '" + key + "' --out '" + out + "' > /dev/null";
    return std::system(command.c_str());
  }

  static std::string bundle_file() { return work_->path() + "/example-echo.hpb"; }

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

  static HttpResponse upload(const std::string& bytes, const std::string& token,
                             const std::string& type = "application/x-tar") {
    HttpRequestOptions o;
    o.method = "POST";
    o.ca_file = hub_->ca_file();
    o.timeout_ms = 60'000;
    o.body = bytes;
    o.headers.push_back("Authorization: Bearer " + token);
    o.headers.push_back("Content-Type: " + type);
    return https(hub_->base_url() + "/api/v1/plugins", o);
  }

  static json login(const std::string& email) {
    auto r = call("POST", "/api/v1/auth/login", "", {{"email", email}, {"password", kPassword}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  /// Asserts a refusal of `bytes` with `status` whose detail contains `says`, and that the
  /// plugin directory is exactly as it was.
  static void expect_refused(const std::string& bytes, long status, const std::string& says,
                             const std::string& token = owner_,
                             const std::string& type = "application/x-tar") {
    const auto before = tree(install_);
    const auto r = upload(bytes, token, type);
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_NE(body_of(r).value("detail", "").find(says), std::string::npos) << r.body;
    EXPECT_EQ(tree(install_), before) << "a refused bundle must change nothing on disk";
  }

  static inline TempDir* data_ = nullptr;
  static inline TempDir* work_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  static inline std::string install_, owner_, org_, tech_;
};

// A bundle may be 64 MiB, far more than any other request: before a byte of a body larger than
// the usual limit is read, the caller must hold a session that may install plugins. Here no body
// is sent at all: the refusal comes from the request's head alone, and the connection is closed
// within the hub's linger second instead of waiting for 50 MB.
TEST_F(PluginBundles, ALargeBodyIsReadOnlyFromSomeoneWhoMayInstallPlugins) {
  auto head_only = [](const std::string& token, const std::string& framing,
                      std::chrono::milliseconds wait, bool* closed) {
    RawTlsClient raw("127.0.0.1", hub_->port());
    EXPECT_TRUE(raw.connected());
    std::string head =
        "POST /api/v1/plugins HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-tar\r\n" +
        framing + "\r\n";
    if (!token.empty()) head += "Authorization: Bearer " + token + "\r\n";
    EXPECT_TRUE(raw.send(head + "\r\n"));
    return raw.read_some(wait, closed);
  };
  const std::string fifty_mb = "Content-Length: 50000000";
  for (const auto& [who, token, framing, status] :
       std::vector<std::tuple<std::string, std::string, std::string, std::string>>{
           {"nobody", "", fifty_mb, "401"},
           {"nobody, chunked", "", "Transfer-Encoding: chunked", "401"},
           {"a made-up token", "hs_not-a-session", fifty_mb, "401"},
           {"a technician", tech_, fifty_mb, "403"},
           {"a technician expecting 100-continue", tech_, fifty_mb + "\r\nExpect: 100-continue",
            "403"}}) {
    bool closed = false;
    const auto started = std::chrono::steady_clock::now();
    const auto answer = head_only(token, framing, std::chrono::seconds(10), &closed);
    EXPECT_EQ(answer.rfind("HTTP/1.1 " + status, 0), 0u) << who << ": " << answer;
    EXPECT_TRUE(closed) << who << ": the connection stays open";
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5)) << who;
  }
  // The owner may: the hub answers nothing and waits for the body, or, asked to, says so with
  // "100 Continue" (curl waits a second for it before sending a large body).
  bool closed = false;
  const auto waiting = head_only(owner_, fifty_mb, std::chrono::milliseconds(1500), &closed);
  EXPECT_TRUE(waiting.empty()) << waiting;
  EXPECT_FALSE(closed);
  const auto go_on = head_only(owner_, fifty_mb + "\r\nExpect: 100-continue",
                               std::chrono::milliseconds(5000), &closed);
  EXPECT_EQ(go_on.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << go_on;
  EXPECT_FALSE(closed);
}

TEST_F(PluginBundles, RefusedBundlesChangeNothingOnDisk) {
  const std::string good = read_file(bundle_file());
  // One byte of the library flipped inside a well-formed archive: the signature catches it.
  std::string tampered = good;
  tampered[good.size() / 2] = static_cast<char>(tampered[good.size() / 2] ^ 0x01);
  expect_refused(tampered, 422, "changed after signing");
  expect_refused(read_file(work_->path() + "/stranger.hpb"), 422, "not a trusted publisher key");
  expect_refused("this is not a tar archive", 422, "multiple of 512");
  expect_refused(std::string(4096, '\0'), 422, "holds no manifest.json");
  expect_refused(good, 415, "application/x-tar", owner_, "application/json");
  expect_refused(good, 403, "", tech_);
  // Larger than any bundle may be: refused from its Content-Length, before the body is read.
  expect_refused(std::string(65u * 1024 * 1024, '\0'), 413, "larger than the limit");
  EXPECT_EQ(call("GET", "/api/v1/plugins/example-echo", owner_).status, 404);
}

TEST_F(PluginBundles, InstallEnableInvokeUninstall) {
  // Installed: on disk under the plugin path, listed disabled, no code running.
  auto installed = upload(read_file(bundle_file()), owner_);
  ASSERT_EQ(installed.status, 201) << installed.body;
  EXPECT_EQ(installed.headers["location"], "/api/v1/plugins/example-echo");
  json body = body_of(installed);
  EXPECT_EQ(body["state"], "disabled");
  EXPECT_EQ(body["enabled"], false);
  EXPECT_NE(body["signer"].get<std::string>().find("signed by"), std::string::npos) << body;
  const fs::path directory = install_ + "/example-echo";
  EXPECT_TRUE(fs::is_regular_file(directory / "manifest.json"));
  EXPECT_TRUE(fs::is_regular_file(directory / "example-echo.so"));
  EXPECT_TRUE(fs::is_regular_file(directory / "signature"));
  EXPECT_EQ(tree(install_).size(), 4U) << "the plugin directory and its three files, nothing else";

  // The same bundle again: already installed.
  expect_refused(read_file(bundle_file()), 409, "already installed");

  // Enabled: the real code runs and answers an operation for an organization that turns it on.
  auto enabled = call("PATCH", "/api/v1/plugins/example-echo", owner_, {{"enabled", true}});
  ASSERT_EQ(enabled.status, 200) << enabled.body;
  EXPECT_EQ(body_of(enabled)["state"], "running") << enabled.body;
  ASSERT_EQ(
      call("PATCH", "/api/v1/orgs/" + org_ + "/plugins/example-echo", owner_, {{"enabled", true}})
          .status,
      200);
  auto echoed = call("POST", "/api/v1/orgs/" + org_ + "/plugins/example-echo/ops/echo", tech_,
                     {{"hello", "bundle"}});
  ASSERT_EQ(echoed.status, 200) << echoed.body;
  EXPECT_EQ(body_of(echoed)["hello"], "bundle");

  // A technician cannot remove it; the operator can, and everything of it goes.
  EXPECT_EQ(call("DELETE", "/api/v1/plugins/example-echo", tech_).status, 403);
  auto removed = call("DELETE", "/api/v1/plugins/example-echo", owner_);
  ASSERT_EQ(removed.status, 204) << removed.body;
  EXPECT_FALSE(fs::exists(directory));
  EXPECT_TRUE(tree(install_).empty());
  EXPECT_EQ(call("GET", "/api/v1/plugins/example-echo", owner_).status, 404);
  EXPECT_EQ(call("POST", "/api/v1/orgs/" + org_ + "/plugins/example-echo/ops/echo", tech_,
                 {{"hello", "again"}})
                .status,
            404);
  EXPECT_EQ(call("DELETE", "/api/v1/plugins/example-echo", owner_).status, 404);
  const json list = body_of(call("GET", "/api/v1/plugins", owner_));
  EXPECT_TRUE(list["items"].empty()) << list;

  // Installed again (this time as a browser's multipart/form-data file upload), it starts from
  // nothing: disabled, and off for the organization.
  const std::string boundary = "----helm-test-boundary-7d1c";
  const std::string multipart =
      "--" + boundary +
      "\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot the file\r\n--" + boundary +
      "\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"example-echo.hpb\"\r\n"
      "Content-Type: application/x-tar\r\n\r\n" +
      read_file(bundle_file()) + "\r\n--" + boundary + "--\r\n";
  auto again = upload(multipart, owner_, "multipart/form-data; boundary=" + boundary);
  ASSERT_EQ(again.status, 201) << again.body;
  auto org_view = call("GET", "/api/v1/orgs/" + org_ + "/plugins/example-echo", owner_);
  ASSERT_EQ(org_view.status, 200) << org_view.body;
  EXPECT_EQ(body_of(org_view)["enabled_for_org"], false) << org_view.body;

  // Install and uninstall are in the audit log, with who did them and the outcome.
  const std::string owner_id = body_of(call("GET", "/api/v1/me", owner_))["id"];
  pqxx::connection conn(storage::EmbeddedPostgres::connection_string_for(data_->path()));
  std::multiset<std::string> seen;
  // The route layer writes after answering: give it a moment.
  for (int i = 0; i < 100 && seen.count("delete.plugins.name allowed") == 0; ++i) {
    seen.clear();
    pqxx::work tx(conn);
    for (const auto& row :
         tx.exec("SELECT action, outcome FROM audit_log WHERE actor = " + tx.quote(owner_id) +
                 " AND action IN ('post.plugins', 'delete.plugins.name')")) {
      seen.insert(std::string(row[0].c_str()) + " " + row[1].c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(seen.count("post.plugins allowed"), 2U);
  EXPECT_EQ(seen.count("delete.plugins.name allowed"), 1U);
  ASSERT_EQ(call("DELETE", "/api/v1/plugins/example-echo", owner_).status, 204);
}

}  // namespace
}  // namespace helm::test
