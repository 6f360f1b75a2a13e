// helmctl end to end: the built helmctl binary driven as a child process against the real hub
// (with the in-tree plugins, signed by this build's development key) through a full admin flow,
// and its exits for API, usage and connection errors.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

extern char** environ;

namespace helm::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kPassword = "owner password 123";
constexpr const char* kEmail = "owner@a.test";

using CtlResult = CliResult;

/// Runs helmctl with `args` and `input` on stdin, in an environment without HELM_* variables
/// and with HOME in `home`; returns its exit code and what it printed.
CtlResult helmctl(const std::vector<std::string>& args, const std::string& home,
                  const std::string& input = "",
                  const std::map<std::string, std::string>& env = {}) {
  return run_cli(HELMCTL_BINARY, args, home, input, env);
}

/// The line of a table whose first column is `first`, or "".
std::string row_of(const std::string& table, const std::string& first) {
  std::istringstream s(table);
  std::string line;
  while (std::getline(s, line)) {
    if (line.rfind(first + " ", 0) == 0) return line;
  }
  return "";
}

/// The value of a "Key: value" line, or "".
std::string field_of(const std::string& text, const std::string& key) {
  std::istringstream s(text);
  std::string line;
  while (std::getline(s, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      auto v = line.substr(key.size() + 1);
      auto first = v.find_first_not_of(' ');
      return first == std::string::npos ? "" : v.substr(first);
    }
  }
  return "";
}

class Helmctl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("helm-helmctl-e2e");
    extra_ = new TempDir("helm-helmctl-e2e-extra");
    std::string out;
    ASSERT_EQ(bootstrap_hub(dir_->path(), "Operators", kEmail, kPassword, &out), 0) << out;
    // Trusted: this build's development key (the in-tree plugins); nothing unsigned.
    // Also the test publisher's, for the bundle installed by InstallsAndUninstallsABundle.
    // Installs go to the first directory of the path: a scratch one, not the build tree.
    const std::string keys = extra_->file("trusted-keys");
    write_file(keys, read_file(HELM_DEV_PUB) + "\n" + read_file(HELM_TEST_TRUSTED_PUB) + "\n");
    fs::create_directories(extra_->file("installed"));
    HubOptions o{.data_dir = dir_->path(), .env = kFastPasswordEnv};
    o.env["HELM_PLUGINS_PATH"] = extra_->file("installed") + ":" + HELM_BUILD_PLUGINS_DIR;
    o.env["HELM_PLUGINS_ALLOW_UNSIGNED"] = "false";
    o.env["HELM_PLUGINS_TRUSTED_KEYS_FILE"] = keys;
    hub_ = new HubProcess(o);
    ASSERT_TRUE(hub_->ready()) << hub_->log();
  }

  static void TearDownTestSuite() {
    delete hub_;
    delete extra_;
    delete dir_;
  }

  void SetUp() override {
    if (hub_ == nullptr || !hub_->ready()) GTEST_SKIP() << "the hub did not start";
    home_ = std::make_unique<TempDir>("helm-helmctl-home");
  }

  /// helmctl against the test hub, as whoever is logged in under this test's HOME.
  CtlResult ctl(std::vector<std::string> args, const std::string& input = "") {
    std::vector<std::string> full{"--server", hub_->base_url(), "--ca-file", hub_->ca_file()};
    full.insert(full.end(), args.begin(), args.end());
    return helmctl(full, home_->path(), input);
  }

  CtlResult login() {
    return ctl({"login", "--email", kEmail, "--password-stdin"}, std::string(kPassword) + "\n");
  }

  static inline TempDir* dir_ = nullptr;
  static inline TempDir* extra_ = nullptr;
  static inline HubProcess* hub_ = nullptr;
  std::unique_ptr<TempDir> home_;
};

