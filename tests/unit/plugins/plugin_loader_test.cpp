// The host-side loader and instances against real .so plugins on disk: every deliberately broken
// plugin is refused with its own clear error before its code runs, example-echo and the test
// plugins run through the whole lifecycle, and faults inside a plugin come back as typed errors.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "helm/plugins/manifest.hpp"
#include "helm/plugins/plugin_instance.hpp"
#include "helm/plugins/plugin_loader.hpp"
#include "temp_dir.hpp"
#include "test_host.hpp"

namespace {

namespace fs = std::filesystem;
using helm::plugins::CallRequest;
using helm::plugins::CallResult;
using helm::plugins::CompletionHandler;
using helm::plugins::LoadedPlugin;
using helm::plugins::LoadErrorCode;
using helm::plugins::LoadOptions;
using helm::plugins::PluginInstance;
using helm::plugins::testing::read_file;
using helm::plugins::testing::TempDir;
using helm::plugins::testing::TestHost;
using namespace std::chrono_literals;

helm::signing::PublicKey trusted_key() {
  return helm::signing::PublicKey::load(HELM_TEST_TRUSTED_PUB).value();
}

LoadOptions options(bool allow_unsigned) {
  LoadOptions options;
  options.trusted_publisher_keys.push_back(trusted_key());
  options.allow_unsigned = allow_unsigned;
  return options;
}

fs::path test_plugin(const char* name) {
  return fs::path(HELM_TEST_PLUGIN_ROOT) / name;
}

/// Collects the results of calls; waits for them.
class Results {
 public:
  CompletionHandler handler() {
    return [this](CallResult result) {
      const std::lock_guard<std::mutex> lock(mutex_);
      results_.push_back(std::move(result));
      threads_.push_back(std::this_thread::get_id());
      changed_.notify_all();
    };
  }

  /// The index-th result, waiting up to `timeout` for it.
  CallResult wait(std::size_t index = 0, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return results_.size() > index; })) {
      ADD_FAILURE() << "no result " << index << " within " << timeout.count() << " ms";
      return CallResult{-1, "timed out"};
    }
    return results_[index];
  }

  std::size_t count() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return results_.size();
  }

  std::thread::id thread(std::size_t index) {
    const std::lock_guard<std::mutex> lock(mutex_);
    return threads_.at(index);
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<CallResult> results_;
  std::vector<std::thread::id> threads_;
};

CallRequest request(const std::string& op, const std::string& input = "{}") {
  CallRequest call;
  call.op = op;
  call.input_json = input;
  call.session = TestHost::session();
  call.organization_id = "org-1";
  return call;
}

class LoaderTest : public ::testing::Test {
 protected:
  std::shared_ptr<const LoadedPlugin> load(const fs::path& directory, bool allow_unsigned,
                                           bool unlink_staged_copy = false) {
    LoadOptions load_options = options(allow_unsigned);
    load_options.unlink_staged_copy = unlink_staged_copy;
    auto loaded = helm::plugins::load_plugin(directory, load_options);
    if (!loaded) {
      ADD_FAILURE() << "loading " << directory << " failed: " << loaded.error().message;
      return nullptr;
    }
    return loaded.value();
  }

  /// Loads, creates with `config` and starts; records violations.
  std::unique_ptr<PluginInstance> start(const fs::path& directory, bool allow_unsigned,
                                        const std::string& config = "{}",
                                        bool unlink_staged_copy = false) {
    auto plugin = load(directory, allow_unsigned, unlink_staged_copy);
    if (!plugin) return nullptr;
    auto created = PluginInstance::create(plugin, host_.api(), config, [this](const auto& what) {
      const std::lock_guard<std::mutex> lock(violations_mutex_);
      violations_.push_back(what);
    });
    if (!created) {
      ADD_FAILURE() << created.error().message;
      return nullptr;
    }
    auto instance = std::move(created).value();
    const auto started = instance->start();
    if (!started) {
      ADD_FAILURE() << started.error().message;
      return nullptr;
    }
    return instance;
  }

