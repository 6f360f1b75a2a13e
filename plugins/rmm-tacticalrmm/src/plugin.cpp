// rmm-tacticalrmm: the `rmm` operations (sdk-docs/rmm-operations.md) against a self-hosted
// Tactical RMM. Every call releases the organization's API key from the vault inside the
// caller's session, sends it as X-API-KEY through the host's HTTPS broker, and ends the lease
// before it completes. Operations run as short chains of vendor requests completed from the
// broker's callbacks; nothing here blocks except the brief vault read in invoke().
#include <helm/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "vendor.hpp"

namespace helm::tacticalrmm {
namespace {

using nlohmann::json;
using sdk::Call;
using sdk::Config;
using sdk::Error;
using sdk::Host;
using sdk::HttpResponse;
using sdk::Result;
using sdk::Status;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

/// Hub-wide settings (config_schema).
struct Timing {
  milliseconds request_timeout{30'000};  ///< one ordinary vendor request
  milliseconds wait_margin{3'000};       ///< beyond timeout + 2 s for commands and scripts
};

Timing read_timing(const Config& config) {
  Timing timing;
  timing.request_timeout = milliseconds(config.get_or<std::uint32_t>("request_timeout_ms", 30'000));
  timing.wait_margin = milliseconds(config.get_or<std::uint32_t>("wait_margin_ms", 3'000));
  if (timing.request_timeout < milliseconds(100)) {
    throw sdk::Failure(Status::kInvalidInput, "request_timeout_ms must be at least 100");
  }
  return timing;
}

/// Tactical RMM answers cmd/ and runscript/ after the agent's timeout plus 2 s at most.
constexpr milliseconds kVendorGrace{2'000};
/// What a chain keeps for itself before the operation's deadline, to complete in time.
constexpr milliseconds kDeadlineGuard{250};

/// One vendor request of a call, kept so that a 429 can be retried once.
struct Request {
  std::string method;
  std::string path;  ///< starts and ends with '/'
  std::string query;
  std::string body;
  milliseconds timeout{0};
  Context context;
  std::function<void(const json&)> next;
};

/// One call in flight: its settings, its API key lease and the chain of vendor requests.
class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(Host host, Call call, OrgSettings settings, Timing timing)
      : host_(host),
        call_(std::move(call)),
        settings_(std::move(settings)),
        timing_(timing),
        deadline_(Clock::now() + call_.timeout()) {}

  const Call& call() const { return call_; }
  const OrgSettings& settings() const { return settings_; }
  const Timing& timing() const { return timing_; }
  Directory& directory() { return directory_; }

  /// Releases the organization's API key (blocks briefly on the vault). On failure the call is
  /// completed and false returned; no request has been made.
  bool open() {
    Result<sdk::SecretLease> key = host_.release_secret(call_.session(), settings_.api_key_secret);
    if (!key) {
      const Error& e = key.error();
      if (e.status == Status::kForbidden) {
        fail(Status::kForbidden, "rmm-tacticalrmm may not use the secret \"" +
                                     settings_.api_key_secret +
                                     "\" in this organization: an admin grants it with PUT "
                                     "/api/v1/orgs/{org}/plugins/rmm-tacticalrmm/grants");
      } else if (e.status == Status::kNotFound) {
        fail(Status::kNotFound, "the organization's vault holds no secret \"" +
                                    settings_.api_key_secret +
                                    "\": an admin stores the Tactical RMM API key there");
      } else {
        fail(e);
      }
      return false;
    }
    if (key->size() == 0) {
      fail(Status::kInvalidInput,
           "the secret \"" + settings_.api_key_secret + "\" is empty: store the API key in it");
      return false;
    }
    key_ = std::move(*key);
    return true;
  }

  void send(Request request) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline_ - Clock::now()) - kDeadlineGuard;
    if (left <= milliseconds(0)) {
      fail(Status::kTimeout, "the operation's deadline passed before Tactical RMM answered (" +
                                 request.context.action + ")");
      return;
    }
    const milliseconds timeout = std::min(request.timeout, left);
    // Kept for a retry; the views below point into it, so it moves first.
    auto shared = std::make_shared<Request>(std::move(request));
    const std::string url = make_url(settings_.base_url, shared->path, shared->query);
    sdk::HttpRequest http;
    http.method = shared->method;
    http.url = url;
    http.headers = {{"X-API-KEY", key_.view()}, {"Accept", "application/json"}};
    if (!shared->body.empty()) http.headers.push_back({"Content-Type", "application/json"});
    http.body = shared->body;
    http.timeout = timeout;
    auto self = shared_from_this();
    const Result<void> started =
        host_.http_request(call_.session(), http, [self, shared, timeout](Result<HttpResponse> r) {
          self->on_response(shared, timeout, std::move(r));
        });
    if (!started) {
      const Error& e = started.error();
      fail(e.status, "the hub refused the request to Tactical RMM at " + settings_.base_url + ": " +
                         scrub(e.message, key_.view()));
    }
  }

  void succeed(const json& output) {
    key_.reset();
    call_.complete(output);
  }

  void fail(Status status, const std::string& message) {
    key_.reset();
    call_.fail(status, message);
  }
  void fail(const Error& error) { fail(error.status, error.message); }

 private:
  void on_response(const std::shared_ptr<Request>& request, milliseconds timeout,
                   Result<HttpResponse> result) {
    const Context& context = request->context;
    if (!result) {
      const Error& e = result.error();
      if (e.status == Status::kTimeout) {
        fail(Status::kTimeout, "Tactical RMM did not answer within " +
                                   std::to_string((timeout.count() + 999) / 1000) + " s (" +
                                   context.action + ")");
      } else if (e.status == Status::kCancelled) {
        fail(Status::kCancelled,
             "the request to Tactical RMM was cancelled (" + context.action + ")");
      } else {
        fail(Status::kUpstreamUnavailable, "cannot reach Tactical RMM at " + settings_.base_url +
                                               " (" + context.action +
                                               "): " + scrub(e.message, key_.view()));
      }
      return;
    }
    const HttpResponse& response = *result;
    if (response.status_code == 429 && !retried_ && retry_after_429(request, response)) return;
    if (auto error = error_for(response, context, key_.view())) {
      fail(*error);
      return;
    }
    const json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      fail(Status::kUpstreamError,
           "Tactical RMM answered with something that is not JSON (" + context.action + ")");
      return;
    }
    try {
      request->next(body);
    } catch (const std::exception&) {
      // nlohmann's type errors on an answer of an unexpected shape end up here.
      fail(Status::kUpstreamError,
           "Tactical RMM sent an answer the plugin cannot read (" + context.action + ")");
    }
  }

  /// Honours one 429 per call by waiting Retry-After when it fits in the deadline; returns
  /// whether a retry was scheduled.
  bool retry_after_429(const std::shared_ptr<Request>& request, const HttpResponse& response) {
    long long seconds = 1;
    if (const std::string* after = response.header("Retry-After")) {
      try {
        seconds = std::stoll(*after);
      } catch (const std::exception&) {
        seconds = -1;
      }
    }
    if (seconds < 0) return false;
    const milliseconds delay(seconds * 1000);
    if (Clock::now() + delay + kDeadlineGuard >= deadline_) return false;
    retried_ = true;
    auto self = shared_from_this();
    const auto timer = host_.schedule(delay, [self, request](Status status) {
      if (status != Status::kOk) {
        self->fail(Status::kCancelled, "the plugin stopped while waiting to retry Tactical RMM");
        return;
      }
      self->send(*request);
    });
    return timer.ok();
  }

  Host host_;
  Call call_;
  OrgSettings settings_;
  Timing timing_;
  Clock::time_point deadline_;
  sdk::SecretLease key_;
  Directory directory_;
  bool retried_ = false;  // only ever touched by the chain's one request at a time
};

bool is_digits(const std::string& text) {
  return !text.empty() && text.size() <= 18 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string input_string(const json& input, const char* name) {
  const auto found = input.find(name);
  if (found == input.end() || !found->is_string()) return {};
  return found->get<std::string>();
}

bool input_bool(const json& input, const char* name) {
  const auto found = input.find(name);
  return found != input.end() && found->is_boolean() && found->get<bool>();
}

constexpr const char* kUnlinkedClient =
    "this client is not linked to Tactical RMM in the plugin's settings (client_map)";

std::string no_device(const std::string& id) {
  return "Tactical RMM has no device " + id;
}

/// GET /clients/ into the job's directory, then `next`.
void load_directory(const std::shared_ptr<Job>& job, const std::string& action,
                    std::function<void()> next) {
  job->send({"GET", "/clients/", "", "", job->timing().request_timeout,
             Context{action, "Tactical RMM has no clients endpoint at this base_url"},
             [job, next = std::move(next)](const json& body) {
               auto directory = parse_directory(body);
               if (!directory) {
                 job->fail(Status::kUpstreamError,
                           "Tactical RMM answered GET /clients/ with something other than a list "
                           "of clients");
                 return;
               }
               job->directory() = std::move(*directory);
               next();
             }});
}

/// Fetches one agent and the directory, normalized; a device of another vendor client than
/// `vendor_client` (when set) is reported as not found.
void fetch_device(const std::shared_ptr<Job>& job, const std::string& device_id,
                  const std::string& vendor_client, bool include_raw,
                  std::function<void(const json&)> next) {
  const std::string action = "reading device " + device_id;
  job->send(
      {"GET", "/agents/" + url_encode(device_id) + "/", "", "", job->timing().request_timeout,
       Context{action, no_device(device_id)},
       [job, device_id, vendor_client, include_raw, action,
        next = std::move(next)](const json& agent) {
         if (!agent.is_object() || !agent.contains("agent_id")) {
           job->fail(Status::kUpstreamError,
                     "Tactical RMM answered GET /agents/" + device_id + "/ without an agent");
           return;
         }
         load_directory(job, action, [job, agent, device_id, vendor_client, include_raw, next] {
           json device = normalize_agent(agent, job->directory(), job->settings(), include_raw);
           if (!vendor_client.empty() && device["vendor_client_id"] != vendor_client) {
             job->fail(Status::kNotFound, no_device(device_id));  // never reveal it exists
             return;
           }
           next(device);
         });
       }});
}

/// The vendor client of the input's client_id ("" when absent); fails the job and returns
/// nullopt for a client the settings do not link.
std::optional<std::string> vendor_client_of(const std::shared_ptr<Job>& job, const json& input) {
  const std::string hub_client = input_string(input, "client_id");
  if (hub_client.empty()) return std::string();
  const auto found = job->settings().hub_to_vendor.find(hub_client);
  if (found == job->settings().hub_to_vendor.end()) {
    job->fail(Status::kNotFound, kUnlinkedClient);
    return std::nullopt;
  }
  return found->second;
}

void devices_list(const std::shared_ptr<Job>& job) {
  const json& input = job->call().input();
  const auto vendor_client = vendor_client_of(job, input);
  if (!vendor_client) return;
  const std::string site = input_string(input, "site");
  const std::string status = input_string(input, "status");
  const std::string monitoring = input_string(input, "monitoring_type");
  const bool include_raw = input_bool(input, "include_raw");

  load_directory(job, "listing devices", [=] {
    std::string query;
    const bool site_is_id = is_digits(site) && job->directory().sites.count(site) > 0;
    if (site_is_id) {
      if (!vendor_client->empty() && job->directory().sites.at(site).client_id != *vendor_client) {
        job->fail(Status::kNotFound, "Tactical RMM site " + site + " is not a site of this client");
        return;
      }
      query = "site=" + url_encode(site);
    } else if (!vendor_client->empty()) {
      query = "client=" + url_encode(*vendor_client);
    }
    if (!monitoring.empty())
      query += (query.empty() ? "" : "&") + ("monitoring_type=" + monitoring);

    job->send({"GET", "/agents/", query, "", job->timing().request_timeout,
               Context{"listing devices", "Tactical RMM has no agents endpoint at this base_url"},
               [=](const json& agents) {
                 if (!agents.is_array()) {
                   job->fail(Status::kUpstreamError,
                             "Tactical RMM answered GET /agents/ with something other than a list");
                   return;
                 }
                 json devices = json::array();
                 for (const auto& agent : agents) {
                   if (!agent.is_object()) continue;
                   json d = normalize_agent(agent, job->directory(), job->settings(), include_raw);
                   // The query already filtered; filter again so that a server ignoring a
                   // parameter never hands out another client's devices.
                   if (!vendor_client->empty() && d["vendor_client_id"] != *vendor_client) continue;
                   if (site_is_id && d["vendor_site_id"] != site) continue;
                   if (!site.empty() && !site_is_id &&
                       (!d["site_name"].is_string() ||
                        lower(d["site_name"].get<std::string>()) != lower(site)))
                     continue;
                   if (!status.empty() && d["status"] != status) continue;
                   if (!monitoring.empty() && d["monitoring_type"] != monitoring) continue;
                   devices.push_back(std::move(d));
                 }
                 job->succeed({{"devices", std::move(devices)}});
               }});
  });
}

void devices_get(const std::shared_ptr<Job>& job) {
  const json& input = job->call().input();
  const auto vendor_client = vendor_client_of(job, input);
  if (!vendor_client) return;
  fetch_device(job, input_string(input, "device_id"), *vendor_client,
               input_bool(input, "include_raw"), [job](const json& device) {
                 job->succeed({{"device", device}});
               });
}

void scripts_list(const std::shared_ptr<Job>& job) {
  const json& input = job->call().input();
  const std::string platform = input_string(input, "platform");
  const std::string category = input_string(input, "category");
  const bool include_hidden = input_bool(input, "include_hidden");
  const bool include_raw = input_bool(input, "include_raw");
  job->send({"GET", "/scripts/", "", "", job->timing().request_timeout,
             Context{"listing scripts", "Tactical RMM has no scripts endpoint at this base_url"},
             [=](const json& scripts) {
               if (!scripts.is_array()) {
                 job->fail(Status::kUpstreamError,
                           "Tactical RMM answered GET /scripts/ with something other than a list");
                 return;
               }
               json out = json::array();
               for (const auto& script : scripts) {
                 if (!script.is_object()) continue;
                 if (!include_hidden && script.value("hidden", false) == true) continue;
                 json s = normalize_script(script, include_raw);
                 if (!platform.empty() && !s["platforms"].empty() &&
                     std::find(s["platforms"].begin(), s["platforms"].end(), platform) ==
                         s["platforms"].end())
                   continue;
                 if (!category.empty() && s["category"] != category) continue;
                 out.push_back(std::move(s));
               }
               job->succeed({{"scripts", std::move(out)}});
             }});
}

/// Runs `run` after checking, when the input names a client, that the device belongs to it.
void with_owned_device(const std::shared_ptr<Job>& job, std::function<void()> run) {
  const json& input = job->call().input();
  const auto vendor_client = vendor_client_of(job, input);
  if (!vendor_client) return;
  if (vendor_client->empty()) {
    run();
    return;
  }
  fetch_device(job, input_string(input, "device_id"), *vendor_client, false,
               [run = std::move(run)](const json&) { run(); });
}

milliseconds wait_timeout(const std::shared_ptr<Job>& job, int timeout_s) {
  return milliseconds(timeout_s * 1000LL) + kVendorGrace + job->timing().wait_margin;
}

void scripts_run(const std::shared_ptr<Job>& job) {
  with_owned_device(job, [job] {
    const json& input = job->call().input();
    const std::string device_id = input_string(input, "device_id");
    const json& script = input.at("script_id");
    const std::string script_id = id_string(script);
    const int timeout_s = input.value("timeout_s", 90);
    json body = {{"script", std::stoll(script_id)},
                 {"output", "wait"},
                 {"args", input.value("args", json::array())},
                 {"env_vars", input.value("env_vars", json::array())},
                 {"timeout", timeout_s},
                 {"run_as_user", input_bool(input, "run_as_user")}};
    job->send(
        {"POST", "/agents/" + url_encode(device_id) + "/runscript/", "", body.dump(),
         wait_timeout(job, timeout_s),
         Context{"running script " + script_id + " on device " + device_id,
                 "Tactical RMM has no device " + device_id + " or no script " + script_id},
         [job, device_id, script_id](const json& answer) {
           // An unreachable agent is answered 200 "timeout" here (400 on cmd/).
           if (answer == "timeout") {
             job->fail(Status::kUpstreamUnavailable, std::string(kOfflineMessage));
             return;
           }
           const auto output = command_output(answer);
           if (!output) {
             job->fail(Status::kUpstreamError,
                       "Tactical RMM answered the script run without its output");
             return;
           }
           json out = {{"device_id", device_id}, {"script_id", script_id}, {"output", *output}};
           if (answer.is_object()) {
             for (const char* key : {"stderr", "retcode", "execution_time"})
               if (answer.contains(key)) out[key] = answer[key];
           }
           job->succeed(out);
         }});
  });
}

void commands_run(const std::shared_ptr<Job>& job) {
  with_owned_device(job, [job] {
    const json& input = job->call().input();
    const std::string device_id = input_string(input, "device_id");
    const int timeout_s = input.value("timeout_s", 30);
    json body = {{"shell", input_string(input, "shell")},
                 {"cmd", input_string(input, "command")},
                 {"timeout", timeout_s},
                 {"run_as_user", input_bool(input, "run_as_user")}};
    job->send({"POST", "/agents/" + url_encode(device_id) + "/cmd/", "", body.dump(),
               wait_timeout(job, timeout_s),
               Context{"running a command on device " + device_id, no_device(device_id)},
               [job, device_id](const json& answer) {
                 const auto output = command_output(answer);
                 if (!output) {
                   job->fail(Status::kUpstreamError,
                             "Tactical RMM answered the command without its output");
                   return;
                 }
                 job->succeed({{"device_id", device_id}, {"output", *output}});
               }});
  });
}

class TacticalRmmPlugin final : public sdk::Plugin {
 public:
  TacticalRmmPlugin(Host host, const Config& config) : Plugin(host), timing_(read_timing(config)) {}

  Result<void> configure(const Config& config) override {
    Timing timing;
    try {
      timing = read_timing(config);
    } catch (const sdk::Failure& failure) {
      return Error{failure.status(), failure.what()};
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    timing_ = timing;
    return {};
  }

  void invoke(Call call) override {
    using Handler = void (*)(const std::shared_ptr<Job>&);
    static constexpr std::pair<const char*, Handler> kOps[] = {
        {"devices.list", &devices_list}, {"devices.get", &devices_get},
        {"scripts.list", &scripts_list}, {"scripts.run", &scripts_run},
        {"commands.run", &commands_run},
    };
    Handler handler = nullptr;
    for (const auto& [name, h] : kOps)
      if (call.op() == name) handler = h;
    if (handler == nullptr) {
      call.fail(Status::kUnsupported, "rmm-tacticalrmm has no operation \"" + call.op() + "\"");
      return;
    }
    if (!call.input().is_object()) {
      call.fail(Status::kInvalidInput, "the input must be a JSON object");
      return;
    }
    Result<OrgSettings> settings = read_settings(call.org_config());
    if (!settings) {
      call.fail(settings.error());
      return;
    }
    Timing timing;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      timing = timing_;
    }
    // An unlinked client is refused before the vault is asked for anything.
    const std::string hub_client = input_string(call.input(), "client_id");
    if (!hub_client.empty() && settings->hub_to_vendor.count(hub_client) == 0) {
      call.fail(Status::kNotFound, kUnlinkedClient);
      return;
    }
    auto job = std::make_shared<Job>(host(), call, std::move(*settings), timing);
    if (!job->open()) return;
    handler(job);
  }

 private:
  std::mutex mutex_;  // guards timing_
  Timing timing_;
};

}  // namespace
}  // namespace helm::tacticalrmm

HELM_EXPORT_PLUGIN(helm::tacticalrmm::TacticalRmmPlugin, "rmm-tacticalrmm")
