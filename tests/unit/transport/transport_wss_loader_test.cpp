// transport-wss through the hub's own loader: its manifest passes the manifest schema, the loader
// accepts the built directory as an ABI 1.1 transport, and a PluginInstance starts and stops it.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fake_transport_host.hpp"
#include "helm/plugins/manifest.hpp"
#include "helm/plugins/plugin_instance.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "helm/schema/json_schema.hpp"
#include "test_certificate.hpp"

namespace helm::transport::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kPluginDir = fs::path(HELM_TRANSPORT_WSS_LIBRARY).parent_path();

json read_json(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

std::vector<std::string> problems(const schema::JsonSchema& schema, const json& instance) {
  std::vector<std::string> out;
  for (const auto& error : schema.validate(instance)) {
    out.push_back(error.instance_path + ": " + error.message);
  }
  return out;
}

const schema::JsonSchema& manifest_schema() {
  static const schema::JsonSchema compiled = [] {
    auto result = schema::JsonSchema::compile(json::parse(plugins::manifest_schema_text()));
    if (!result) throw std::runtime_error(result.error().message);
    return result.value();
  }();
  return compiled;
}

struct TempDir {
  fs::path path;
  TempDir() {
    char pattern[] = "/tmp/helm-transport-loader-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

TEST(TransportWssManifest, PassesTheManifestSchema) {
  EXPECT_EQ(problems(manifest_schema(), read_json(kPluginDir / "manifest.json")),
            std::vector<std::string>());
}

TEST(TransportWssManifest, ConfigSchemaAcceptsTheDocumentedKeysAndRejectsOthers) {
  const json manifest = read_json(kPluginDir / "manifest.json");
  auto compiled = schema::JsonSchema::compile(manifest["config_schema"]);
  ASSERT_TRUE(compiled) << compiled.error().message;
  const auto& config = compiled.value();
  EXPECT_TRUE(problems(config, json::object()).empty());
  EXPECT_TRUE(problems(config, json{{"listen", "0.0.0.0:7443"},
                                    {"tls_cert_file", "/etc/helm/agent.pem"},
                                    {"tls_key_file", "/etc/helm/agent.key"},
                                    {"max_frame_bytes", 1048576},
                                    {"send_queue_max", {{"frames", 256}, {"bytes", 1048576}}},
                                    {"io_threads", 2},
                                    {"handshake_timeout_s", 10}})
                  .empty());
  EXPECT_FALSE(problems(config, json{{"lisen", "0.0.0.0:7443"}}).empty());
  EXPECT_FALSE(problems(config, json{{"io_threads", 0}}).empty());
  EXPECT_FALSE(problems(config, json{{"send_queue_max", 5}}).empty());
}

TEST(TransportWssLoader, LoadsAsAnAbi11TransportAndRunsInAPluginInstance) {
  TempDir staging;
  plugins::LoadOptions options;
  options.allow_unsigned = true;
  options.staging_root = staging.path;
  options.manifest_validator = [](const json& manifest) {
    return problems(manifest_schema(), manifest);
  };
  auto loaded = plugins::load_plugin(kPluginDir, options);
  ASSERT_TRUE(loaded) << loaded.error().message;
  const auto& plugin = *loaded.value();
  EXPECT_EQ(plugin.name(), "transport-wss");
  // Built against this tree's SDK: the current minor (1.1 or later is what a transport needs).
  EXPECT_EQ(plugin.abi().minor, HELM_PLUGIN_ABI_MINOR);
  EXPECT_NE(plugin.functions().device_send, nullptr);
  EXPECT_NE(plugin.functions().device_close, nullptr);

  FakeTransportHost host(
      json{{"tls_cert_file", certificate().cert_file}, {"tls_key_file", certificate().key_file}}
          .dump());
  auto instance =
      plugins::PluginInstance::create(loaded.value(), host.api(), R"({"listen":"127.0.0.1:0"})");
  ASSERT_TRUE(instance) << instance.error().message;
  auto started = instance.value()->start();
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_EQ(host.listening_url().rfind("wss://127.0.0.1:", 0), 0u) << host.listening_url();
  EXPECT_TRUE(instance.value()->shutdown(std::chrono::seconds(5)));
}

}  // namespace
}  // namespace helm::transport::testing