  std::vector<std::string> violations() {
    const std::lock_guard<std::mutex> lock(violations_mutex_);
    return violations_;
  }

  TestHost host_;
  std::mutex violations_mutex_;
  std::vector<std::string> violations_;
};

// ---------------------------------------------------------------------------------------------
// Broken plugins: each refused with its own code and a message that says what is wrong.

struct BrokenPlugin {
  const char* test_name;
  fs::path directory;
  bool allow_unsigned;
  LoadErrorCode code;
  std::vector<std::string> message_parts;
};

void PrintTo(const BrokenPlugin& plugin, std::ostream* out) {
  *out << plugin.test_name;
}

std::vector<BrokenPlugin> broken_plugins() {
  return {
      {"ManifestMissing",
       test_plugin("no-such-plugin"),
       true,
       LoadErrorCode::kManifestMissing,
       {"there is no manifest.json"}},
      {"ManifestNotJson",
       test_plugin("test-manifest-not-json"),
       true,
       LoadErrorCode::kManifestInvalid,
       {"manifest.json is not valid JSON"}},
      {"ManifestLacksRequiredMembers",
       test_plugin("test-invalid-manifest"),
       true,
       LoadErrorCode::kManifestInvalid,
       {"\"version\" is required", "\"operations\" is required",
        "\"kind\" must be a non-empty string, got 7"}},
      {"ManifestDeclaresAbiMajor2",
       HELM_PLUGIN_DIR_TEST_MANIFEST_ABI_2,
       true,
       LoadErrorCode::kAbiMajorUnsupported,
       {"manifest.json declares plugin ABI 2.0", "implements plugin ABI 1.2"}},
      {"LibraryMissing",
       test_plugin("test-missing-library"),
       true,
       LoadErrorCode::kLibraryMissing,
       {"the library test-missing-library.so", "is missing"}},
      {"NotSigned",
       HELM_PLUGIN_DIR_TEST_UNSIGNED,
       false,
       LoadErrorCode::kNotSigned,
       {"not signed", "allow_unsigned_plugins"}},
      {"BadSignature",
       HELM_PLUGIN_DIR_TEST_BAD_SIGNATURE,
       false,
       LoadErrorCode::kBadSignature,
       {"manifest.json changed after signing"}},
      {"BadSignatureEvenWhenUnsignedPluginsAreAllowed",
       HELM_PLUGIN_DIR_TEST_BAD_SIGNATURE,
       true,
       LoadErrorCode::kBadSignature,
       {"signature does not match"}},
      {"UntrustedSignerEvenWhenUnsignedPluginsAreAllowed",
       HELM_PLUGIN_DIR_TEST_UNTRUSTED_SIGNER,
       true,
       LoadErrorCode::kUntrustedSigner,
       {"not a trusted publisher key"}},
      {"LibraryBuiltForAbiMajor2",
       HELM_PLUGIN_DIR_TEST_ABI_MAJOR_2,
       false,
       LoadErrorCode::kAbiMajorUnsupported,
       {"test-abi-major-2.so was built for plugin ABI 2.", "(major 2)",
        "implements plugin ABI 1.2"}},
      {"EntryStructTooSmall",
       HELM_PLUGIN_DIR_TEST_ENTRY_TOO_SMALL,
       true,
       LoadErrorCode::kEntryInvalid,
       {"entry struct of 16 bytes", "needs at least " + std::to_string(HELM_PLUGIN_V1_0_SIZE)}},
      {"MissingEntrySymbol",
       HELM_PLUGIN_DIR_TEST_NO_ENTRY,
       false,
       LoadErrorCode::kEntrySymbolMissing,
       {"does not export helm_plugin_entry"}},
      {"LibraryAndManifestNamesDiffer",
       HELM_PLUGIN_DIR_TEST_NAME_MISMATCH,
       true,
       LoadErrorCode::kNameMismatch,
       {"calls itself \"someone-else\"", "\"test-name-mismatch\""}},
  };
}

