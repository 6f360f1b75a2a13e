// psa-halopsa: the `psa` operations (sdk-docs/psa-operations.md) against HaloPSA's REST API.
//
// Authentication is OAuth2 client credentials: the organization's client secret is released from
// its vault inside the call's session only when an access token must be fetched; the token (a
// credential too) is kept in this instance's memory only, per organization + client id + token
// URL + tenant + scope, until a minute before it expires, and is dropped and fetched again once
// when the resource server answers 401. Everything is asynchronous: host HTTPS completions and
// host timers (for Retry-After) drive each call, and no host thread ever sleeps.
#include <helm/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "halo.hpp"

namespace helm::halopsa {
namespace {

using nlohmann::json;
using sdk::Call;
using sdk::Error;
using sdk::HttpResponse;
using sdk::Result;
using sdk::Status;
using Clock = std::chrono::steady_clock;

constexpr int kMaxRateLimitRetries = 2;
constexpr std::chrono::seconds kMaxRateLimitWait{10};
constexpr std::chrono::seconds kDefaultRetryAfter{5};
constexpr std::chrono::seconds kRefreshEarly{60};
constexpr int kMaxPages = 1000;

/// A request to the resource server, relative to resource_url.
struct HaloRequest {
  std::string method = "GET";
  std::string path;   ///< e.g. "/Tickets/12"
  std::string query;  ///< without '?'
  std::string body;   ///< JSON, for POST
};

using Done = std::function<void(Result<json>)>;
using TokenDone = std::function<void(Result<std::string>)>;
/// A call waiting for another call's token fetch: the token, or nullopt when that fetch failed.
using TokenWaiter = std::function<void(std::optional<std::string>)>;

/// One operation in flight. Its steps run one after another (each started by the completion of
/// the previous one), so only `cancelled` and `timer` are touched concurrently (by cancel()).
struct Operation {
  Operation(Call c, OrgSettings s)
      : call(std::move(c)),
        settings(std::move(s)),
        deadline(Clock::now() +
                 (call.timeout().count() > 0 ? call.timeout() : std::chrono::milliseconds(30'000))),
        include_raw(call.input().is_object() && call.input().value("include_raw", false)) {}

  Call call;
  const OrgSettings settings;
  const Clock::time_point deadline;
  const bool include_raw;
  std::atomic<bool> cancelled{false};
  std::mutex timer_mutex;  // guards timer
  std::optional<std::uint64_t> timer;
};
using OperationPtr = std::shared_ptr<Operation>;

/// Walking every page of a list (tickets.list with all_pages).
struct PageWalk {
  std::vector<std::pair<std::string, std::string>> filters;
  std::optional<std::int64_t> vendor_client;
  int page_size = 100;
  std::size_t max_records = 1000;
  int page_no = 1;
  json collected = json::array();
  std::int64_t total = 0;
  bool truncated = false;
};

/// An access token in memory, never anywhere else.
struct CachedToken {
  std::string token;
  Clock::time_point refresh_at;  ///< a minute before it expires
};

Error cancelled_error() {
  return {Status::kCancelled, "the operation was cancelled"};
}

std::string text_of(std::int64_t n) {
  return std::to_string(n);
}

class HaloPlugin final : public sdk::Plugin {
 public:
  HaloPlugin(sdk::Host host, const sdk::Config& /*config*/) : Plugin(host) {}

  void invoke(Call call) override {
    auto settings = read_settings(call.org_config());
    if (!settings) {
      call.fail(settings.error());
      return;
    }
    auto op = std::make_shared<Operation>(call, std::move(settings).value());
    {
      const std::lock_guard<std::mutex> lock(ops_mutex_);
      ops_[call.id()] = op;
    }
    const std::string& name = call.op();
    if (name == "tickets.list") {
      list_tickets(op);
    } else if (name == "tickets.get") {
      get_ticket(op);
    } else if (name == "tickets.create") {
      create_ticket(op);
    } else if (name == "tickets.update") {
      update_ticket(op);
    } else if (name == "tickets.add_note") {
      add_note(op);
    } else if (name == "clients.list") {
      list_clients(op);
    } else {
      finish(op, Error{Status::kUnsupported, "psa-halopsa has no operation \"" + name + "\""});
    }
  }

  void cancel(std::uint64_t call_id) override {
    OperationPtr op;
    {
      const std::lock_guard<std::mutex> lock(ops_mutex_);
      const auto it = ops_.find(call_id);
      if (it != ops_.end()) op = it->second.lock();
    }
    if (!op) return;
    op->cancelled = true;
    // A pending Retry-After wait ends now (its callback completes the call with CANCELLED); an
    // HTTPS request in flight ends by its own deadline, and its completion sees the flag.
    std::optional<std::uint64_t> timer;
    {
      const std::lock_guard<std::mutex> lock(op->timer_mutex);
      timer = op->timer;
    }
    if (timer) host().cancel_timer(*timer);
  }

 private:
  // ---------------------------------------------------------------------------------------------
  // Completion

  void finish(const OperationPtr& op, const Result<json>& result) {
    {
      const std::lock_guard<std::mutex> lock(ops_mutex_);
      ops_.erase(op->call.id());
    }
    if (result) {
      op->call.complete(*result);
    } else {
      op->call.fail(result.error());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Access tokens

  /// Requires tokens_mutex_.
  std::optional<std::string> cached_token_locked(const std::string& key) {
    const auto it = tokens_.find(key);
    if (it == tokens_.end()) return std::nullopt;
    if (Clock::now() >= it->second.refresh_at) {
      forget_locked(it);
      return std::nullopt;
    }
    return it->second.token;
  }

  void forget_locked(std::map<std::string, CachedToken>::iterator it) {
    std::fill(it->second.token.begin(), it->second.token.end(), '\0');
    tokens_.erase(it);
  }

  /// Drops `token` from the cache (after a 401), unless another call already replaced it.
  void forget_token(const std::string& key, const std::string& token) {
    const std::lock_guard<std::mutex> lock(tokens_mutex_);
    const auto it = tokens_.find(key);
    if (it != tokens_.end() && it->second.token == token) forget_locked(it);
  }

  void store_token(const std::string& key, const std::string& token, std::int64_t expires_in) {
    if (expires_in <= 1) return;  // usable for this call only
    const auto lifetime = std::chrono::seconds(expires_in);
    const auto early = std::min<std::chrono::seconds>(kRefreshEarly, lifetime / 2);
    const std::lock_guard<std::mutex> lock(tokens_mutex_);
    auto& slot = tokens_[key];
    std::fill(slot.token.begin(), slot.token.end(), '\0');
    slot.token = token;
    slot.refresh_at = Clock::now() + lifetime - early;
  }

  /// Calls `next` with a usable access token: the cached one, the one another call of the same
  /// organization and settings is fetching right now (one token request serves a burst of
  /// calls), or a new one.
  void with_token(const OperationPtr& op, TokenDone next) {
    // The vault is asked on every call, cached token or not: a grant revoked, the secret
    // deleted or the session ended stops this organization's HaloPSA calls at once rather than
    // when the cached token expires (up to an hour later). The lease ends at once.
    if (Result<sdk::SecretLease> secret =
            host().release_secret(op->call.session(), op->settings.client_secret_secret);
        !secret) {
      return next(secret_error(secret.error(), op->settings.client_secret_secret));
    }
    const std::string key = op->settings.token_cache_key(op->call.organization_id());
    {
      std::unique_lock<std::mutex> lock(tokens_mutex_);
      if (auto token = cached_token_locked(key)) {
        lock.unlock();
        next(std::move(*token));
        return;
      }
      const auto pending = fetching_.find(key);
      if (pending != fetching_.end()) {
        // Wait for that fetch; if it fails (it ran in another technician's session), fetch
        // with this call's own session rather than report someone else's error.
        pending->second.push_back([this, op, next](std::optional<std::string> token) {
          if (token) return next(std::move(*token));
          fetch_token(op, next, 0);
        });
        return;
      }
      fetching_[key];
    }
    fetch_token(
        op,
        [this, key, next](Result<std::string> token) {
          std::vector<TokenWaiter> waiters;
          {
            const std::lock_guard<std::mutex> lock(tokens_mutex_);
            const auto pending = fetching_.find(key);
            if (pending != fetching_.end()) {
              waiters.swap(pending->second);
              fetching_.erase(pending);
            }
          }
          const std::optional<std::string> shared =
              token ? std::optional<std::string>(*token) : std::nullopt;
          next(std::move(token));
          for (auto& waiter : waiters)
            waiter(shared);
        },
        0);
  }

  void fetch_token(const OperationPtr& op, TokenDone next, int rate_retries) {
    if (op->cancelled) return next(cancelled_error());
    const auto timeout = request_timeout(op);
    if (!timeout) return next(Error{Status::kTimeout, "the operation's deadline has passed"});
    const OrgSettings& settings = op->settings;
    Result<sdk::SecretLease> secret =
        host().release_secret(op->call.session(), settings.client_secret_secret);
    if (!secret) return next(secret_error(secret.error(), settings.client_secret_secret));
    std::string form = token_form(settings, secret.value().view());
    // Ends the lease (the hub zeroes its plaintext); our copy in `form` is zeroed below.
    secret.value().reset();

    const std::string url = token_url(settings);
    sdk::HttpRequest request;
    request.method = "POST";
    request.url = url;
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                       {"Accept", "application/json"}};
    request.body = form;
    request.timeout = *timeout;
    const auto used_timeout = *timeout;
    const Result<void> started = host().http_request(
        op->call.session(), request,
        [this, op, next, rate_retries, used_timeout](Result<HttpResponse> response) {
          on_token(op, next, rate_retries, used_timeout, response);
        });
    std::fill(form.begin(), form.end(), '\0');
    if (!started) next(map_transport_error(started.error(), *timeout));
  }

  void on_token(const OperationPtr& op, const TokenDone& next, int rate_retries,
                std::chrono::milliseconds timeout, const Result<HttpResponse>& response) {
    if (op->cancelled) return next(cancelled_error());
    if (!response) return next(map_transport_error(response.error(), timeout));
    const HttpResponse& r = *response;
    if (r.status_code == 429) {
      return retry_later(
          op, r, rate_retries,
          [this, op, next, rate_retries] { fetch_token(op, next, rate_retries + 1); },
          [next](const Error& e) { next(e); });
    }
    if (r.status_code != 200) return next(map_token_error(r.status_code, r.body, op->settings));
    const json body = json::parse(r.body, nullptr, false);
    if (!body.is_object() || !body.contains("access_token") ||
        !body.at("access_token").is_string() ||
        body.at("access_token").get_ref<const std::string&>().empty()) {
      return next(Error{Status::kUpstreamError,
                        "HaloPSA's token endpoint answered without an access_token"});
    }
    std::int64_t expires_in = 3600;
    if (body.contains("expires_in")) {
      if (auto n = as_id(body.at("expires_in"))) expires_in = *n;
    }
    std::string token = body.at("access_token").get<std::string>();
    store_token(op->settings.token_cache_key(op->call.organization_id()), token, expires_in);
    host().debug("psa-halopsa fetched an access token for organization " +
                 op->call.organization_id() + " (expires in " + std::to_string(expires_in) + " s)");
    next(std::move(token));
  }

  static Error secret_error(const Error& error, const std::string& name) {
    switch (error.status) {
      case Status::kForbidden:
        return {Status::kForbidden,
                "psa-halopsa may not use the secret " + name +
                    " in this organization: an admin must grant it to the plugin"};
      case Status::kNotFound:
        return {Status::kUnavailable, "the secret " + name +
                                          " (the HaloPSA client secret) is not stored in this "
                                          "organization's vault"};
      case Status::kUnauthorized:
        return {Status::kUnauthorized, "your session is no longer valid; log in again"};
      default:
        return error;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Requests to the resource server

  /// What is left of the operation's deadline, capped by the organization's request timeout;
  /// nullopt when nothing is left.
  static std::optional<std::chrono::milliseconds> request_timeout(const OperationPtr& op) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(op->deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    return std::min(left, op->settings.request_timeout);
  }

  struct Attempt {
    bool refreshed = false;
    int rate_retries = 0;
  };

  void send(const OperationPtr& op, HaloRequest request, Done done) {
    attempt(op, std::make_shared<const HaloRequest>(std::move(request)), std::move(done), {});
  }

  void attempt(const OperationPtr& op, std::shared_ptr<const HaloRequest> request, Done done,
               Attempt state) {
    if (op->cancelled) return done(cancelled_error());
    with_token(op, [this, op, request, done, state](Result<std::string> token) {
      if (!token) return done(token.error());
      issue(op, request, done, state, *token);
    });
  }

  void issue(const OperationPtr& op, const std::shared_ptr<const HaloRequest>& request,
             const Done& done, Attempt state, const std::string& token) {
    if (op->cancelled) return done(cancelled_error());
    const auto timeout = request_timeout(op);
    if (!timeout) return done(Error{Status::kTimeout, "the operation's deadline has passed"});
    std::string url = op->settings.resource_url + request->path;
    if (!request->query.empty()) url += "?" + request->query;
    std::string authorization = "Bearer " + token;
    sdk::HttpRequest http;
    http.method = request->method;
    http.url = url;
    http.headers = {{"Authorization", authorization}, {"Accept", "application/json"}};
    if (!request->body.empty()) {
      http.headers.push_back({"Content-Type", "application/json"});
      http.body = request->body;
    }
    http.timeout = *timeout;
    const auto used_timeout = *timeout;
    const Result<void> started = host().http_request(
        op->call.session(), http,
        [this, op, request, done, state, token, used_timeout](Result<HttpResponse> response) {
          on_response(op, request, done, state, token, used_timeout, response);
        });
    std::fill(authorization.begin(), authorization.end(), '\0');
    if (!started) done(map_transport_error(started.error(), *timeout));
  }

  void on_response(const OperationPtr& op, const std::shared_ptr<const HaloRequest>& request,
                   const Done& done, Attempt state, const std::string& token,
                   std::chrono::milliseconds timeout, const Result<HttpResponse>& response) {
    if (op->cancelled) return done(cancelled_error());
    if (!response) return done(map_transport_error(response.error(), timeout));
    const HttpResponse& r = *response;
    if (r.status_code == 401 && !state.refreshed) {
      // The token expired or was revoked early: fetch a new one and try once more.
      forget_token(op->settings.token_cache_key(op->call.organization_id()), token);
      state.refreshed = true;
      host().debug("psa-halopsa: HaloPSA refused a cached access token (401); fetching another");
      return attempt(op, request, done, state);
    }
    if (r.status_code == 429) {
      return retry_later(
          op, r, state.rate_retries,
          [this, op, request, done, state]() mutable {
            ++state.rate_retries;
            attempt(op, request, done, state);
          },
          [done](const Error& e) { done(e); });
    }
    if (r.status_code < 200 || r.status_code > 299) {
      return done(map_status(r.status_code, r.body, request->method != "GET", token));
    }
    if (r.body.find_first_not_of(" \t\r\n") == std::string::npos) return done(json(nullptr));
    json body = json::parse(r.body, nullptr, false);
    if (body.is_discarded()) {
      return done(Error{
          Status::kUpstreamError,
          "HaloPSA answered " + std::to_string(r.status_code) + " with something other than JSON"});
    }
    done(std::move(body));
  }

  /// A 429: waits Retry-After on a host timer and calls `again`, while retries are left and the
  /// wait fits the deadline; otherwise fails with UPSTREAM_RATE_LIMITED.
  void retry_later(const OperationPtr& op, const HttpResponse& r, int retries,
                   std::function<void()> again, std::function<void(const Error&)> fail) {
    const auto wait = retry_after(r.header("Retry-After"), kDefaultRetryAfter);
    const auto shown = std::max<std::chrono::seconds>(wait, std::chrono::seconds(1));
    const bool fits = Clock::now() + wait + std::chrono::milliseconds(500) < op->deadline;
    if (retries >= kMaxRateLimitRetries || wait > kMaxRateLimitWait || !fits) {
      return fail(
          Error{Status::kUpstreamRateLimited, "HaloPSA is rate limiting requests (retry after " +
                                                  std::to_string(shown.count()) + " s)"});
    }
    host().debug("psa-halopsa: HaloPSA answered 429; retrying in " + std::to_string(wait.count()) +
                 " s");
    auto scheduled = host().schedule(std::chrono::duration_cast<std::chrono::milliseconds>(wait),
                                     [op, again = std::move(again), fail](Status status) {
                                       {
                                         const std::lock_guard<std::mutex> lock(op->timer_mutex);
                                         op->timer.reset();
                                       }
                                       if (status != Status::kOk || op->cancelled)
                                         return fail(cancelled_error());
                                       again();
                                     });
    if (!scheduled) return fail(scheduled.error());
    const std::lock_guard<std::mutex> lock(op->timer_mutex);
    op->timer = *scheduled;
  }

  // ---------------------------------------------------------------------------------------------
  // Shared steps of the operations

  /// The Halo client id linked to the input's hub `client_id`, if the input names one.
  static Result<std::optional<std::int64_t>> mapped_client(const OperationPtr& op) {
    const json& input = op->call.input();
    if (!input.is_object() || !input.contains("client_id") || !input.at("client_id").is_string()) {
      return std::optional<std::int64_t>();
    }
    const std::string hub = input.at("client_id").get<std::string>();
    const auto it = op->settings.hub_to_vendor.find(hub);
    if (it == op->settings.hub_to_vendor.end()) {
      return Error{Status::kNotFound,
                   "this client is not linked to HaloPSA in the plugin's settings (client_map)"};
    }
    return std::optional<std::int64_t>(it->second);
  }

  static std::int64_t ticket_id_of(const OperationPtr& op) {
    return op->call.input().at("ticket_id").get<std::int64_t>();
  }

  static Error ticket_not_found(std::int64_t id) {
    return {Status::kNotFound, "HaloPSA ticket " + text_of(id) + " was not found"};
  }

  /// GET /Tickets/{id}; when the input names a client, a ticket of another client is NOT_FOUND.
  void owned_ticket(const OperationPtr& op, bool details, Done next) {
    auto client = mapped_client(op);
    if (!client) return next(client.error());
    const std::int64_t id = ticket_id_of(op);
    HaloRequest request;
    request.path = "/Tickets/" + text_of(id);
    if (details) request.query = "includedetails=true";
    const std::optional<std::int64_t> vendor_client = *client;
    send(op, request, [id, vendor_client, next](Result<json> ticket) {
      if (!ticket) {
        if (ticket.error().status == Status::kNotFound) return next(ticket_not_found(id));
        return next(ticket.error());
      }
      if (!ticket->is_object() || !ticket->contains("id")) {
        return next(Error{Status::kUpstreamError, "HaloPSA answered without a ticket"});
      }
      if (vendor_client && as_id(ticket->value("client_id", json())) != vendor_client) {
        return next(ticket_not_found(id));
      }
      next(*ticket);
    });
  }

  /// The first element of a POST reply (Halo answers one object for a one-element array).
  static std::optional<json> posted_object(const json& reply) {
    if (reply.is_object()) return reply;
    if (reply.is_array() && !reply.empty() && reply.front().is_object()) return reply.front();
    return std::nullopt;
  }

  // ---------------------------------------------------------------------------------------------
  // tickets.list

  void list_tickets(const OperationPtr& op) {
    const json& input = op->call.input();
    auto client = mapped_client(op);
    if (!client) return finish(op, client.error());
    auto walk = std::make_shared<PageWalk>();
    walk->vendor_client = *client;
    if (*client) walk->filters.emplace_back("client_id", text_of(**client));
    for (const char* key : {"status_id", "agent_id"}) {
      if (input.contains(key) && input.at(key).is_number_integer()) {
        walk->filters.emplace_back(key, text_of(input.at(key).get<std::int64_t>()));
      }
    }
    if (input.value("open_only", false)) walk->filters.emplace_back("open_only", "true");
    if (input.contains("search") && input.at("search").is_string()) {
      walk->filters.emplace_back("search", input.at("search").get<std::string>());
    }
    const bool all = input.value("all_pages", false);
    walk->page_size = input.value("page_size", all ? 100 : 50);
    walk->page_no = all ? 1 : input.value("page", 1);
    walk->max_records = input.value("max_records", 1000);
    if (all) return walk_tickets(op, walk);

    fetch_tickets_page(op, walk, [this, op, walk](Result<json> page) {
      if (!page) return finish(op, page.error());
      const std::int64_t total = walk->total;
      json out = {{"tickets", walk->collected},
                  {"page", walk->page_no},
                  {"page_size", walk->page_size},
                  {"total", total},
                  {"has_more", static_cast<std::int64_t>(walk->page_no) * walk->page_size < total}};
      finish(op, out);
    });
  }

  /// Fetches page walk->page_no, appends its tickets (normalized) to walk->collected and sets
  /// walk->total; `next` gets the number of tickets on the page.
  void fetch_tickets_page(const OperationPtr& op, const std::shared_ptr<PageWalk>& walk,
                          Done next) {
    auto pairs = walk->filters;
    pairs.emplace_back("pageinate", "true");
    pairs.emplace_back("page_size", std::to_string(walk->page_size));
    pairs.emplace_back("page_no", std::to_string(walk->page_no));
    HaloRequest request;
    request.path = "/Tickets";
    request.query = query_string(pairs);
    send(op, request, [op, walk, next](Result<json> reply) {
      if (!reply) return next(reply.error());
      const json& body = *reply;
      if (!body.is_object() || !body.contains("tickets") || !body.at("tickets").is_array()) {
        return next(Error{Status::kUpstreamError, "HaloPSA answered without a list of tickets"});
      }
      const auto count =
          body.contains("record_count") ? as_id(body.at("record_count")) : std::nullopt;
      const json& tickets = body.at("tickets");
      walk->total = count.value_or(static_cast<std::int64_t>(tickets.size()));
      std::int64_t seen = 0;
      for (const auto& ticket : tickets) {
        if (!ticket.is_object()) continue;
        ++seen;
        if (!as_id(ticket.value("id", json()))) continue;  // not a usable ticket
        // Never hand out another client's ticket, even if a filter was not applied upstream.
        if (walk->vendor_client &&
            as_id(ticket.value("client_id", json())) != walk->vendor_client) {
          continue;
        }
        if (walk->collected.size() >= walk->max_records) {
          walk->truncated = true;
          break;
        }
        walk->collected.push_back(normalize_ticket(ticket, op->settings, op->include_raw));
      }
      next(json(seen));
    });
  }

  void walk_tickets(const OperationPtr& op, const std::shared_ptr<PageWalk>& walk) {
    fetch_tickets_page(op, walk, [this, op, walk](Result<json> seen) {
      if (!seen) return finish(op, seen.error());
      const std::int64_t fetched = static_cast<std::int64_t>(walk->page_no) * walk->page_size;
      const bool last =
          fetched >= walk->total || seen->get<std::int64_t>() == 0 || walk->page_no >= kMaxPages;
      if (!last && !walk->truncated && walk->collected.size() < walk->max_records) {
        ++walk->page_no;
        return walk_tickets(op, walk);
      }
      const bool more = walk->truncated || (!last && fetched < walk->total);
      json out = {
          {"tickets", walk->collected}, {"page", 1},        {"page_size", walk->page_size},
          {"total", walk->total},       {"has_more", more}, {"pages_fetched", walk->page_no}};
      finish(op, out);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // tickets.get, tickets.create, tickets.update, tickets.add_note

  void get_ticket(const OperationPtr& op) {
    const bool details = op->call.input().value("includedetails", true);
    owned_ticket(op, details, [this, op](Result<json> ticket) {
      if (!ticket) return finish(op, ticket.error());
      finish(op, json{{"ticket", normalize_ticket(*ticket, op->settings, op->include_raw)}});
    });
  }

  /// The Halo fields of a create or update, from our field names.
  static json ticket_fields(const json& input) {
    json element = json::object();
    for (const char* key : {"summary", "details"}) {
      if (input.contains(key) && input.at(key).is_string()) element[key] = input.at(key);
    }
    const std::pair<const char*, const char*> ids[] = {
        {"vendor_site_id", "site_id"}, {"priority_id", "priority_id"}, {"type_id", "tickettype_id"},
        {"status_id", "status_id"},    {"agent_id", "agent_id"},       {"user_id", "user_id"}};
    for (const auto& [ours, theirs] : ids) {
      if (input.contains(ours) && input.at(ours).is_number_integer())
        element[theirs] = input.at(ours);
    }
    return element;
  }

  void post_ticket(const OperationPtr& op, json element) {
    HaloRequest request;
    request.method = "POST";
    request.path = "/Tickets";
    request.body = json::array({std::move(element)}).dump();
    send(op, request, [this, op](Result<json> reply) {
      if (!reply) return finish(op, reply.error());
      auto ticket = posted_object(*reply);
      if (!ticket) {
        return finish(op, Error{Status::kUpstreamError, "HaloPSA answered without the ticket"});
      }
      finish(op, json{{"ticket", normalize_ticket(*ticket, op->settings, op->include_raw)}});
    });
  }

  void create_ticket(const OperationPtr& op) {
    auto client = mapped_client(op);
    if (!client) return finish(op, client.error());
    if (!*client) {
      return finish(op, Error{Status::kInvalidInput, "tickets.create needs client_id"});
    }
    json element = ticket_fields(op->call.input());
    element["client_id"] = **client;
    post_ticket(op, std::move(element));
  }

  void update_ticket(const OperationPtr& op) {
    json element = ticket_fields(op->call.input());
    if (element.empty()) {
      return finish(op, Error{Status::kInvalidInput, "tickets.update needs a field to change"});
    }
    element["id"] = ticket_id_of(op);
    auto client = mapped_client(op);
    if (!client) return finish(op, client.error());
    if (!*client) return post_ticket(op, std::move(element));
    owned_ticket(op, false, [this, op, element](Result<json> ticket) {
      if (!ticket) return finish(op, ticket.error());
      post_ticket(op, element);
    });
  }

  void add_note(const OperationPtr& op) {
    const json& input = op->call.input();
    json action = {{"ticket_id", ticket_id_of(op)},
                   {"note", input.value("note", "")},
                   {"outcome", input.value("outcome", "Note")},
                   {"hiddenfromuser", input.value("hidden_from_user", false)}};
    auto post = [this, op, action] {
      HaloRequest request;
      request.method = "POST";
      request.path = "/Actions";
      request.body = json::array({action}).dump();
      send(op, request, [this, op](Result<json> reply) {
        if (!reply) {
          if (reply.error().status == Status::kNotFound)
            return finish(op, ticket_not_found(ticket_id_of(op)));
          return finish(op, reply.error());
        }
        auto created = posted_object(*reply);
        if (!created) {
          return finish(op, Error{Status::kUpstreamError, "HaloPSA answered without the action"});
        }
        finish(op, json{{"action", normalize_action(*created, op->include_raw)}});
      });
    };
    auto client = mapped_client(op);
    if (!client) return finish(op, client.error());
    if (!*client) return post();
    owned_ticket(op, false, [this, op, post](Result<json> ticket) {
      if (!ticket) return finish(op, ticket.error());
      post();
    });
  }

  // ---------------------------------------------------------------------------------------------
  // clients.list

  void list_clients(const OperationPtr& op) {
    const json& input = op->call.input();
    auto client = mapped_client(op);
    if (!client) return finish(op, client.error());
    if (*client) {
      HaloRequest request;
      request.path = "/Client/" + text_of(**client);
      return send(op, request, [this, op](Result<json> reply) {
        if (!reply) {
          if (reply.error().status == Status::kNotFound) {
            return finish(op, Error{Status::kNotFound,
                                    "the HaloPSA client linked to this client no longer exists"});
          }
          return finish(op, reply.error());
        }
        if (!reply->is_object() || !as_id(reply->value("id", json()))) {
          return finish(op, Error{Status::kUpstreamError, "HaloPSA answered without a client"});
        }
        json out = {
            {"clients", json::array({normalize_client(*reply, op->settings, op->include_raw)})},
            {"page", 1},
            {"page_size", 1},
            {"total", 1},
            {"has_more", false}};
        finish(op, out);
      });
    }
    const int page = input.value("page", 1);
    const int page_size = input.value("page_size", 50);
    std::vector<std::pair<std::string, std::string>> pairs = {
        {"pageinate", "true"},
        {"page_size", std::to_string(page_size)},
        {"page_no", std::to_string(page)}};
    if (input.contains("search") && input.at("search").is_string()) {
      pairs.emplace_back("search", input.at("search").get<std::string>());
    }
    if (input.value("include_inactive", false)) pairs.emplace_back("includeinactive", "true");
    HaloRequest request;
    request.path = "/Client";
    request.query = query_string(pairs);
    send(op, request, [this, op, page, page_size](Result<json> reply) {
      if (!reply) return finish(op, reply.error());
      const json& body = *reply;
      if (!body.is_object() || !body.contains("clients") || !body.at("clients").is_array()) {
        return finish(op,
                      Error{Status::kUpstreamError, "HaloPSA answered without a list of clients"});
      }
      json clients = json::array();
      for (const auto& c : body.at("clients")) {
        if (c.is_object() && as_id(c.value("id", json()))) {
          clients.push_back(normalize_client(c, op->settings, op->include_raw));
        }
      }
      const auto count =
          body.contains("record_count") ? as_id(body.at("record_count")) : std::nullopt;
      const std::int64_t total = count.value_or(static_cast<std::int64_t>(clients.size()));
      json out = {{"clients", std::move(clients)},
                  {"page", page},
                  {"page_size", page_size},
                  {"total", total},
                  {"has_more", static_cast<std::int64_t>(page) * page_size < total}};
      finish(op, out);
    });
  }

  std::mutex ops_mutex_;  // guards ops_
  std::map<std::uint64_t, std::weak_ptr<Operation>> ops_;
  std::mutex tokens_mutex_;  // guards tokens_ and fetching_
  std::map<std::string, CachedToken> tokens_;
  std::map<std::string, std::vector<TokenWaiter>> fetching_;  // token fetches in flight, by key
};

}  // namespace
}  // namespace helm::halopsa

HELM_EXPORT_PLUGIN(helm::halopsa::HaloPlugin, "psa-halopsa")
