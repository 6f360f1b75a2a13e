// kasm: disposable Kasm Workspaces sessions for technicians, one per (hub session, client).
// workspaces.open creates a Kasm session (request_kasm) with the image the organization chose
// for the client, workspaces.list and workspaces.close work on the caller's own hub session's
// workspaces, and the hub's session.ended event destroys every workspace of that session (and
// the Kasm user the plugin created for it). A reconciler destroys every Kasm session of ours that
// belongs to no live hub session (after a hub crash: all of them) and audits each.
//
// Credentials: the API key id is an org setting, its secret comes from the vault inside a
// call's session. Teardown and the reconciler run without a session, so the plugin keeps the
// last credential of each organization in memory only (never persisted or logged, wiped on
// stop); after a restart it has none until a technician of that organization makes a call,
// which then reconciles that organization first. Workspace records are in memory only.
// Session-less requests name the organization (ABI 1.2 http_request.organization_id), so the
// hub applies its base_url host and ca_pem as it does inside a call.
#include <helm/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "vendor.hpp"

namespace helm::kasm {
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
using CredentialPtr = std::shared_ptr<const Credential>;

/// Hub-wide settings (config_schema).
struct Timing {
  milliseconds request_timeout{15'000};     ///< one Kasm request
  milliseconds reconcile_interval{60'000};  ///< the periodic reconciler
  milliseconds start_wait{20'000};          ///< how long open waits for "running"
  milliseconds poll_interval{250};          ///< get_kasm_status while starting
};

Timing read_timing(const Config& config) {
  Timing t;
  t.request_timeout = milliseconds(config.get_or<std::uint32_t>("request_timeout_ms", 15'000));
  t.reconcile_interval =
      milliseconds(1000LL * config.get_or<std::uint32_t>("reconcile_interval_s", 60));
  t.start_wait = milliseconds(config.get_or<std::uint32_t>("start_wait_ms", 20'000));
  t.poll_interval = milliseconds(config.get_or<std::uint32_t>("poll_interval_ms", 250));
  if (t.request_timeout < milliseconds(100) || t.reconcile_interval < milliseconds(1000) ||
      t.poll_interval < milliseconds(10)) {
    throw sdk::Failure(Status::kInvalidInput,
                       "request_timeout_ms >= 100, reconcile_interval_s >= 1 and "
                       "poll_interval_ms >= 10 are required");
  }
  return t;
}

// ---- audit (ABI 1.2) ------------------------------------------------------------------------

/// Records "plugin.kasm.<action>" in the hub's audit log; on a hub without audit() (ABI < 1.2),
/// a log line says what could not be audited.
void audit(const Host& host, const helm_session* session, const std::string& org,
           const std::string& action, const json& detail) {
  const std::string text = detail.dump();
  if (!host.offers_audit()) {
    host.warn("kasm: this hub keeps no plugin audit records (ABI 1." +
              std::to_string(host.abi_minor()) + "); not audited: " + action + " " + text);
    return;
  }
  const Result<void> done = host.audit(session, org, action, text);
  if (!done) {
    host.warn("kasm: could not audit " + action + " " + text + ": " + done.error().message);
  }
}

// ---- one Kasm RPC --------------------------------------------------------------------------

using Answer = std::function<void(Result<json>)>;

/// POST /api/public/<method> with the credential in the body or a Basic header. `answer` runs
/// exactly once: later on a host worker, or now when the hub refused to send the request.
/// Without a session (teardown, the periodic reconciler) the request names the credential's
/// organization, whose settings (base_url host, ca_pem) the hub then applies (ABI 1.2).
void kasm_rpc(const Host& host, const helm_session* session, const CredentialPtr& cred,
              const std::string& method, json fields, milliseconds timeout, Answer answer) {
  if (session == nullptr && host.abi_minor() < 2) {
    answer(Error{Status::kUnsupported,
                 "this hub (ABI 1." + std::to_string(host.abi_minor()) +
                     ") cannot send a request without a session to the organization's Kasm "
                     "server (" +
                     method + "); it needs ABI 1.2"});
    return;
  }
  std::string auth;
  std::vector<sdk::HttpField> headers = {{"Content-Type", "application/json"},
                                         {"Accept", "application/json"}};
  if (cred->style == AuthStyle::kBody) {
    fields["api_key"] = cred->key;
    fields["api_key_secret"] = cred->secret;
  } else {
    std::string pair = cred->key + ":" + cred->secret;
    auth = "Basic " + base64(pair);
    wipe(pair);
    headers.push_back({"Authorization", auth});
  }
  std::string body = fields.dump();
  if (cred->style == AuthStyle::kBody) wipe(fields["api_key_secret"].get_ref<std::string&>());
  const std::string url = cred->base_url + "/api/public/" + method;
  sdk::HttpRequest request;
  request.method = "POST";
  request.url = url;
  request.headers = headers;
  request.body = body;
  request.timeout = timeout;
  if (session == nullptr) request.organization_id = cred->organization_id;
  // The answer is shared so that a refusal (callback never runs) can still call it.
  auto shared = std::make_shared<Answer>(std::move(answer));
  const Result<void> started =
      host.http_request(session, request, [shared, cred, method](Result<HttpResponse> r) {
        if (!r) {
          const Error& e = r.error();
          if (e.status == Status::kTimeout) {
            (*shared)(Error{Status::kTimeout, "Kasm did not answer " + method + " in time"});
          } else if (e.status == Status::kCancelled) {
            (*shared)(
                Error{Status::kCancelled, "the request to Kasm was cancelled (" + method + ")"});
          } else {
            (*shared)(Error{Status::kUpstreamUnavailable,
                            "cannot reach Kasm at " + cred->base_url + " (" + method +
                                "): " + scrub(e.message, cred->secret)});
          }
          return;
        }
        (*shared)(read_answer(*r, method, cred->secret));
      });
  wipe(body);
  wipe(auth);
  if (!started) {
    const Error& e = started.error();
    (*shared)(Error{e.status, "the hub refused the request to Kasm at " + cred->base_url + " (" +
                                  method + "): " + scrub(e.message, cred->secret)});
  }
}

/// Runs `step(item, next)` for each item in turn, then `done`.
template <typename T>
void for_each_async(std::shared_ptr<std::vector<T>> items, std::size_t index,
                    std::function<void(const T&, std::function<void()>)> step,
                    std::function<void()> done) {
  if (index >= items->size()) {
    done();
    return;
  }
  const T& item = (*items)[index];
  step(item, [items, index, step, done] { for_each_async(items, index + 1, step, done); });
}

// ---- state ---------------------------------------------------------------------------------

struct Workspace {
  std::string id;  ///< the Kasm kasm_id, normalized
  std::string kasm_user_id;
  std::string client_id;
  std::string image_id;
  std::string url;
  json expires_at = nullptr;
  std::string status;
  std::string created_at;
};

json to_json(const Workspace& w) {
  return {{"workspace_id", w.id},       {"client_id", w.client_id}, {"url", w.url},
          {"expires_at", w.expires_at}, {"status", w.status},       {"image_id", w.image_id},
          {"created_at", w.created_at}};
}

struct HubSession {
  std::string org;
  std::string technician;
  std::string kasm_user_id;  ///< per_session mode: the Kasm user created for this session
  std::map<std::string, Workspace> by_client;
  bool ended = false;
  bool busy = false;  ///< an open or close of this session is running
  std::deque<std::function<void()>> queue;
};

struct OrgState {
  CredentialPtr cred;       ///< from the last call made inside a session; memory only
  std::string shared_user;  ///< shared mode's Kasm user, for recognizing ours
  bool reconciled = false;  ///< since start, or since a teardown could not reach Kasm
  bool reconciling = false;
  std::vector<std::function<void()>> after_reconcile;
};

std::string now_rfc3339() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

/// One call in flight.
struct Job {
  Call call;
  OrgSettings settings;
  CredentialPtr cred;
  std::string session_id;
  std::string technician;
  Clock::time_point deadline;

  milliseconds timeout(milliseconds wanted) const {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) - milliseconds(250);
    return std::max(milliseconds(1), std::min(wanted, left));
  }
};
using JobPtr = std::shared_ptr<Job>;

class KasmPlugin final : public sdk::Plugin {
 public:
  KasmPlugin(Host host, const Config& config) : Plugin(host), timing_(read_timing(config)) {}

  ~KasmPlugin() override { forget_credentials(); }

  Result<void> start() override {
    schedule_reconciler();
    return {};
  }

  void stop() override {
    std::uint64_t timer = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      timer = timer_;
    }
    if (timer != 0) host().cancel_timer(timer);
    forget_credentials();
  }

  Result<void> configure(const Config& config) override {
    Timing timing;
    try {
      timing = read_timing(config);
    } catch (const sdk::Failure& failure) {
      return Error{failure.status(), failure.what()};
    }
    std::uint64_t stale = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const bool rearm = timing.reconcile_interval != timing_.reconcile_interval && !stopping_;
      timing_ = timing;
      if (!rearm) return {};
      stale = timer_;
      timer_ = 0;
      ++timer_generation_;  // the old chain ends at its next tick
    }
    // A new interval applies now, not after the old one has run out.
    if (stale != 0) host().cancel_timer(stale);
    schedule_reconciler();
    return {};
  }

  void invoke(Call call) override {
    const std::string op = call.op();
    if (op != "workspaces.open" && op != "workspaces.list" && op != "workspaces.close") {
      call.fail(Status::kUnsupported, "kasm has no operation \"" + op + "\"");
      return;
    }
    Result<OrgSettings> settings = read_settings(call.org_config());
    if (!settings) {
      call.fail(settings.error());
      return;
    }
    const json& input = call.input();
    if (op == "workspaces.open") {
      const std::string client = lower(input.value("client_id", ""));
      if (image_for(*settings, client).empty()) {
        call.fail(Status::kNotFound,
                  "no Kasm image is configured for this client: an admin sets client_images or "
                  "default_image_id in the plugin's settings");
        return;
      }
    }
    Result<json> info = host().session_info(call.session());
    if (!info) {
      call.fail(info.error());
      return;
    }
    if (!info->contains("session_id") || !(*info)["session_id"].is_string()) {
      call.fail(Status::kUnavailable,
                "this hub does not tell plugins the session id; the kasm plugin needs a newer "
                "hub");
      return;
    }
    auto job = std::make_shared<Job>(
        Job{call, std::move(*settings), nullptr, (*info)["session_id"].get<std::string>(),
            info->value("principal_id", ""), Clock::now() + call.timeout()});
    if (!release_credential(job)) return;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      HubSession& s = sessions_[job->session_id];
      if (s.org.empty()) {
        s.org = call.organization_id();
        s.technician = job->technician;
      }
      OrgState& o = orgs_[call.organization_id()];
      o.cred = job->cred;
      o.shared_user = job->settings.kasm_user_id;
    }
    after_reconcile(job, [this, job] {
      const std::string& name = job->call.op();
      if (name == "workspaces.list") {
        list(job);
      } else {
        take_turn(job->session_id, [this, job](std::shared_ptr<void> turn) {
          if (job->call.op() == "workspaces.open") {
            open(job, std::move(turn));
          } else {
            close(job, std::move(turn));
          }
        });
      }
    });
  }

  void on_event(const sdk::Event& event) override {
    // Only the hub announces sessions (it refuses session.* from plugins); checked anyway.
    if (event.topic != "session.ended" || event.source != "hub") return;
    const json& p = event.payload;
    if (!p.is_object() || !p.contains("session_id") || !p["session_id"].is_string()) {
      host().warn("kasm: a session.ended event without a session_id was ignored");
      return;
    }
    const std::string sid = p["session_id"].get<std::string>();
    const std::string reason = p.value("reason", "unknown");
    std::vector<Workspace> doomed;
    std::string org, technician, user;
    CredentialPtr cred;
    milliseconds timeout;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto found = sessions_.find(sid);
      if (found == sessions_.end() || found->second.ended) return;  // unknown, or seen already
      HubSession& s = found->second;
      s.ended = true;
      org = s.org;
      technician = s.technician;
      user = s.kasm_user_id;
      for (auto& [client, w] : s.by_client)
        doomed.push_back(w);
      s.by_client.clear();
      s.kasm_user_id.clear();
      if (!s.busy) sessions_.erase(found);
      const auto o = orgs_.find(org);
      if (o != orgs_.end()) cred = o->second.cred;
      timeout = timing_.request_timeout;
    }
    if (doomed.empty() && user.empty()) return;
    if (!cred) {
      host().warn("kasm: session " + sid + " ended with " + std::to_string(doomed.size()) +
                  " workspace(s) but the plugin holds no Kasm credential for its organization; "
                  "the next call of that organization reconciles them");
      mark_unreconciled(org);
      return;
    }
    teardown(org, sid, technician, reason, std::move(doomed), user, cred, timeout);
  }

 private:
  // ---- credentials ---------------------------------------------------------------------------

  /// Releases the API key secret inside the call's session and keeps a copy in memory for the
  /// organization. On failure the call is completed and false returned.
  bool release_credential(const JobPtr& job) {
    const std::string& name = job->settings.secret_name;
    Result<sdk::SecretLease> lease = host().release_secret(job->call.session(), name);
    if (!lease) {
      const Error& e = lease.error();
      if (e.status == Status::kForbidden) {
        job->call.fail(Status::kForbidden,
                       "kasm may not use the secret \"" + name +
                           "\" in this organization: an admin grants it with PUT "
                           "/api/v1/orgs/{org}/plugins/kasm/grants");
      } else if (e.status == Status::kNotFound) {
        job->call.fail(Status::kNotFound, "the organization's vault holds no secret \"" + name +
                                              "\": an admin stores the Kasm API key secret there");
      } else {
        job->call.fail(e);
      }
      return false;
    }
    if (lease->size() == 0) {
      job->call.fail(Status::kInvalidInput, "the secret \"" + name + "\" is empty");
      return false;
    }
    auto cred = std::make_shared<Credential>();
    cred->organization_id = job->call.organization_id();
    cred->base_url = job->settings.base_url;
    cred->origin = job->settings.origin;
    cred->style = job->settings.auth_style;
    cred->key = job->settings.api_key;
    cred->secret.assign(lease->view());
    lease->reset();
    job->cred = std::move(cred);
    return true;
  }

  void forget_credentials() {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [org, state] : orgs_)
      state.cred.reset();  // the last reference wipes the secret
  }

  void mark_unreconciled(const std::string& org) {
    const std::lock_guard<std::mutex> lock(mutex_);
    orgs_[org].reconciled = false;
  }

  milliseconds request_timeout() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return timing_.request_timeout;
  }

