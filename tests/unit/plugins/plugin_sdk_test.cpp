// The C++ SDK layer (helm/plugin.hpp) driven in-process through its C entry table: calls complete
// exactly once, nothing thrown crosses the boundary, errors are typed and bounded, configuration
// helpers check types, and the host wrappers respect struct_size.
#include <helm/plugin.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_host.hpp"

namespace {

using helm::plugins::testing::TestHost;
using helm::sdk::Call;
using helm::sdk::Config;
using helm::sdk::Failure;
using helm::sdk::Host;
using helm::sdk::Plugin;
using helm::sdk::Status;

/// Collects the completions of one call.
struct Completion {
  std::mutex mutex;
  std::condition_variable changed;
  int count = 0;
  helm_status status = -1;
  std::string output;
  std::thread::id thread;

  static void complete(void* ctx, helm_status status, const char* output, size_t length) {
    auto* self = static_cast<Completion*>(ctx);
    const std::lock_guard<std::mutex> lock(self->mutex);
    ++self->count;
    self->status = status;
    self->output.assign(output == nullptr ? "" : output, length);
    self->thread = std::this_thread::get_id();
    self->changed.notify_all();
  }

  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, timeout, [this] { return count > 0; });
  }
};

class SdkTestPlugin final : public Plugin {
 public:
  SdkTestPlugin(Host host, const Config& config) : Plugin(host) {
    if (config.get_or<bool>("refuse", false)) {
      throw Failure(Status::kInvalidInput, "refused on purpose");
    }
  }
  ~SdkTestPlugin() override {
    for (std::thread& thread : threads_)
      thread.join();
  }

  void invoke(Call call) override {
    ++invocations;
    const std::string& op = call.op();
    if (op == "twice") {
      first_completion = call.complete({{"n", 1}});
      second_completion = call.complete({{"n", 2}});
    } else if (op == "drop") {
      return;
    } else if (op == "throw") {
      throw std::runtime_error("kaput");
    } else if (op == "thread") {
      threads_.emplace_back([call]() mutable { call.complete({{"from", "thread"}}); });
    } else if (op == "bad.utf8") {
      call.complete(nlohmann::json("\xff\xfe"));
    } else if (op == "fail.ok") {
      call.fail(Status::kOk, "not really ok");
    } else {
      call.complete(call.input());
    }
  }

  std::atomic<int> invocations{0};
  std::atomic<bool> first_completion{false};
  std::atomic<bool> second_completion{false};

 private:
  std::vector<std::thread> threads_;
};

constexpr helm_plugin_v1 kTable = helm::sdk::detail::plugin_table<SdkTestPlugin>("sdk-test");

helm_error make_error() {
  helm_error error;
  std::memset(&error, 0, sizeof error);
  error.struct_size = sizeof error;
  return error;
}

/// A created instance of SdkTestPlugin, destroyed at the end of the test.
class SdkPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    helm_error error = make_error();
    ASSERT_EQ(kTable.create(&host_.api(), "{}", 2, &instance_, &error), HELM_STATUS_OK)
        << error.message;
  }
  void TearDown() override {
    if (instance_ != nullptr) kTable.destroy(instance_);
  }

  SdkTestPlugin& plugin() {
    return static_cast<SdkTestPlugin&>(*reinterpret_cast<Plugin*>(instance_));
  }

  /// Invokes `op` with `input` and returns once invoke() has returned.
  void invoke(const std::string& op, const std::string& input, Completion& completion) {
    helm_call call{};
    call.struct_size = sizeof call;
    call.call_id = 7;
    call.op = op.c_str();
    call.op_len = op.size();
    call.input_json = input.c_str();
    call.input_len = input.size();
    call.organization_id = "org-1";
    call.organization_id_len = 5;
    call.org_config_json = "{}";
    call.org_config_len = 2;
    call.complete = &Completion::complete;
    call.call_ctx = &completion;
    kTable.invoke(instance_, &call);
  }

  TestHost host_;
  helm_plugin_instance* instance_ = nullptr;
};