class BrokenPluginTest : public ::testing::TestWithParam<BrokenPlugin> {};

TEST_P(BrokenPluginTest, IsRefusedWithItsOwnClearError) {
  const BrokenPlugin& plugin = GetParam();
  const auto loaded = helm::plugins::load_plugin(plugin.directory, options(plugin.allow_unsigned));
  ASSERT_FALSE(loaded) << plugin.directory << " loaded";
  EXPECT_EQ(loaded.error().code, plugin.code)
      << "got " << helm::plugins::to_string(loaded.error().code) << ": " << loaded.error().message;
  EXPECT_EQ(loaded.error().message.rfind("plugin in " + plugin.directory.string() + ": ", 0), 0U)
      << loaded.error().message;
  for (const std::string& part : plugin.message_parts) {
    EXPECT_NE(loaded.error().message.find(part), std::string::npos)
        << "\"" << part << "\" not in: " << loaded.error().message;
  }
}

INSTANTIATE_TEST_SUITE_P(Loader, BrokenPluginTest, ::testing::ValuesIn(broken_plugins()),
                         [](const auto& test) { return std::string(test.param.test_name); });

TEST_F(LoaderTest, ProblemsFromTheValidatorHookAreReportedAsAnInvalidManifest) {
  LoadOptions hooked = options(true);
  hooked.manifest_validator = [](const nlohmann::json& manifest) {
    return std::vector<std::string>{"/kind: \"" + manifest.at("kind").get<std::string>() +
                                    "\" is not allowed here"};
  };
  const auto loaded = helm::plugins::load_plugin(HELM_EXAMPLE_ECHO_DIR, hooked);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, LoadErrorCode::kManifestInvalid);
  EXPECT_NE(loaded.error().message.find("/kind: \"x-helm-example\" is not allowed here"),
            std::string::npos)
      << loaded.error().message;
}

// ---------------------------------------------------------------------------------------------
// example-echo, loaded from disk.

TEST_F(LoaderTest, ExampleEchoLoadsUnsignedOnlyWhenAllowedAndEchoesItsInput) {
  const auto refused = helm::plugins::load_plugin(HELM_EXAMPLE_ECHO_DIR, options(false));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, LoadErrorCode::kNotSigned);

  auto plugin = load(HELM_EXAMPLE_ECHO_DIR, true);
  ASSERT_TRUE(plugin);
  EXPECT_EQ(plugin->name(), "example-echo");
  EXPECT_EQ(plugin->version(), "1.0.0");
  EXPECT_EQ(plugin->signer().describe(), "unsigned (allowed by allow_unsigned_plugins)");
  EXPECT_EQ(plugin->abi().major, 1);
  EXPECT_EQ(plugin->manifest().at("kind"), "x-helm-example");

  auto instance = start(HELM_EXAMPLE_ECHO_DIR, true);
  ASSERT_TRUE(instance);
  Results results;
  const std::string input = R"({"hello":"world","n":[1,2,3]})";
  instance->invoke(request("echo", input), results.handler());
  const CallResult result = results.wait();
  EXPECT_EQ(result.status, HELM_STATUS_OK) << result.output;
  EXPECT_EQ(nlohmann::json::parse(result.output), nlohmann::json::parse(input));

  instance->invoke(request("no.such.op"), results.handler());
  EXPECT_EQ(results.wait(1).status, HELM_STATUS_UNSUPPORTED);

  EXPECT_TRUE(instance->shutdown(5s));
  EXPECT_EQ(instance->state(), PluginInstance::State::kDestroyed);
  EXPECT_TRUE(violations().empty());
  const auto logs = host_.logs();
  EXPECT_NE(std::find(logs.begin(), logs.end(), "2 example-echo started"), logs.end());
}

