// A plugin built on helm/plugin.hpp whose operations fail in every way the SDK must contain, and
// which exercises the host services through the SDK's wrappers. With HELM_TEST_FAIL_CREATE its
// constructor throws, so create() fails.
//
// Configuration: {"fail_start": bool, "threshold": integer}.
// Operations:
//   ok                  completes {"ok": true}
//   context             completes {"input", "organization_id", "org_config", "call_id"}
//   throw.std           throws std::runtime_error
//   throw.unknown       throws an int
//   throw.failure       throws helm::sdk::Failure(kNotFound, ...)
//   complete.then.throw completes {"ok": true}, then throws
//   drop                returns without completing (the Call is dropped)
//   drop.later          drops the Call on another thread after 20 ms
//   host.log            logs "hello from the plugin", completes {}
//   host.kv             stores input.value under input.key, reads it back, completes {"value"}
//   host.secret         releases secret input.name, completes {"length"} (never the value)
//   host.timer          schedules a 1 ms timer and completes from its callback {"timer": status}
//   host.audit          audits input.action with input.detail (ABI 1.2), completes {"ok": true}
//   host.session        completes the session_info() of the call's session
//   host.publish        publishes input.payload on input.topic in the call's organization,
//                       completes {"ok": true}
//   events.seen         completes {"events": [{"topic", "organization_id", "source", "payload"}]}
//                       with every event on_event() received (subscribed: test.*, session.*)
#include <helm/plugin.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using helm::sdk::Call;
using helm::sdk::Config;
using helm::sdk::Error;
using helm::sdk::Host;
using helm::sdk::Result;
using helm::sdk::Status;

class MisbehavingPlugin final : public helm::sdk::Plugin {
 public:
  MisbehavingPlugin(Host host, const Config& config)
      : Plugin(host),
        fail_start_(config.get_or<bool>("fail_start", false)),
        threshold_(config.get_or<int>("threshold", 0)) {
#ifdef HELM_TEST_FAIL_CREATE
    throw std::runtime_error("cannot open the widget socket");
#endif
  }

  ~MisbehavingPlugin() override {
    const std::lock_guard<std::mutex> lock(dropper_mutex_);
    if (dropper_.joinable()) dropper_.join();
    for (std::thread& sleeper : sleepers_)
      sleeper.join();
  }

  Result<void> start() override {
    if (fail_start_) return Error{Status::kUnavailable, "the widget service is down"};
    return {};
  }

  Result<void> configure(const Config& config) override {
    threshold_ = config.get<int>("threshold");
    return {};
  }

