// manifest.schema.json, compiled by helm::schema::JsonSchema (draft 7): every shipped manifest
// passes, each rule of the manifest contract rejects what it should, and the schema works as the
// loader's validator hook.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "helm/plugins/manifest.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "helm/schema/json_schema.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using helm::plugins::testing::read_file;

const helm::schema::JsonSchema& manifest_schema() {
  static const helm::schema::JsonSchema schema = [] {
    auto compiled = helm::schema::JsonSchema::compile(
        nlohmann::json::parse(helm::plugins::manifest_schema_text()));
    if (!compiled) throw std::runtime_error(compiled.error().message);
    return compiled.value();
  }();
  return schema;
}

std::vector<std::string> problems(const nlohmann::json& manifest) {
  std::vector<std::string> out;
  for (const auto& error : manifest_schema().validate(manifest)) {
    out.push_back(error.instance_path + ": " + error.message);
  }
  return out;
}

nlohmann::json echo_manifest() {
  return nlohmann::json::parse(read_file(fs::path(HELM_EXAMPLE_ECHO_DIR) / "manifest.json"));
}

TEST(ManifestSchema, CompilesAsDraft7) {
  const auto compiled = helm::schema::JsonSchema::compile(
      nlohmann::json::parse(helm::plugins::manifest_schema_text()));
  EXPECT_TRUE(compiled) << (compiled ? "" : compiled.error().message);
}

TEST(ManifestSchema, AcceptsEveryShippedManifest) {
  const std::vector<fs::path> manifests = {
      fs::path(HELM_EXAMPLE_ECHO_DIR) / "manifest.json",
      fs::path(HELM_PLUGIN_DIR_TEST_C_PLUGIN) / "manifest.json",
      fs::path(HELM_PLUGIN_DIR_TEST_MISBEHAVING) / "manifest.json",
      fs::path(HELM_PLUGIN_DIR_TEST_FAILING_CREATE) / "manifest.json",
  };
  for (const fs::path& file : manifests) {
    EXPECT_EQ(problems(nlohmann::json::parse(read_file(file))), std::vector<std::string>()) << file;
  }
}

struct Edit {
  const char* what;
  const char* patch;  // RFC 6902 JSON Patch
  bool valid;
};

TEST(ManifestSchema, EnforcesEachRuleOfTheManifestContract) {
  const std::vector<Edit> edits = {
      {"name with upper case", R"([{"op": "replace", "path": "/name", "value": "Echo"}])", false},
      {"one-letter name", R"([{"op": "replace", "path": "/name", "value": "e"}])", false},
      {"version not semver", R"([{"op": "replace", "path": "/version", "value": "1.0"}])", false},
      {"semver pre-release", R"([{"op": "replace", "path": "/version", "value": "1.2.3-rc.1+b7"}])",
       true},
      {"abi without minor", R"([{"op": "replace", "path": "/abi", "value": "1"}])", false},
      {"unknown first-party kind", R"([{"op": "replace", "path": "/kind", "value": "toaster"}])",
       false},
      {"first-party kind", R"([{"op": "replace", "path": "/kind", "value": "remote-session"}])",
       true},
      {"vendor kind", R"([{"op": "replace", "path": "/kind", "value": "x-acme-widget"}])", true},
      {"vendor kind without vendor", R"([{"op": "replace", "path": "/kind", "value": "x-widget"}])",
       false},
      {"library in a directory", R"([{"op": "replace", "path": "/library", "value": "lib/e.so"}])",
       false},
      {"library not .so", R"([{"op": "replace", "path": "/library", "value": "echo.dll"}])", false},
      {"no operations", R"([{"op": "remove", "path": "/operations"}])", false},
      {"operation name with a space",
       R"([{"op": "add", "path": "/operations/bad op", "value": {"description": "d", "input_schema": {}}}])",
       false},
      {"operation without input_schema",
       R"([{"op": "remove", "path": "/operations/echo/input_schema"}])", false},
      {"zero timeout", R"([{"op": "replace", "path": "/operations/echo/timeout_ms", "value": 0}])",
       false},
      {"input_schema that is no schema",
       R"([{"op": "replace", "path": "/operations/echo/input_schema", "value": {"type": "nonsense"}}])",
       false},
      {"config_schema that is no schema",
       R"([{"op": "replace", "path": "/config_schema", "value": {"minimum": "zero"}}])", false},
      {"secret glob",
       R"([{"op": "replace", "path": "/capabilities/secrets", "value": ["halopsa/**"]}])", true},
      {"secret glob with ***",
       R"([{"op": "replace", "path": "/capabilities/secrets", "value": ["halopsa/***"]}])", false},
      {"outbound host with wildcard and port",
       R"([{"op": "replace", "path": "/capabilities/outbound_hosts", "value": ["*.halopsa.com:8443", "api.example.com"]}])",
       true},
      {"outbound host as URL",
       R"([{"op": "replace", "path": "/capabilities/outbound_hosts", "value": ["https://api.example.com"]}])",
       false},
      {"outbound port out of range",
       R"([{"op": "replace", "path": "/capabilities/outbound_hosts", "value": ["example.com:70000"]}])",
       false},
      {"subscribe with trailing wildcard",
       R"([{"op": "replace", "path": "/capabilities/events/subscribe", "value": ["devices.*"]}])",
       true},
      {"the reserved name hub", R"([{"op": "replace", "path": "/name", "value": "hub"}])", false},
      {"a name starting with hub", R"([{"op": "replace", "path": "/name", "value": "hubspot"}])",
       true},
      {"publish the hub's session events",
       R"([{"op": "replace", "path": "/capabilities/events/publish", "value": ["session.ended"]}])",
       false},
      {"publish a topic starting with session",
       R"([{"op": "replace", "path": "/capabilities/events/publish", "value": ["sessions.note"]}])",
       true},
      {"publish with wildcard",
       R"([{"op": "replace", "path": "/capabilities/events/publish", "value": ["devices.*"]}])",
       false},
      {"unknown capability", R"([{"op": "add", "path": "/capabilities/root", "value": true}])",
       false},
      {"unknown member", R"([{"op": "add", "path": "/colour", "value": "blue"}])", false},
      {"extension member", R"([{"op": "add", "path": "/x-colour", "value": "blue"}])", true},
  };
  for (const Edit& edit : edits) {
    const nlohmann::json manifest = echo_manifest().patch(nlohmann::json::parse(edit.patch));
    const auto found = problems(manifest);
    EXPECT_EQ(found.empty(), edit.valid)
        << edit.what << (found.empty() ? std::string(": accepted") : ": " + found.front());
  }
}

TEST(ManifestSchema, ServesAsTheLoadersValidatorHook) {
  helm::plugins::LoadOptions options;
  options.allow_unsigned = true;
  options.manifest_validator = [](const nlohmann::json& manifest) { return problems(manifest); };
  const auto loaded = helm::plugins::load_plugin(HELM_EXAMPLE_ECHO_DIR, options);
  EXPECT_TRUE(loaded) << loaded.error().message;

  const auto refused = helm::plugins::load_plugin(HELM_PLUGIN_DIR_TEST_MANIFEST_ABI_2, options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, helm::plugins::LoadErrorCode::kAbiMajorUnsupported)
      << "a schema-valid manifest of another major is still refused by the loader";
}

}  // namespace