TEST_F(LoaderTest, ExampleEchoCompletesADelayedCallFromItsOwnThread) {
  auto instance = start(HELM_EXAMPLE_ECHO_DIR, true);
  ASSERT_TRUE(instance);
  Results results;
  const auto started = std::chrono::steady_clock::now();
  instance->invoke(request("echo.delayed", R"({"delay_ms": 50, "tag": "late"})"),
                   results.handler());
  const CallResult result = results.wait();
  EXPECT_GE(std::chrono::steady_clock::now() - started, 50ms);
  EXPECT_EQ(result.status, HELM_STATUS_OK) << result.output;
  EXPECT_EQ(nlohmann::json::parse(result.output).at("tag"), "late");
  EXPECT_NE(results.thread(0), std::this_thread::get_id());
}

TEST_F(LoaderTest, ExampleEchoCancelsADelayedCall) {
  auto instance = start(HELM_EXAMPLE_ECHO_DIR, true);
  ASSERT_TRUE(instance);
  Results results;
  const std::uint64_t id =
      instance->invoke(request("echo.delayed", R"({"delay_ms": 30000})"), results.handler());
  EXPECT_EQ(instance->outstanding_calls(), 1U);
  instance->cancel(id);
  const CallResult result = results.wait();
  EXPECT_EQ(result.status, HELM_STATUS_CANCELLED) << result.output;
  EXPECT_EQ(instance->outstanding_calls(), 0U);
}

TEST_F(LoaderTest, ExampleEchoAppliesConfigurationAtRunTime) {
  auto instance = start(HELM_EXAMPLE_ECHO_DIR, true, R"({"max_delay_ms": 1000})");
  ASSERT_TRUE(instance);
  ASSERT_TRUE(instance->configure(R"({"max_delay_ms": 10})"));
  Results results;
  instance->invoke(request("echo.delayed", R"({"delay_ms": 50})"), results.handler());
  const CallResult result = results.wait();
  EXPECT_EQ(result.status, HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(result.output, "delay_ms 50 exceeds max_delay_ms 10");

  const auto refused = instance->configure(R"({"max_delay_ms": "soon"})");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().status, HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(refused.error().message.find("\"max_delay_ms\" must be an integer"), std::string::npos)
      << refused.error().message;
}

TEST_F(LoaderTest, StoppingExampleEchoCompletesItsPendingCallsAsCancelled) {
  auto instance = start(HELM_EXAMPLE_ECHO_DIR, true);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("echo.delayed", R"({"delay_ms": 30000})"), results.handler());
  instance->invoke(request("echo.delayed", R"({"delay_ms": 30000})"), results.handler());
  EXPECT_TRUE(instance->shutdown(5s));
  ASSERT_EQ(results.count(), 2U);
  EXPECT_EQ(results.wait(0).status, HELM_STATUS_CANCELLED);
  EXPECT_EQ(results.wait(1).output, "example-echo is stopping");

  Results late;
  instance->invoke(request("echo"), late.handler());
  EXPECT_EQ(late.wait().status, HELM_STATUS_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// Signed plugins and the C plugin.

TEST_F(LoaderTest, ASignedPluginLoadsAndNamesItsSigner) {
  auto plugin = load(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false);
  ASSERT_TRUE(plugin);
  EXPECT_TRUE(plugin->signer().is_signed);
  EXPECT_EQ(plugin->signer().key_id, trusted_key().id());
  EXPECT_EQ(plugin->signer().describe(), "signed by " + trusted_key().id());
}

TEST_F(LoaderTest, APluginInPlainCWorksWithOnlyTheRequiredFunctions) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("ping"), results.handler());
  EXPECT_EQ(results.wait().output, R"({"pong":true})");
  const auto configured = instance->configure("{}");
  ASSERT_FALSE(configured);
  EXPECT_EQ(configured.error().status, HELM_STATUS_UNSUPPORTED);
  EXPECT_FALSE(instance->deliver_event("test.topic", "org-1", "hub", "{}"));
  instance->cancel(12345);  // no cancel function: nothing happens
  EXPECT_TRUE(instance->shutdown(5s));
}