  // ---- turns: the opens and closes of one hub session run one at a time ---------------------

  void take_turn(const std::string& sid, std::function<void(std::shared_ptr<void>)> run) {
    auto turn = std::shared_ptr<void>(nullptr, [this, sid](void*) { next_turn(sid); });
    std::function<void()> start = [run, turn]() mutable { run(std::move(turn)); };
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      HubSession& s = sessions_[sid];
      ++opens_in_flight_;
      if (s.busy) {
        s.queue.push_back(std::move(start));
        return;
      }
      s.busy = true;
    }
    start();
  }

  void next_turn(const std::string& sid) {
    std::function<void()> next;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      --opens_in_flight_;
      const auto found = sessions_.find(sid);
      if (found == sessions_.end()) return;
      HubSession& s = found->second;
      if (s.queue.empty()) {
        s.busy = false;
        if (s.ended) sessions_.erase(found);
        return;
      }
      next = std::move(s.queue.front());
      s.queue.pop_front();
    }
    next();
  }

  // ---- reconciliation -----------------------------------------------------------------------

  /// Runs `next` once the call's organization has been reconciled since start (running the
  /// reconciliation inside this call's session when it has not).
  void after_reconcile(const JobPtr& job, std::function<void()> next) {
    const std::string org = job->call.organization_id();
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      OrgState& o = orgs_[org];
      if (o.reconciled) {
        // fall through to run next outside the lock
      } else if (o.reconciling) {
        o.after_reconcile.push_back(std::move(next));
        return;
      } else {
        o.reconciling = true;
        o.after_reconcile.push_back(std::move(next));
        next = nullptr;
      }
    }
    if (next) {
      next();
      return;
    }
    reconcile(org, job->call.session(), job->cred, job->settings.kasm_user_id,
              [this, org](bool ok) {
                std::vector<std::function<void()>> waiting;
                {
                  const std::lock_guard<std::mutex> lock(mutex_);
                  OrgState& o = orgs_[org];
                  o.reconciling = false;
                  if (ok) o.reconciled = true;
                  waiting.swap(o.after_reconcile);
                }
                for (auto& w : waiting)
                  w();
              });
  }

  /// Destroys every Kasm session of ours that belongs to no live hub session, and every Kasm
  /// user this plugin created that belongs to none; audits each. `done(true)` when the list
  /// could be read and nothing was left undone because of opens in flight.
  void reconcile(const std::string& org, const helm_session* session, const CredentialPtr& cred,
                 const std::string& shared_user, std::function<void(bool)> done) {
    const milliseconds timeout = request_timeout();
    kasm_rpc(
        host(), session, cred, "get_kasms", json::object(), timeout,
        [this, org, session, cred, shared_user, timeout, done](Result<json> answer) {
          if (!answer) {
            host().warn("kasm: reconciling organization " + org +
                        " failed: " + answer.error().message);
            done(false);
            return;
          }
          std::set<std::string> live_kasms, live_users;
          int in_flight = 0;
          {
            const std::lock_guard<std::mutex> lock(mutex_);
            in_flight = opens_in_flight_;
            for (const auto& [sid, s] : sessions_) {
              if (s.ended) continue;
              if (!s.kasm_user_id.empty()) live_users.insert(s.kasm_user_id);
              for (const auto& [client, w] : s.by_client)
                live_kasms.insert(w.id);
            }
          }
          if (in_flight > 0) {  // a kasm being created is not in the map yet
            done(false);
            return;
          }
          struct Victim {
            std::string kasm_id, user_id, username;
          };
          auto victims = std::make_shared<std::vector<Victim>>();
          const json& kasms = (*answer).value("kasms", json::array());
          for (const auto& k : kasms) {
            if (!k.is_object()) continue;
            const std::string id = normalize_id(k.value("kasm_id", ""));
            const std::string user = normalize_id(k.value("user_id", ""));
            const std::string username = k.value("username", "");
            const bool ours =
                is_helm_username(username) || (!shared_user.empty() && user == shared_user);
            if (!ours || id.empty() || live_kasms.count(id) > 0) continue;
            victims->push_back({id, user, username});
          }
          for_each_async<Victim>(
              victims, 0,
              [this, org, session, cred, timeout](const Victim& v, std::function<void()> next) {
                kasm_rpc(host(), session, cred, "destroy_kasm",
                         {{"user_id", v.user_id}, {"kasm_id", v.kasm_id}}, timeout,
                         [this, org, v, next](Result<json> r) {
                           if (r || r.error().status == Status::kNotFound) {
                             audit(host(), nullptr, org, "workspace.reaped",
                                   {{"workspace_id", v.kasm_id},
                                    {"kasm_user_id", v.user_id},
                                    {"reason", "no live hub session"}});
                             host().info("kasm: reaped workspace " + v.kasm_id);
                           } else {
                             host().warn("kasm: could not reap workspace " + v.kasm_id + ": " +
                                         r.error().message);
                           }
                           next();
                         });
              },
              [this, org, session, cred, timeout, live_users, done] {
                reap_users(org, session, cred, timeout, live_users, done);
              });
        });
  }

  /// Deletes the Kasm users named like ours ("helm-" + 8 hex) that no live hub session owns.
  void reap_users(const std::string& org, const helm_session* session, const CredentialPtr& cred,
                  milliseconds timeout, const std::set<std::string>& live_users,
                  std::function<void(bool)> done) {
    kasm_rpc(host(), session, cred, "get_users", json::object(), timeout,
             [this, org, session, cred, timeout, live_users, done](Result<json> answer) {
               if (!answer) {
                 host().warn("kasm: listing Kasm users of organization " + org +
                             " failed: " + answer.error().message);
                 done(false);
                 return;
               }
               auto doomed = std::make_shared<std::vector<std::string>>();
               for (const auto& u : (*answer).value("users", json::array())) {
                 if (!u.is_object() || !is_helm_username(u.value("username", ""))) continue;
                 const std::string id = normalize_id(u.value("user_id", ""));
                 if (!id.empty() && live_users.count(id) == 0) doomed->push_back(id);
               }
               for_each_async<std::string>(
                   doomed, 0,
                   [this, org, session, cred, timeout](const std::string& id,
                                                       std::function<void()> next) {
                     kasm_rpc(host(), session, cred, "delete_user",
                              {{"target_user", {{"user_id", id}}}, {"force", true}}, timeout,
                              [this, org, id, next](Result<json> r) {
                                if (r || r.error().status == Status::kNotFound) {
                                  audit(host(), nullptr, org, "user.reaped",
                                        {{"kasm_user_id", id}, {"reason", "no live hub session"}});
                                }
                                next();
                              });
                   },
                   [done] { done(true); });
             });
  }

  void schedule_reconciler() {
    milliseconds interval;
    std::uint64_t generation = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      interval = timing_.reconcile_interval;
      generation = timer_generation_;
    }
    const auto timer = host().schedule(interval, [this, generation](Status status) {
      if (status != Status::kOk) return;
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (generation != timer_generation_) return;  // replaced by configure()
      }
      periodic_reconcile();
      schedule_reconciler();
    });
    if (timer) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (generation == timer_generation_) timer_ = *timer;
    }
  }

  /// Every organization whose credential the plugin holds, without a session.
  void periodic_reconcile() {
    std::vector<std::tuple<std::string, CredentialPtr, std::string>> work;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [org, o] : orgs_) {
        if (!o.cred || o.reconciling) continue;
        o.reconciling = true;
        work.emplace_back(org, o.cred, o.shared_user);
      }
    }
    for (const auto& [org, cred, shared] : work) {
      const std::string o = org;
      reconcile(o, nullptr, cred, shared, [this, o](bool ok) {
        std::vector<std::function<void()>> waiting;
        {
          const std::lock_guard<std::mutex> lock(mutex_);
          OrgState& state = orgs_[o];
          state.reconciling = false;
          if (ok) state.reconciled = true;
          waiting.swap(state.after_reconcile);
        }
        for (auto& w : waiting)
          w();
      });
    }
  }

  // ---- teardown ---------------------------------------------------------------------------------

  void teardown(const std::string& org, const std::string& sid, const std::string& technician,
                const std::string& reason, std::vector<Workspace> doomed, const std::string& user,
                const CredentialPtr& cred, milliseconds timeout) {
    auto items = std::make_shared<std::vector<Workspace>>(std::move(doomed));
    for_each_async<Workspace>(
        items, 0,
        [this, org, sid, technician, reason, cred, timeout](const Workspace& w,
                                                            std::function<void()> next) {
          kasm_rpc(host(), nullptr, cred, "destroy_kasm",
                   {{"user_id", w.kasm_user_id}, {"kasm_id", w.id}}, timeout,
                   [this, org, sid, technician, reason, w, next](Result<json> r) {
                     if (r || r.error().status == Status::kNotFound) {
                       audit(host(), nullptr, org, "workspace.destroyed",
                             {{"workspace_id", w.id},
                              {"client_id", w.client_id},
                              {"session_id", sid},
                              {"technician_id", technician},
                              {"reason", reason}});
                       host().info("kasm: destroyed workspace " + w.id + " (session " + sid +
                                   " ended: " + reason + ")");
                     } else {
                       host().warn("kasm: could not destroy workspace " + w.id +
                                   " of ended session " + sid + " (" + r.error().message +
                                   "); the reconciler destroys it at the organization's next call");
                       mark_unreconciled(org);
                     }
                     next();
                   });
        },
        [this, org, sid, user, cred, timeout] {
          if (user.empty()) return;
          kasm_rpc(host(), nullptr, cred, "delete_user",
                   {{"target_user", {{"user_id", user}}}, {"force", true}}, timeout,
                   [this, org, sid, user](Result<json> r) {
                     if (r || r.error().status == Status::kNotFound) {
                       audit(host(), nullptr, org, "user.deleted",
                             {{"kasm_user_id", user}, {"session_id", sid}});
                     } else {
                       host().warn("kasm: could not delete Kasm user " + user + " (" +
                                   r.error().message + ")");
                       mark_unreconciled(org);
                     }
                   });
        });
  }

  // ---- operations -------------------------------------------------------------------------------

  void list(const JobPtr& job) {
    json out = json::array();
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto found = sessions_.find(job->session_id);
      if (found != sessions_.end() && !found->second.ended)
        for (const auto& [client, w] : found->second.by_client)
          out.push_back(to_json(w));
    }
    job->call.complete({{"workspaces", out}});
  }

  /// The open's continuation once it has the session's turn.
  void open(const JobPtr& job, std::shared_ptr<void> turn) {
    const std::string client = lower(job->call.input().value("client_id", ""));
    std::optional<Workspace> existing;
    std::string user;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      HubSession& s = sessions_[job->session_id];
      if (s.ended) {
        job->call.fail(Status::kUnauthorized, "the session has ended");
        return;
      }
      if (const auto w = s.by_client.find(client); w != s.by_client.end()) existing = w->second;
      user = job->settings.user_mode == UserMode::kShared ? job->settings.kasm_user_id
                                                          : s.kasm_user_id;
    }
    if (existing) {
      // The same session and client: the same workspace, if Kasm still has it.
      kasm_rpc(host(), job->call.session(), job->cred, "get_kasm_status",
               {{"user_id", existing->kasm_user_id}, {"kasm_id", existing->id}},
               job->timeout(request_timeout()),
               [this, job, turn, client, existing](Result<json> r) {
                 if (!r && r.error().status == Status::kNotFound) {
                   forget_workspace(job->session_id, client, existing->id);
                   open(job, turn);  // gone at Kasm: a new one
                   return;
                 }
                 if (!r) {
                   job->call.fail(r.error());
                   return;
                 }
                 Workspace w = *existing;
                 apply_status(w, *r);
                 store_workspace(job->session_id, w);
                 job->call.complete(to_json(w));
               });
      return;
    }
    if (user.empty()) {
      create_user(job, turn);
      return;
    }
    request(job, turn, user);
  }

  void create_user(const JobPtr& job, std::shared_ptr<void> turn) {
    const std::string username = "helm-" + random_hex(4);
    std::string password = random_hex(24);  // never used nor kept: the URL carries the login
    json fields = {{"target_user",
                    {{"username", username},
                     {"password", password},
                     {"first_name", "Helm"},
                     {"last_name", "Workspace"},
                     {"organization", "Helm Hub"}}}};
    wipe(password);
    kasm_rpc(
        host(), job->call.session(), job->cred, "create_user", std::move(fields),
        job->timeout(request_timeout()), [this, job, turn, username](Result<json> r) {
          if (!r) {
            job->call.fail(r.error());
            return;
          }
          const json user = r->value("user", json::object());
          const std::string id = normalize_id(user.is_object() ? user.value("user_id", "") : "");
          if (id.empty()) {
            job->call.fail(Status::kUpstreamError, "Kasm created no user (no user_id)");
            return;
          }
          bool ended = false;
          {
            const std::lock_guard<std::mutex> lock(mutex_);
            HubSession& s = sessions_[job->session_id];
            ended = s.ended;
            if (!ended) s.kasm_user_id = id;
          }
          audit(host(), job->call.session(), job->call.organization_id(), "user.created",
                {{"kasm_user_id", id}, {"username", username}, {"session_id", job->session_id}});
          if (ended) {
            kasm_rpc(host(), job->call.session(), job->cred, "delete_user",
                     {{"target_user", {{"user_id", id}}}, {"force", true}},
                     job->timeout(request_timeout()), [job](Result<json>) {
                       job->call.fail(Status::kUnauthorized, "the session has ended");
                     });
            return;
          }
          request(job, turn, id);
        });
  }

  void request(const JobPtr& job, std::shared_ptr<void> turn, const std::string& user) {
    const std::string client = lower(job->call.input().value("client_id", ""));
    const std::string image = image_for(job->settings, client);
    json fields = {{"user_id", user}, {"image_id", image}, {"enable_sharing", false}};
    kasm_rpc(
        host(), job->call.session(), job->cred, "request_kasm", std::move(fields),
        job->timeout(request_timeout()), [this, job, turn, client, image, user](Result<json> r) {
          if (!r) {
            job->call.fail(r.error());
            return;
          }
          const std::string id = normalize_id(r->value("kasm_id", ""));
          const std::string kasm_url = r->value("kasm_url", "");
          if (id.empty() || kasm_url.empty()) {
            job->call.fail(Status::kUpstreamError,
                           "Kasm answered request_kasm without a kasm_id "
                           "or kasm_url");
            return;
          }
          Workspace w;
          w.id = id;
          w.kasm_user_id = normalize_id(r->value("user_id", user));
          w.client_id = client;
          w.image_id = image;
          w.url = absolute_url(job->settings.origin, kasm_url);
          w.status = r->value("status", "starting");
          w.created_at = now_rfc3339();
          bool ended = false;
          {
            const std::lock_guard<std::mutex> lock(mutex_);
            HubSession& s = sessions_[job->session_id];
            ended = s.ended;
            if (!ended) s.by_client[client] = w;
          }
          audit(host(), job->call.session(), job->call.organization_id(), "workspace.created",
                {{"workspace_id", id}, {"client_id", client}, {"session_id", job->session_id}});
          if (ended) {  // the session ended while Kasm was creating it
            kasm_rpc(host(), job->call.session(), job->cred, "destroy_kasm",
                     {{"user_id", w.kasm_user_id}, {"kasm_id", id}},
                     job->timeout(request_timeout()), [job](Result<json>) {
                       job->call.fail(Status::kUnauthorized, "the session has ended");
                     });
            return;
          }
          milliseconds wait;
          {
            const std::lock_guard<std::mutex> lock(mutex_);
            wait = timing_.start_wait;
          }
          wait_running(job, turn, w, Clock::now() + wait);
        });
  }

  /// Polls get_kasm_status until the workspace runs, a terminal state, or `until`.
  void wait_running(const JobPtr& job, std::shared_ptr<void> turn, Workspace w,
                    Clock::time_point until) {
    kasm_rpc(host(), job->call.session(), job->cred, "get_kasm_status",
             {{"user_id", w.kasm_user_id}, {"kasm_id", w.id}}, job->timeout(request_timeout()),
             [this, job, turn, w, until](Result<json> r) mutable {
               if (!r) {
                 job->call.fail(r.error());
                 return;
               }
               apply_status(w, *r);
               store_workspace(job->session_id, w);
               static constexpr const char* kTerminal[] = {"stopped",
                                                           "deleting",
                                                           "destroying",
                                                           "delete_pending",
                                                           "user_delete_pending",
                                                           "admin_delete_pending"};
               for (const char* t : kTerminal) {
                 if (w.status == t) {
                   job->call.fail(Status::kUpstreamError,
                                  "the Kasm session ended while starting (" + w.status + ")");
                   return;
                 }
               }
               milliseconds poll;
               {
                 const std::lock_guard<std::mutex> lock(mutex_);
                 poll = timing_.poll_interval;
               }
               if (w.status == "running" || Clock::now() + poll >= until ||
                   Clock::now() + poll + milliseconds(500) >= job->deadline) {
                 job->call.complete(to_json(w));
                 return;
               }
               const auto timer = host().schedule(poll, [this, job, turn, w, until](Status s) {
                 if (s != Status::kOk) {
                   job->call.complete(to_json(w));  // stopping: what we have
                   return;
                 }
                 wait_running(job, turn, w, until);
               });
               if (!timer) job->call.complete(to_json(w));
             });
  }

  static void apply_status(Workspace& w, const json& answer) {
    if (answer.contains("kasm") && answer["kasm"].is_object()) {
      const json& k = answer["kasm"];
      w.status = k.value("operational_status", w.status);
      if (k.contains("expiration_date")) w.expires_at = rfc3339(k["expiration_date"]);
    } else if (answer.contains("operational_status") && answer["operational_status"].is_string()) {
      w.status = answer["operational_status"].get<std::string>();
    }
  }

  void store_workspace(const std::string& sid, const Workspace& w) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto s = sessions_.find(sid);
    if (s == sessions_.end() || s->second.ended) return;
    const auto found = s->second.by_client.find(w.client_id);
    if (found != s->second.by_client.end() && found->second.id == w.id) found->second = w;
  }

  void forget_workspace(const std::string& sid, const std::string& client, const std::string& id) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto s = sessions_.find(sid);
    if (s == sessions_.end()) return;
    const auto found = s->second.by_client.find(client);
    if (found != s->second.by_client.end() && found->second.id == id)
      s->second.by_client.erase(found);
  }

  void close(const JobPtr& job, std::shared_ptr<void> turn) {
    const std::string id = normalize_id(job->call.input().value("workspace_id", ""));
    std::optional<Workspace> w;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto s = sessions_.find(job->session_id);
      if (s != sessions_.end() && !s->second.ended)
        for (const auto& [client, candidate] : s->second.by_client)
          if (candidate.id == id) w = candidate;
    }
    if (!w) {
      job->call.fail(Status::kNotFound, "this session has no workspace " + id);
      return;
    }
    kasm_rpc(host(), job->call.session(), job->cred, "destroy_kasm",
             {{"user_id", w->kasm_user_id}, {"kasm_id", w->id}}, job->timeout(request_timeout()),
             [this, job, turn, w](Result<json> r) {
               if (!r && r.error().status != Status::kNotFound) {
                 job->call.fail(r.error());
                 return;
               }
               forget_workspace(job->session_id, w->client_id, w->id);
               audit(host(), job->call.session(), job->call.organization_id(), "workspace.closed",
                     {{"workspace_id", w->id},
                      {"client_id", w->client_id},
                      {"session_id", job->session_id}});
               job->call.complete({{"workspace_id", w->id}, {"closed", true}});
             });
  }

  std::mutex mutex_;  // guards everything below
  Timing timing_;
  std::map<std::string, HubSession> sessions_;  ///< hub session id → its workspaces
  std::map<std::string, OrgState> orgs_;
  int opens_in_flight_ = 0;
  std::uint64_t timer_ = 0;
  std::uint64_t timer_generation_ = 0;  ///< bumped when configure() replaces the timer chain
  bool stopping_ = false;
};

}  // namespace
}  // namespace helm::kasm

HELM_EXPORT_PLUGIN(helm::kasm::KasmPlugin, "kasm")