  void invoke(Call call) override {
    const std::string& op = call.op();
    if (op == "ok") {
      call.complete({{"ok", true}, {"threshold", threshold_.load()}});
    } else if (op == "context") {
      call.complete({{"input", call.input()},
                     {"organization_id", call.organization_id()},
                     {"org_config", call.org_config().json()},
                     {"call_id", call.id()}});
    } else if (op == "throw.std") {
      throw std::runtime_error("boom");
    } else if (op == "throw.unknown") {
      throw 42;
    } else if (op == "throw.failure") {
      throw helm::sdk::Failure(Status::kNotFound, "no such widget");
    } else if (op == "complete.then.throw") {
      call.complete({{"ok", true}});
      throw std::logic_error("thrown after completing");
    } else if (op == "drop") {
      return;
    } else if (op == "drop.later") {
      const std::lock_guard<std::mutex> lock(dropper_mutex_);
      if (dropper_.joinable()) dropper_.join();
      dropper_ = std::thread([dropped = std::move(call)]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        Call gone = std::move(dropped);
      });
    } else if (op == "slow") {
      // Completes after delay_ms from a thread of its own: later than the manifest's timeout_ms
      // when the caller asks for it, so the host's deadline and late-completion handling show.
      const auto delay = std::chrono::milliseconds(call.input().value("delay_ms", 0));
      const std::lock_guard<std::mutex> lock(dropper_mutex_);
      sleepers_.emplace_back([call, delay]() mutable {
        std::this_thread::sleep_for(delay);
        call.complete({{"slept_ms", delay.count()}});
      });
    } else if (op == "host.http") {
      // GETs input.url through the host's broker; completes {"status", "body", "header"}.
      const std::string url = call.input().at("url").get<std::string>();
      helm::sdk::HttpRequest request;
      request.url = url;
      const Result<void> sent = host().http_request(
          call.session(), request, [call](Result<helm::sdk::HttpResponse> r) mutable {
            if (!r) {
              call.fail(r.error());
              return;
            }
            const std::string* marker = r.value().header("x-fake");
            call.complete({{"status", r.value().status_code},
                           {"body", r.value().body},
                           {"header", marker != nullptr ? *marker : ""}});
          });
      if (!sent) call.fail(sent.error());
    } else if (op == "host.log") {
      host().info("hello from the plugin");
      call.complete(nlohmann::json::object());
    } else if (op == "host.kv") {
      const std::string key = call.input().at("key").get<std::string>();
      const std::string value = call.input().at("value").get<std::string>();
      const Result<void> put = host().kv_put(call.organization_id(), key, value);
      if (!put) {
        call.fail(put.error());
        return;
      }
      const Result<std::optional<std::string>> got = host().kv_get(call.organization_id(), key);
      if (!got) {
        call.fail(got.error());
        return;
      }
      call.complete({{"value", got.value() ? nlohmann::json(*got.value()) : nullptr}});
    } else if (op == "host.secret") {
      Result<helm::sdk::SecretLease> lease =
          host().release_secret(call.session(), call.input().at("name").get<std::string>());
      if (!lease) {
        call.fail(lease.error());
        return;
      }
      const std::size_t length = lease.value().view().size();
      lease.value().reset();  // before completing, as the ABI asks
      call.complete({{"length", length}});
    } else if (op == "host.timer") {
      const Result<std::uint64_t> timer =
          host().schedule(std::chrono::milliseconds(1), [call](Status status) mutable {
            call.complete({{"timer", helm::sdk::to_string(status)}});
          });
      if (!timer) call.fail(timer.error());
    } else if (op == "host.audit") {
      const Result<void> audited =
          host().audit(call.session(), "", call.input().at("action").get<std::string>(),
                       call.input().value("detail", nlohmann::json::object()).dump());
      if (!audited) {
        call.fail(audited.error());
        return;
      }
      call.complete({{"ok", true}});
    } else if (op == "host.session") {
      Result<nlohmann::json> info = host().session_info(call.session());
      if (!info) {
        call.fail(info.error());
        return;
      }
      call.complete(std::move(info).value());
    } else if (op == "host.publish") {
      const Result<void> published =
          host().publish_event(call.organization_id(), call.input().at("topic").get<std::string>(),
                               call.input().value("payload", nlohmann::json::object()));
      if (!published) {
        call.fail(published.error());
        return;
      }
      call.complete({{"ok", true}});
    } else if (op == "events.seen") {
      nlohmann::json events = nlohmann::json::array();
      {
        const std::lock_guard<std::mutex> lock(events_mutex_);
        events = events_;
      }
      call.complete({{"events", std::move(events)}});
    } else {
      call.fail(Status::kUnsupported, "no operation \"" + op + "\"");
    }
  }

  void on_event(const helm::sdk::Event& event) override {
    const std::lock_guard<std::mutex> lock(events_mutex_);
    if (events_.size() >= 1000) return;
    events_.push_back({{"topic", event.topic},
                       {"organization_id", event.organization_id},
                       {"source", event.source},
                       {"payload", event.payload}});
  }

 private:
  const bool fail_start_;
  std::atomic<int> threshold_;
  std::mutex dropper_mutex_;  // guards dropper_
  std::thread dropper_;
  std::vector<std::thread> sleepers_;  // guarded by dropper_mutex_
  std::mutex events_mutex_;            // guards events_
  nlohmann::json events_ = nlohmann::json::array();
};

}  // namespace

#ifdef HELM_TEST_FAIL_CREATE
HELM_EXPORT_PLUGIN(MisbehavingPlugin, "test-failing-create")
#else
HELM_EXPORT_PLUGIN(MisbehavingPlugin, "test-misbehaving")
#endif