TEST_F(LoaderTest, ACallCompletedTwiceIsDeliveredOnceAndReported) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("complete.twice"), results.handler());
  EXPECT_EQ(results.wait().status, HELM_STATUS_OK);
  EXPECT_EQ(results.count(), 1U);
  EXPECT_EQ(instance->violations(), 1U);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_NE(violations()[0].find("plugin \"test-c-plugin\": completed call"), std::string::npos)
      << violations()[0];
  EXPECT_EQ(instance->outstanding_calls(), 0U);
}

TEST_F(LoaderTest, OutputThatIsNotJsonBecomesAnInternalError) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("bad.json"), results.handler());
  const CallResult result = results.wait();
  EXPECT_EQ(result.status, HELM_STATUS_INTERNAL);
  EXPECT_EQ(result.output, "the plugin returned a result that is not valid JSON");
  EXPECT_EQ(instance->violations(), 1U);
}

TEST_F(LoaderTest, AnInstanceWhoseCallNeverCompletesIsAbandonedNotDestroyed) {
  // Unlinked staged copy: the library stays loaded for good, but no file is left behind.
  auto instance = start(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false, "{}", true);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("hang"), results.handler());
  EXPECT_FALSE(instance->shutdown(50ms));
  EXPECT_EQ(instance->state(), PluginInstance::State::kAbandoned);
  EXPECT_EQ(instance->outstanding_calls(), 1U);
  ASSERT_FALSE(violations().empty());
  EXPECT_NE(violations().back().find("1 call(s) still not completed"), std::string::npos)
      << violations().back();
  EXPECT_NE(::dlopen(instance->plugin().staged_library_path().c_str(), RTLD_NOW | RTLD_NOLOAD),
            nullptr)
      << "an abandoned plugin's library must stay loaded";
}

// ---------------------------------------------------------------------------------------------
// Faults inside a C++ plugin come back as typed errors, never as crashes.

TEST_F(LoaderTest, ThrowingAndDroppingOperationsComeBackAsTypedErrors) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false);
  ASSERT_TRUE(instance);
  struct Expected {
    const char* op;
    helm_status status;
    std::vector<std::string> parts;
  };
  const std::vector<Expected> cases = {
      {"throw.std", HELM_STATUS_INTERNAL, {"operation \"throw.std\"", "boom"}},
      {"throw.unknown", HELM_STATUS_INTERNAL, {"not a std::exception"}},
      {"throw.failure", HELM_STATUS_NOT_FOUND, {"no such widget"}},
      {"complete.then.throw", HELM_STATUS_OK, {R"("ok":true)"}},
      {"drop", HELM_STATUS_INTERNAL, {"dropped"}},
      {"drop.later", HELM_STATUS_INTERNAL, {"dropped"}},
      {"nothing.like.this", HELM_STATUS_UNSUPPORTED, {"no operation \"nothing.like.this\""}},
  };
  for (const Expected& expected : cases) {
    SCOPED_TRACE(expected.op);
    Results results;
    instance->invoke(request(expected.op), results.handler());
    const CallResult result = results.wait();
    EXPECT_EQ(result.status, expected.status) << result.output;
    for (const std::string& part : expected.parts) {
      EXPECT_NE(result.output.find(part), std::string::npos) << result.output;
    }
    std::this_thread::sleep_for(5ms);  // a second completion would arrive now
    EXPECT_EQ(results.count(), 1U);
  }
  EXPECT_EQ(instance->violations(), 0U) << "the SDK contains every one of these";
  EXPECT_TRUE(instance->shutdown(5s));
}

TEST_F(LoaderTest, AFailingCreateReportsTheExceptionAsInternal) {
  auto plugin = load(HELM_PLUGIN_DIR_TEST_FAILING_CREATE, false);
  ASSERT_TRUE(plugin);
  const auto created = PluginInstance::create(plugin, host_.api(), "{}");
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().status, HELM_STATUS_INTERNAL);
  EXPECT_NE(created.error().message.find("cannot open the widget socket"), std::string::npos)
      << created.error().message;
  EXPECT_NE(created.error().message.find("plugin \"test-failing-create\": create() failed"),
            std::string::npos)
      << created.error().message;
}