TEST_F(Helmctl, FullAdminFlow) {
  // Login with the password on stdin: the token is saved 0600 and never printed.
  CtlResult r = login();
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find(kEmail), std::string::npos) << describe(r);
  const std::string token_file = home_->path() + "/.config/helmctl/token";
  ASSERT_TRUE(fs::exists(token_file));
  struct stat st {};
  ASSERT_EQ(::stat(token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  const std::string token = read_file(token_file);
  ASSERT_GT(token.size(), 20u);
  EXPECT_EQ(r.out.find(token.substr(0, token.size() - 1)), std::string::npos) << "token printed";

  r = ctl({"whoami"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(field_of(r.out, "Email"), kEmail) << describe(r);
  EXPECT_EQ(field_of(r.out, "Role"), "owner") << describe(r);

  // Plugins: example-echo is there and running; disable, enable, reload.
  r = ctl({"plugins", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  std::string row = row_of(r.out, "example-echo");
  EXPECT_NE(row.find("running"), std::string::npos) << describe(r);

  r = ctl({"plugins", "disable", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  r = ctl({"plugins", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  row = row_of(r.out, "example-echo");
  EXPECT_NE(row.find("disabled"), std::string::npos) << describe(r);
  EXPECT_EQ(row.find("running"), std::string::npos) << describe(r);

  r = ctl({"plugins", "enable", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("running"), std::string::npos) << describe(r);
  r = ctl({"plugins", "reload", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("reloaded"), std::string::npos) << describe(r);
  r = ctl({"plugins", "list"});
  EXPECT_NE(row_of(r.out, "example-echo").find("running"), std::string::npos) << describe(r);

  // Hub-wide config with ETags: read, write with the right ETag, then a stale one is refused.
  r = ctl({"plugins", "config", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string etag = field_of(r.out, "ETag");
  ASSERT_FALSE(etag.empty()) << describe(r);
  r = ctl({"plugins", "config", "example-echo", "--set-json", R"({"max_delay_ms": 1234})",
           "--if-match", etag});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("1234"), std::string::npos) << describe(r);
  EXPECT_NE(field_of(r.out, "ETag"), etag) << describe(r);
  r = ctl({"plugins", "config", "example-echo", "--set-json", R"({"max_delay_ms": 99})",
           "--if-match", etag});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("412"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("Precondition Failed"), std::string::npos) << describe(r);
  r = ctl({"plugins", "config", "example-echo"});
  EXPECT_NE(r.out.find("1234"), std::string::npos) << "the stale write changed nothing\n"
                                                   << describe(r);
  // A configuration the schema refuses: 422 with the field named.
  r = ctl({"plugins", "validate", "example-echo", "--set-json", R"({"max_delay_ms": "x"})"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("422"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("max_delay_ms"), std::string::npos) << describe(r);

  // Per organization: turn it on and invoke an operation.
  r = ctl({"plugins", "org-enable", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  r = ctl({"plugins", "invoke", "example-echo", "echo", "--input-json",
           R"({"marker": "helmctl-e2e-7781"})"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("helmctl-e2e-7781"), std::string::npos) << describe(r);
  r = ctl({"plugins", "schema", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("echo.delayed"), std::string::npos) << describe(r);

  // Secrets: the value goes on stdin and is never shown back.
  const std::string value = "s3cr3t-value-8842";
  r = ctl({"secrets", "put", "halopsa/client_secret"}, value + "\n");
  ASSERT_EQ(r.code, 0) << describe(r);
  r = ctl({"secrets", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(row_of(r.out, "halopsa/client_secret"), "") << describe(r);
  EXPECT_EQ(r.out.find(value), std::string::npos) << describe(r);
  r = ctl({"-o", "json", "secrets", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.out.find(value), std::string::npos) << describe(r);
  r = ctl({"secrets", "delete", "halopsa/client_secret"});
  ASSERT_EQ(r.code, 0) << describe(r);
  r = ctl({"secrets", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(row_of(r.out, "halopsa/client_secret"), "") << describe(r);

  // Tenancy and enrollment keys.
  r = ctl({"-o", "json", "clients", "create", "Acme Dental"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json client = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(client.is_object()) << describe(r);
  const std::string client_id = client.value("id", "");
  ASSERT_FALSE(client_id.empty()) << describe(r);
  r = ctl({"clients", "list"});
  EXPECT_NE(row_of(r.out, client_id).find("Acme Dental"), std::string::npos) << describe(r);
  r = ctl({"sites", "create", client_id, "Main Office"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string site_id = field_of(r.out, "ID");
  ASSERT_FALSE(site_id.empty()) << describe(r);
  r = ctl({"sites", "list", client_id});
  EXPECT_NE(row_of(r.out, site_id).find("Main Office"), std::string::npos) << describe(r);

  r = ctl({"enrollment-keys", "create", "--client", client_id, "--site", site_id, "--uses", "3",
           "--expires-in", "3600"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string key_id = field_of(r.out, "ID");
  const std::string key = field_of(r.out, "Key");
  ASSERT_FALSE(key_id.empty()) << describe(r);
  ASSERT_GT(key.size(), 12u) << describe(r);
  r = ctl({"enrollment-keys", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  row = row_of(r.out, key_id);
  ASSERT_NE(row, "") << describe(r);
  EXPECT_EQ(r.out.find(key), std::string::npos) << "the key is shown only once\n" << describe(r);
  r = ctl({"-o", "json", "enrollment-keys", "list"});
  json keys = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(keys.is_object()) << describe(r);
  ASSERT_EQ(keys["items"].size(), 1u) << describe(r);
  EXPECT_EQ(keys["items"][0]["usable"], true);
  r = ctl({"enrollment-keys", "revoke", key_id});
  ASSERT_EQ(r.code, 0) << describe(r);
  r = ctl({"-o", "json", "enrollment-keys", "list"});
  keys = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(keys.is_object()) << describe(r);
  ASSERT_EQ(keys["items"].size(), 1u) << describe(r);
  EXPECT_EQ(keys["items"][0]["revoked"], true) << describe(r);
  EXPECT_EQ(keys["items"][0]["usable"], false) << describe(r);

  // No devices enrolled: the table is its header alone, the JSON an empty list.
  r = ctl({"devices", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.out.rfind("ID ", 0), 0u) << describe(r);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << describe(r);
  r = ctl({"-o", "json", "devices", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json devices = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(devices.is_object()) << describe(r);
  EXPECT_TRUE(devices["items"].is_array() && devices["items"].empty()) << describe(r);

  // -o json is the API's JSON.
  r = ctl({"-o", "json", "plugins", "list"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json plugins = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(plugins.is_object()) << describe(r);
  bool found = false;
  for (const auto& p : plugins["items"]) {
    if (p.value("name", "") == "example-echo") found = p.value("state", "") == "running";
  }
  EXPECT_TRUE(found) << describe(r);

  // Logout ends the session on the hub and forgets the token.
  r = ctl({"logout"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_FALSE(fs::exists(token_file));
  r = ctl({"--token", token.substr(0, token.size() - 1), "whoami"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << describe(r);
}

TEST_F(Helmctl, OrganizationSettingsGrantsAndProblems) {
  ASSERT_EQ(login().code, 0);
  CtlResult r = ctl({"plugins", "org-config", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string etag = field_of(r.out, "ETag");
  ASSERT_FALSE(etag.empty()) << describe(r);
  r = ctl({"plugins", "org-config", "example-echo", "--set-json", "{}", "--if-match", etag});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(field_of(r.out, "ETag"), etag) << describe(r);
  r = ctl({"plugins", "org-config", "example-echo", "--set-json", "{}", "--if-match", etag});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("412"), std::string::npos) << describe(r);
  // The schema allows no settings at all: the field is named.
  r = ctl({"plugins", "org-config", "example-echo", "--set-json", R"({"bogus_setting": 1})"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("422"), std::string::npos) << describe(r);

  // Grants: only declared secrets (example-echo declares none).
  r = ctl({"plugins", "grants", "example-echo", "--set", "undeclared/secret"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("undeclared/secret"), std::string::npos) << describe(r);
  r = ctl({"-o", "json", "plugins", "grants", "example-echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json grants = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(grants.is_object()) << describe(r);
  EXPECT_EQ(grants["secrets"], json::array()) << describe(r);

  // Objects that are not there, and a command kind the hub does not know.
  const std::string nobody = "0191ffff-0000-7000-8000-000000000000";
  r = ctl({"commands", "run", nobody, "ping"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);
  r = ctl({"commands", "get", nobody});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);
  r = ctl({"devices", "delete", nobody});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);
  r = ctl({"commands", "run", nobody, "frobnicate"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("/kind"), std::string::npos) << describe(r);
  r = ctl({"plugins", "get", "no-such-plugin"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);
}

TEST_F(Helmctl, InstallsAndUninstallsABundle) {
  ASSERT_EQ(login().code, 0);
  // The publisher's side: a bundle of test-misbehaving with its own (test publisher) signature.
  const std::string bundle = home_->file("misbehaving.hpb");
  ASSERT_EQ(std::system((std::string(HELM_PLUGIN_TOOL) + " pack --dir '" + HELM_TEST_PLUGINS_DIR +
                         "/test-misbehaving' --out '" + bundle + "' > /dev/null")
                            .c_str()),
            0);

  CtlResult r = ctl({"plugins", "install", bundle});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("test-misbehaving"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("installed, disabled"), std::string::npos) << describe(r);
  EXPECT_TRUE(fs::exists(extra_->file("installed") + "/test-misbehaving/manifest.json"));
  r = ctl({"-o", "json", "plugins", "get", "test-misbehaving"});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json got = json::parse(r.out);
  EXPECT_EQ(got["state"], "disabled");
  EXPECT_NE(got["signer"].get<std::string>().find("signed by"), std::string::npos) << got;

  // Again: refused as an API error (409), nothing changes.
  r = ctl({"plugins", "install", bundle});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("already installed"), std::string::npos) << describe(r);
  // A file that is not a bundle: 422 with the reason.
  write_file(home_->file("junk.hpb"), "not a bundle");
  r = ctl({"plugins", "install", home_->file("junk.hpb")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("422"), std::string::npos) << describe(r);

  r = ctl({"plugins", "uninstall", "test-misbehaving"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("uninstalled"), std::string::npos) << describe(r);
  EXPECT_FALSE(fs::exists(extra_->file("installed") + "/test-misbehaving"));
  r = ctl({"plugins", "get", "test-misbehaving"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("404"), std::string::npos) << describe(r);
}

TEST_F(Helmctl, WrongTokenIsAnApiErrorWith401) {
  CtlResult r = ctl({"--token", "not-a-real-token", "plugins", "list"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out, "") << describe(r);
  r = helmctl({"--server", hub_->base_url(), "--ca-file", hub_->ca_file(), "whoami"}, home_->path(),
              "", {{"HELM_TOKEN", "also-not-a-token"}});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << describe(r);
}

TEST_F(Helmctl, WrongPasswordIsAnApiErrorAndSavesNothing) {
  CtlResult r = ctl({"login", "--email", kEmail, "--password-stdin"}, "wrong password\n");
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << describe(r);
  EXPECT_FALSE(fs::exists(home_->path() + "/.config/helmctl/token"));
}

TEST_F(Helmctl, ServerFromEnvironmentAndConfigDir) {
  CtlResult r =
      helmctl({"--config-dir", home_->file("cfg"), "login", "--email", kEmail, "--password-stdin"},
              home_->path(), std::string(kPassword) + "\n",
              {{"HELM_SERVER", hub_->base_url()}, {"HELM_CA_FILE", hub_->ca_file()}});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(fs::exists(home_->file("cfg") + "/token"));
  r = helmctl({"--config-dir", home_->file("cfg"), "whoami"}, home_->path(), "",
              {{"HELM_SERVER", hub_->base_url()}, {"HELM_CA_FILE", hub_->ca_file()}});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(field_of(r.out, "Email"), kEmail) << describe(r);
}

TEST_F(Helmctl, UntrustedCertificateIsAConnectionError) {
  // No CA file: the hub's development certificate is not trusted by the system store.
  CtlResult r = helmctl({"--server", hub_->base_url(), "--token", "x", "whoami"}, home_->path());
  EXPECT_EQ(r.code, 3) << describe(r);
  EXPECT_NE(r.err.find("cannot reach"), std::string::npos) << describe(r);
}

TEST_F(Helmctl, PinnedPublicKeyInsteadOfACaFile) {
  // The SHA-256 of the hub certificate's public key (SPKI), as `openssl` computes it.
  const std::string pin_file = home_->file("pin");
  ASSERT_EQ(run_command("openssl x509 -in " + hub_->ca_file() +
                        " -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst "
                        "-sha256 -hex | awk '{print $2}' > " +
                        pin_file),
            0);
  std::string pin = read_file(pin_file);
  while (!pin.empty() && pin.back() == '\n')
    pin.pop_back();
  ASSERT_EQ(pin.size(), 64u) << pin;
  CtlResult r = helmctl(
      {"--server", hub_->base_url(), "--pin", pin, "login", "--email", kEmail, "--password-stdin"},
      home_->path(), std::string(kPassword) + "\n");
  ASSERT_EQ(r.code, 0) << describe(r);
  r = helmctl({"--server", hub_->base_url(), "--pin", pin, "whoami"}, home_->path());
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(field_of(r.out, "Email"), kEmail) << describe(r);
  // Another key: the connection is refused before anything is sent.
  std::string other = pin;
  other[0] = other[0] == '0' ? '1' : '0';
  r = helmctl({"--server", hub_->base_url(), "--pin", other, "whoami"}, home_->path());
  EXPECT_EQ(r.code, 3) << describe(r);
  EXPECT_NE(r.err.find("pinned"), std::string::npos) << describe(r);
}

TEST(HelmctlOffline, UnreachableServerIsExit3) {
  TempDir home("helm-helmctl-home");
  // A port nothing listens on: bind-and-close is racy, port 1 needs root to listen on.
  CtlResult r =
      helmctl({"--server", "https://127.0.0.1:1", "--token", "x", "plugins", "list"}, home.path());
  EXPECT_EQ(r.code, 3) << describe(r);
  EXPECT_NE(r.err.find("127.0.0.1"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out, "") << describe(r);
}

TEST(HelmctlOffline, UsageErrorsAreExit2AndHelpIsExit0) {
  TempDir home("helm-helmctl-home");
  CtlResult r = helmctl({"--help"}, home.path());
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("enrollment-keys"), std::string::npos) << describe(r);
  r = helmctl({"plugins", "--help"}, home.path());
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_NE(r.out.find("org-config"), std::string::npos) << describe(r);
  r = helmctl({"frobnicate"}, home.path());
  EXPECT_EQ(r.code, 2) << describe(r);
  r = helmctl({"--server", "https://127.0.0.1:1", "--token", "x", "plugins", "frobnicate"},
              home.path());
  EXPECT_EQ(r.code, 2) << describe(r);
  r = helmctl({"--server", "https://127.0.0.1:1", "--token", "x", "plugins", "invoke", "a", "b",
               "--input-json", "{not json"},
              home.path());
  EXPECT_EQ(r.code, 2) << describe(r);
  // Secret values never come from the command line.
  r = helmctl(
      {"--server", "https://127.0.0.1:1", "--token", "x", "secrets", "put", "a", "--value", "v"},
      home.path());
  EXPECT_EQ(r.code, 2) << describe(r);
  // Not logged in.
  r = helmctl({"--server", "https://127.0.0.1:1", "devices", "list"}, home.path());
  EXPECT_EQ(r.code, 2) << describe(r);
  EXPECT_NE(r.err.find("login"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace helm::test