TEST(SdkEntryTable, DescribesThePluginWithEveryFunctionSet) {
  EXPECT_EQ(kTable.abi_major, HELM_PLUGIN_ABI_MAJOR);
  EXPECT_EQ(kTable.abi_minor, HELM_PLUGIN_ABI_MINOR);
  EXPECT_EQ(kTable.struct_size, sizeof(helm_plugin_v1));
  EXPECT_STREQ(kTable.name, "sdk-test");
  EXPECT_NE(kTable.create, nullptr);
  EXPECT_NE(kTable.start, nullptr);
  EXPECT_NE(kTable.stop, nullptr);
  EXPECT_NE(kTable.destroy, nullptr);
  EXPECT_NE(kTable.configure, nullptr);
  EXPECT_NE(kTable.invoke, nullptr);
  EXPECT_NE(kTable.cancel, nullptr);
  EXPECT_NE(kTable.on_event, nullptr);
}

TEST(SdkCreate, AThrownFailureBecomesItsStatusAndMessage) {
  TestHost host;
  helm_plugin_instance* instance = nullptr;
  helm_error error = make_error();
  const std::string config = R"({"refuse": true})";
  EXPECT_EQ(kTable.create(&host.api(), config.data(), config.size(), &instance, &error),
            HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(error.status, HELM_STATUS_INVALID_INPUT);
  EXPECT_STREQ(error.message, "refused on purpose");
  EXPECT_EQ(instance, nullptr);
}

TEST(SdkCreate, ConfigurationThatIsNotJsonIsInvalidInput) {
  TestHost host;
  helm_plugin_instance* instance = nullptr;
  helm_error error = make_error();
  EXPECT_EQ(kTable.create(&host.api(), "{oops", 5, &instance, &error), HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(std::string(error.message).find("not valid JSON"), std::string::npos) << error.message;
  EXPECT_EQ(instance, nullptr);
}

TEST_F(SdkPluginTest, ACallCompletesExactlyOnce) {
  Completion completion;
  invoke("twice", "{}", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.count, 1);
  EXPECT_EQ(completion.status, HELM_STATUS_OK);
  EXPECT_EQ(nlohmann::json::parse(completion.output), nlohmann::json({{"n", 1}}));
  EXPECT_TRUE(plugin().first_completion);
  EXPECT_FALSE(plugin().second_completion);
}

TEST_F(SdkPluginTest, ADroppedCallCompletesAsInternalDropped) {
  Completion completion;
  invoke("drop", "{}", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.count, 1);
  EXPECT_EQ(completion.status, HELM_STATUS_INTERNAL);
  EXPECT_NE(completion.output.find("dropped"), std::string::npos) << completion.output;
}

TEST_F(SdkPluginTest, AnExceptionInInvokeCompletesAsInternalWithItsMessage) {
  Completion completion;
  invoke("throw", "{}", completion);  // must return normally: nothing crosses the boundary
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.count, 1);
  EXPECT_EQ(completion.status, HELM_STATUS_INTERNAL);
  EXPECT_NE(completion.output.find("operation \"throw\""), std::string::npos) << completion.output;
  EXPECT_NE(completion.output.find("kaput"), std::string::npos) << completion.output;
}

TEST_F(SdkPluginTest, InputThatIsNotJsonNeverReachesThePlugin) {
  Completion completion;
  invoke("echo", "{not json", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.status, HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(plugin().invocations, 0);
}

TEST(SdkCall, AMovedFromCallIsEmptyAndCompletesNothing) {
  Completion completion;
  helm_call raw{};
  raw.struct_size = sizeof raw;
  raw.call_id = 1;
  raw.complete = &Completion::complete;
  raw.call_ctx = &completion;
  Call call(std::make_shared<helm::sdk::detail::CallState>(raw));
  Call taken = std::move(call);
  EXPECT_FALSE(call.complete({}));  // NOLINT(bugprone-use-after-move): what this test checks
  EXPECT_FALSE(call.fail(Status::kInternal, "x"));
  EXPECT_TRUE(call.completed());
  EXPECT_EQ(completion.count, 0);
  EXPECT_TRUE(taken.complete({{"ok", true}}));
  EXPECT_EQ(completion.count, 1);
}

TEST_F(SdkPluginTest, ACallCanBeCompletedFromAnotherThread) {
  Completion completion;
  invoke("thread", "{}", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.status, HELM_STATUS_OK);
  EXPECT_NE(completion.thread, std::this_thread::get_id());
}

TEST_F(SdkPluginTest, AResultThatCannotBeSerializedCompletesAsInternal) {
  Completion completion;
  invoke("bad.utf8", "{}", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.status, HELM_STATUS_INTERNAL);
  EXPECT_NE(completion.output.find("serializing"), std::string::npos) << completion.output;
}

TEST_F(SdkPluginTest, FailingWithStatusOkIsReportedAsInternal) {
  Completion completion;
  invoke("fail.ok", "{}", completion);
  ASSERT_TRUE(completion.wait());
  EXPECT_EQ(completion.status, HELM_STATUS_INTERNAL);
}

TEST_F(SdkPluginTest, ConfigureIsRefusedAsUnsupportedByDefault) {
  helm_error error = make_error();
  EXPECT_EQ(kTable.configure(instance_, "{}", 2, &error), HELM_STATUS_UNSUPPORTED);
  EXPECT_NE(std::string(error.message).find("restarted"), std::string::npos) << error.message;
}

TEST(SdkErrors, MessagesAreTruncatedAtACharacterBoundary) {
  std::string message;
  for (int i = 0; i < 400; ++i)
    message += "\xc3\xa9";  // "é", two bytes each
  helm_error error = make_error();
  helm::sdk::detail::set_abi_error(&error, Status::kConflict, message);
  const std::size_t length = std::strlen(error.message);
  EXPECT_LE(length, HELM_ERROR_MESSAGE_CAPACITY - 1U);
  EXPECT_EQ(length % 2, 0U) << "a two-byte character was cut in half";
  EXPECT_EQ(error.status, HELM_STATUS_CONFLICT);
}

TEST(SdkErrors, NothingIsWrittenBeyondTheCallersStructSize) {
  helm_error error = make_error();
  std::memset(error.message, 'x', sizeof error.message);
  error.struct_size = static_cast<uint32_t>(offsetof(helm_error, message));
  helm::sdk::detail::set_abi_error(&error, Status::kNotFound, "gone");
  EXPECT_EQ(error.status, HELM_STATUS_NOT_FOUND);
  EXPECT_EQ(error.message[0], 'x');
  EXPECT_EQ(error.message[sizeof error.message - 1], 'x');
}

TEST(SdkErrors, AnUnterminatedMessageFromTheHostIsReadWithinBounds) {
  helm_error error = make_error();
  std::memset(error.message, 'a', sizeof error.message);
  const helm::sdk::Error read = helm::sdk::detail::error_from_abi(HELM_STATUS_TIMEOUT, &error);
  EXPECT_EQ(read.status, Status::kTimeout);
  EXPECT_EQ(read.message.size(), sizeof error.message);
}

TEST(SdkErrors, StatusesTheSdkDoesNotKnowAreInternal) {
  EXPECT_EQ(helm::sdk::status_from_abi(99), Status::kInternal);
  EXPECT_EQ(helm::sdk::status_from_abi(-1), Status::kInternal);
  EXPECT_EQ(helm::sdk::status_from_abi(HELM_STATUS_UPSTREAM_RATE_LIMITED),
            Status::kUpstreamRateLimited);
  EXPECT_STREQ(helm::sdk::to_string(Status::kUpstreamRateLimited), "upstream_rate_limited");
}

TEST(SdkConfig, ReadsTypedValuesByKeyAndByJsonPointer) {
  const Config config = Config::parse(
      R"({"port": 8443, "name": "hub", "verbose": true, "tls": {"ca_file": "/etc/ca.pem"},
          "ratio": 0.5, "nothing": null})");
  EXPECT_EQ(config.get<int>("port"), 8443);
  EXPECT_EQ(config.get<std::uint16_t>("port"), 8443);
  EXPECT_EQ(config.get<std::string>("name"), "hub");
  EXPECT_TRUE(config.get<bool>("verbose"));
  EXPECT_DOUBLE_EQ(config.get<double>("ratio"), 0.5);
  EXPECT_EQ(config.get<std::string>("/tls/ca_file"), "/etc/ca.pem");
  EXPECT_EQ(config.get_or<int>("missing", 7), 7);
  EXPECT_EQ(config.get_or<int>("nothing", 9), 9);
  EXPECT_FALSE(config.find<std::string>("missing").has_value());
  EXPECT_TRUE(config.contains("port"));
  EXPECT_FALSE(config.contains("nothing"));
}

TEST(SdkConfig, MissingWrongTypeAndOutOfRangeValuesFailAsInvalidInputNamingTheKey) {
  const Config config = Config::parse(R"({"port": "8443", "small": 300, "negative": -1})");
  const auto message_of = [&](auto read) {
    try {
      read();
    } catch (const Failure& failure) {
      EXPECT_EQ(failure.status(), Status::kInvalidInput);
      return std::string(failure.what());
    }
    return std::string("no failure");
  };
  EXPECT_EQ(message_of([&] { (void)config.get<int>("port"); }),
            "configuration value \"port\" must be an integer, got string");
  EXPECT_EQ(message_of([&] { (void)config.get<int>("absent"); }),
            "configuration value \"absent\" is required");
  EXPECT_NE(message_of([&] { (void)config.get<std::uint8_t>("small"); }).find("out of range"),
            std::string::npos);
  EXPECT_NE(message_of([&] { (void)config.get<unsigned>("negative"); }).find("out of range"),
            std::string::npos);
  EXPECT_EQ(message_of([&] { (void)config.get_or<int>("port", 1); }),
            "configuration value \"port\" must be an integer, got string");
}

TEST(SdkHost, WrappersRoundTripThroughTheAbi) {
  TestHost test_host;
  const Host host(&test_host.api());
  host.info("hello");
  EXPECT_EQ(test_host.logs(), std::vector<std::string>({"2 hello"}));

  ASSERT_TRUE(host.kv_put("org-1", "cursor", "42").ok());
  const auto value = host.kv_get("org-1", "cursor");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value.value(), std::optional<std::string>("42"));
  EXPECT_EQ(host.kv_get("org-2", "cursor").value(), std::nullopt);
  ASSERT_TRUE(host.kv_erase("org-1", "cursor").ok());
  EXPECT_EQ(host.kv_get("org-1", "cursor").value(), std::nullopt);

  test_host.set_secret("halopsa/api-key", "s3cret");
  const auto outside = host.release_secret(nullptr, "halopsa/api-key");
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().status, Status::kUnauthorized);
  {
    auto lease = host.release_secret(TestHost::session(), "halopsa/api-key");
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease.value().view(), "s3cret");
    EXPECT_EQ(test_host.open_leases(), 1U);
  }
  EXPECT_EQ(test_host.open_leases(), 0U) << "the lease must end with its SecretLease";
  const auto missing = host.release_secret(TestHost::session(), "halopsa/other");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().status, Status::kNotFound);
  EXPECT_EQ(missing.error().message, "no secret named halopsa/other");

  bool called = false;
  const auto refused =
      host.http_request(nullptr, {"GET", "https://api.example.com/"}, [&](auto) { called = true; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, Status::kForbidden);
  EXPECT_FALSE(called) << "a refused request never calls back";

  const auto info = host.session_info(nullptr);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().at("organization_id"), "org-1");
}

TEST(SdkHost, FunctionsAnOlderHostLacksAreUnsupported) {
  TestHost test_host;
  helm_host_api older = test_host.api();
  older.struct_size = static_cast<uint32_t>(offsetof(helm_host_api, kv_get));
  const Host host(&older);
  const auto value = host.kv_get("org-1", "key");
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.error().status, Status::kUnsupported);
  EXPECT_FALSE(host.session_info(nullptr).ok());
  host.info("still here");  // log is within the older host's struct
  EXPECT_EQ(test_host.logs().size(), 1U);
}

}  // namespace