TEST_F(LoaderTest, ConfigurationOfTheWrongTypeFailsCreateAsInvalidInput) {
  auto plugin = load(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false);
  ASSERT_TRUE(plugin);
  const auto created = PluginInstance::create(plugin, host_.api(), R"({"threshold": "high"})");
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().status, HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(created.error().message.find("\"threshold\" must be an integer, got string"),
            std::string::npos)
      << created.error().message;
}

TEST_F(LoaderTest, AFailingStartDestroysTheInstanceAndSaysWhy) {
  auto plugin = load(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false);
  ASSERT_TRUE(plugin);
  auto created = PluginInstance::create(plugin, host_.api(), R"({"fail_start": true})");
  ASSERT_TRUE(created) << created.error().message;
  auto instance = std::move(created).value();
  const auto started = instance->start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().status, HELM_STATUS_UNAVAILABLE);
  EXPECT_NE(started.error().message.find("the widget service is down"), std::string::npos);
  EXPECT_EQ(instance->state(), PluginInstance::State::kDestroyed);
  Results results;
  instance->invoke(request("ok"), results.handler());
  EXPECT_EQ(results.wait().status, HELM_STATUS_UNAVAILABLE);
}

TEST_F(LoaderTest, ConfigureReachesThePluginAndItsRefusalsAreTyped) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false, R"({"threshold": 1})");
  ASSERT_TRUE(instance);
  ASSERT_TRUE(instance->configure(R"({"threshold": 5})"));
  Results results;
  instance->invoke(request("ok"), results.handler());
  EXPECT_EQ(nlohmann::json::parse(results.wait().output).at("threshold"), 5);
  const auto refused = instance->configure("{}");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().status, HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(refused.error().message.find("\"threshold\" is required"), std::string::npos);
}

TEST_F(LoaderTest, ACallCarriesItsInputOrganizationAndSettings) {
  auto instance = start(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false);
  ASSERT_TRUE(instance);
  Results results;
  CallRequest call = request("context", R"({"device": "pc-7"})");
  call.organization_id = "acme";
  call.org_config_json = R"({"base_url": "https://acme.example.com"})";
  const std::uint64_t id = instance->invoke(call, results.handler());
  const auto context = nlohmann::json::parse(results.wait().output);
  EXPECT_EQ(context.at("input"), nlohmann::json::parse(R"({"device": "pc-7"})"));
  EXPECT_EQ(context.at("organization_id"), "acme");
  EXPECT_EQ(context.at("org_config").at("base_url"), "https://acme.example.com");
  EXPECT_EQ(context.at("call_id"), id);
}

TEST_F(LoaderTest, APluginReachesHostServicesThroughTheSdk) {
  host_.set_secret("test/token", "abcdef");
  auto instance = start(HELM_PLUGIN_DIR_TEST_MISBEHAVING, false);
  ASSERT_TRUE(instance);
  Results results;
  instance->invoke(request("host.log"), results.handler());
  instance->invoke(request("host.kv", R"({"key": "cursor", "value": "page-2"})"),
                   results.handler());
  instance->invoke(request("host.secret", R"({"name": "test/token"})"), results.handler());
  instance->invoke(request("host.secret", R"({"name": "test/other"})"), results.handler());
  CallRequest sessionless = request("host.secret", R"({"name": "test/token"})");
  sessionless.session = nullptr;
  instance->invoke(sessionless, results.handler());
  // The only call that completes later (from a timer thread), so it is the last result.
  instance->invoke(request("host.timer"), results.handler());
  EXPECT_EQ(results.wait(0).status, HELM_STATUS_OK);
  EXPECT_EQ(nlohmann::json::parse(results.wait(1).output).at("value"), "page-2");
  EXPECT_EQ(nlohmann::json::parse(results.wait(2).output).at("length"), 6);
  EXPECT_EQ(results.wait(3).status, HELM_STATUS_NOT_FOUND);
  EXPECT_EQ(results.wait(3).output, "no secret named test/other");
  EXPECT_EQ(results.wait(4).status, HELM_STATUS_UNAUTHORIZED);
  EXPECT_EQ(nlohmann::json::parse(results.wait(5).output).at("timer"), "ok");
  EXPECT_EQ(host_.open_leases(), 0U);
  const auto logs = host_.logs();
  EXPECT_NE(std::find(logs.begin(), logs.end(), "2 hello from the plugin"), logs.end());
  // A host must not destroy a plugin while one of its callbacks still runs on a host thread.
  host_.join_timers();
  EXPECT_TRUE(instance->shutdown(5s));
}

