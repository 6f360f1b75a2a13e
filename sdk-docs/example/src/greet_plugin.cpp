// example-greet: one operation, "greet", that answers {"message": "<greeting>,
// <name><punctuation>"}. The greeting is each organization's own setting (org_config_schema); the
// punctuation is the hub-wide setting (config_schema), which the hub may change at run time through
// configure().
#include <helm/plugin.hpp>

#include <mutex>
#include <string>
#include <utility>

namespace {

using helm::sdk::Call;
using helm::sdk::Config;
using helm::sdk::Host;
using helm::sdk::Result;
using helm::sdk::Status;

class GreetPlugin final : public helm::sdk::Plugin {
 public:
  // create(): receives the hub-wide configuration, already valid against config_schema. A
  // Failure thrown here (Config::get_or throws one for a value of the wrong type) refuses it.
  GreetPlugin(Host host, const Config& config)
      : Plugin(host), punctuation_(config.get_or<std::string>("punctuation", "!")) {}

  // configure(): the hub-wide configuration changed while running. Returning {} means it is in
  // effect; it runs concurrently with invoke(), hence the mutex.
  Result<void> configure(const Config& config) override {
    auto punctuation = config.get_or<std::string>("punctuation", "!");
    const std::lock_guard<std::mutex> lock(mutex_);
    punctuation_ = std::move(punctuation);
    return {};
  }

  // invoke(): several host worker threads may be in here at once. Complete every call exactly
  // once; here at once, because greeting is quick.
  void invoke(Call call) override {
    if (call.op() != "greet") {
      call.fail(Status::kUnsupported, "example-greet has no operation \"" + call.op() + "\"");
      return;
    }
    // The hub validates the input against the operation's input_schema before invoke(); check
    // anyway, so that a host that did not gets a clear error rather than kInternal.
    const nlohmann::json& input = call.input();
    if (!input.is_object() || !input.contains("name") || !input.at("name").is_string()) {
      call.fail(Status::kInvalidInput, "\"name\" must be a string");
      return;
    }
    const auto name = input.at("name").get<std::string>();
    const auto greeting = call.org_config().get_or<std::string>("greeting", "Hello");
    std::string punctuation;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      punctuation = punctuation_;
    }
    host().debug("greeting someone for organization " + call.organization_id());
    call.complete({{"message", greeting + ", " + name + punctuation}});
  }

 private:
  std::mutex mutex_;  // guards punctuation_
  std::string punctuation_;
};

}  // namespace

// Exports helm_plugin_entry; the name must equal the manifest's "name".
HELM_EXPORT_PLUGIN(GreetPlugin, "example-greet")