TEST_F(LoaderTest, CallsBeforeStartAreUnavailable) {
  auto plugin = load(HELM_PLUGIN_DIR_TEST_C_PLUGIN, false);
  ASSERT_TRUE(plugin);
  auto instance = PluginInstance::create(plugin, host_.api(), "{}").value();
  Results results;
  instance->invoke(request("ping"), results.handler());
  const CallResult result = results.wait();
  EXPECT_EQ(result.status, HELM_STATUS_UNAVAILABLE);
  EXPECT_EQ(result.output, "plugin \"test-c-plugin\" is not running");
  EXPECT_TRUE(instance->shutdown(1s));  // a created, never started instance is just destroyed
  EXPECT_EQ(instance->state(), PluginInstance::State::kDestroyed);
}

// ---------------------------------------------------------------------------------------------
// Staging, reloading and unloading.

TEST_F(LoaderTest, AChangedLibraryAtTheSamePathIsLoadedAnew) {
  TempDir dir;
  const fs::path original = HELM_PLUGIN_DIR_TEST_C_PLUGIN;
  fs::copy_file(original / "manifest.json", dir.path() / "manifest.json");
  fs::copy_file(original / "test-c-plugin.so", dir.path() / "test-c-plugin.so");
  auto first = load(dir.path(), true);
  ASSERT_TRUE(first);
  EXPECT_STREQ(first->functions().name, "test-c-plugin");

  // Same path, other bytes (a library that calls itself "someone-else"), first still loaded.
  fs::copy_file(fs::path(HELM_PLUGIN_DIR_TEST_NAME_MISMATCH) / "test-name-mismatch.so",
                dir.path() / "test-c-plugin.so", fs::copy_options::overwrite_existing);
  const auto second = helm::plugins::load_plugin(dir.path(), options(true));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, LoadErrorCode::kNameMismatch) << second.error().message;

  fs::copy_file(original / "test-c-plugin.so", dir.path() / "test-c-plugin.so",
                fs::copy_options::overwrite_existing);
  auto third = load(dir.path(), true);
  ASSERT_TRUE(third);
  EXPECT_NE(third->staged_library_path(), first->staged_library_path());
  EXPECT_NE(third->functions().create, first->functions().create)
      << "two loads of one path must be two images";
}

TEST_F(LoaderTest, TheStagedCopyIsPrivateAndGoesWhenTheLastReferenceUnloadsTheLibrary) {
  TempDir staging;
  LoadOptions staged_options = options(true);
  staged_options.staging_root = staging.path();
  auto loaded = helm::plugins::load_plugin(HELM_EXAMPLE_ECHO_DIR, staged_options);
  ASSERT_TRUE(loaded) << loaded.error().message;
  auto plugin = std::move(loaded).value();
  const fs::path staged = plugin->staged_library_path();
  EXPECT_EQ(staged.parent_path().parent_path(), staging.path());
  struct stat info {};
  ASSERT_EQ(::stat(staged.parent_path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700U);
  EXPECT_EQ(read_file(staged), read_file(plugin->library_path()));

  {
    auto instance = PluginInstance::create(plugin, host_.api(), "{}").value();
    ASSERT_TRUE(instance->start());
    Results results;
    instance->invoke(request("echo", "[1]"), results.handler());
    EXPECT_EQ(results.wait().output, "[1]");
  }  // shut down and destroyed here; `plugin` still holds the library

  void* handle = ::dlopen(staged.c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr) << "still referenced, so still loaded";
  ::dlclose(handle);

  plugin.reset();
  EXPECT_EQ(::dlopen(staged.c_str(), RTLD_NOW | RTLD_NOLOAD), nullptr)
      << "unloaded once the last reference is gone";
  EXPECT_TRUE(fs::is_empty(staging.path()));
}

TEST_F(LoaderTest, AnUnlinkedStagedCopyLeavesNothingOnDiskWhileThePluginRuns) {
  TempDir staging;
  LoadOptions unlinked = options(true);
  unlinked.staging_root = staging.path();
  unlinked.unlink_staged_copy = true;
  auto plugin = helm::plugins::load_plugin(HELM_EXAMPLE_ECHO_DIR, unlinked).value();
  EXPECT_TRUE(fs::is_empty(staging.path()));
  auto instance = PluginInstance::create(plugin, host_.api(), "{}").value();
  ASSERT_TRUE(instance->start());
  Results results;
  instance->invoke(request("echo", R"("still here")"), results.handler());
  EXPECT_EQ(results.wait().output, R"("still here")");
}

TEST_F(LoaderTest, ARefusedLibraryLeavesNothingInTheStagingRoot) {
  TempDir staging;
  LoadOptions staged_options = options(false);
  staged_options.staging_root = staging.path();
  EXPECT_FALSE(helm::plugins::load_plugin(HELM_PLUGIN_DIR_TEST_BAD_SIGNATURE, staged_options));
  EXPECT_FALSE(helm::plugins::load_plugin(HELM_PLUGIN_DIR_TEST_ABI_MAJOR_2, staged_options));
  EXPECT_TRUE(fs::is_empty(staging.path()));
}

// ---------------------------------------------------------------------------------------------
// Manifest helpers.

TEST(Manifest, TheBuiltInSchemaIsThePluginApiSchema) {
  EXPECT_EQ(nlohmann::json::parse(helm::plugins::manifest_schema_text()),
            nlohmann::json::parse(read_file(HELM_MANIFEST_SCHEMA_FILE)));
}

TEST(Manifest, AbiVersionsParseOnlyAsTwoDecimalNumbers) {
  using helm::plugins::AbiVersion;
  EXPECT_EQ(helm::plugins::parse_abi_version("1.0"), (AbiVersion{1, 0}));
  EXPECT_EQ(helm::plugins::parse_abi_version("2.13"), (AbiVersion{2, 13}));
  for (const char* bad : {"", "1", "1.", ".1", "01.0", "1.0.0", "a.b", "1.-1", "70000.0"}) {
    EXPECT_FALSE(helm::plugins::parse_abi_version(bad)) << bad;
  }
}

TEST(Manifest, BasicChecksNameEachProblem) {
  const auto problems = helm::plugins::check_manifest_basics(nlohmann::json::parse(
      R"({"name": "Bad Name", "version": "1.0.0", "abi": "one", "kind": "rmm",
          "library": "../escape.so", "operations": {"x": 1}})"));
  ASSERT_EQ(problems.size(), 4U);
  EXPECT_NE(problems[0].find("\"name\" must match"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("\"abi\" must be MAJOR.MINOR"), std::string::npos) << problems[1];
  EXPECT_NE(problems[2].find("\"library\" must be the file name"), std::string::npos);
  EXPECT_NE(problems[3].find("\"operations\" member \"x\""), std::string::npos);
  EXPECT_TRUE(
      helm::plugins::check_manifest_basics(
          nlohmann::json::parse(read_file(fs::path(HELM_EXAMPLE_ECHO_DIR) / "manifest.json")))
          .empty());
}

}  // namespace
