#include "helm/agent/agent.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdlib>
#include <deque>
#include <random>
#include <thread>

#include "helm/agent/backoff.hpp"
#include "helm/agent/commands.hpp"
#include "helm/agent/frames.hpp"
#include "helm/agent/log.hpp"
#include "helm/agent/recent_commands.hpp"
#include "helm/agent/state.hpp"
#include "helm/agent/system_info.hpp"
#include "tls_connect.hpp"
#include "websocket_setup.hpp"

namespace helm::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;
using WsStream = websocket::stream<detail::TlsStream>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

long long ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

struct ConnectionOutcome {
  bool upgraded = false;
  unsigned http_status = 0;  // of a refused upgrade (401: the token is unknown or revoked)
  int close_code = 0;        // 0: no close frame from the hub
  std::string close_reason;
  std::string error;
  Clock::duration uptime{};
};

class Agent;

// One WebSocket session with the hub, from the TCP connect to the close. Lives on the agent's
// single I/O thread.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Agent& agent, asio::any_io_executor ex, asio::ssl::context& ctx)
      : agent_(agent), ws_(ex, ctx), hb_timer_(ex) {}

  asio::awaitable<ConnectionOutcome> run();
  void send(const nlohmann::json& frame, std::string delivered_id = {});
  void drop();              // abort the socket
  void close_going_away();  // polite close when the agent stops
  bool welcomed() const { return welcomed_ && !closed_; }

 private:
  asio::awaitable<void> write_loop();
  asio::awaitable<void> heartbeat_loop();
  void handle(std::string_view text);

  Agent& agent_;
  WsStream ws_;
  asio::steady_timer hb_timer_;
  std::deque<std::pair<std::string, std::string>> outbox_;  // frame text, command id
  bool writing_ = false;
  bool closed_ = false;
  bool welcomed_ = false;
  std::uint64_t seq_ = 0;
  Clock::time_point hb_sent_at_;
  Clock::time_point last_answer_;
  Clock::duration hb_interval_{};
  std::string drop_reason_;
};

class Agent : public std::enable_shared_from_this<Agent> {
 public:
  Agent(RunOptions options, AgentState state, RecentCommandStore store)
      : options_(std::move(options)),
        state_(std::move(state)),
        store_(std::move(store)),
        signals_(ioc_, SIGINT, SIGTERM),
        retry_timer_(ioc_) {}

  asio::awaitable<void> main_loop();
  void dispatch(CmdFrame cmd);
  void deliver(const nlohmann::json& result);
  Clock::duration jittered(Clock::duration interval) {
    std::uniform_real_distribution<double> factor(0.9, 1.1);
    return std::chrono::duration_cast<Clock::duration>(interval * factor(rng_));
  }

  asio::io_context ioc_;
  RunOptions options_;
  AgentState state_;
  RecentCommandStore store_;
  CommandContext command_context_;
  HostIdentity host_ = host_identity();
  TlsTrust trust_;
  Url url_;
  std::optional<ProxyConfig> proxy_;
  std::shared_ptr<asio::ssl::context> ssl_;
  asio::signal_set signals_;
  asio::steady_timer retry_timer_;
  std::shared_ptr<Connection> current_;
  Backoff backoff_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopping_ = false;
  int exit_code_ = kExitStopped;
};

asio::awaitable<ConnectionOutcome> Connection::run() {
  ConnectionOutcome out;
  auto self = shared_from_this();
  if (auto connected = co_await detail::connect_tls(ws_.next_layer(), agent_.url_, agent_.proxy_,
                                                    agent_.trust_, std::chrono::seconds(30));
      !connected) {
    out.error = connected.error().message;
    co_return out;
  }
  detail::prepare_websocket(ws_, agent_.state_.device_token,
                            std::string("helm-agent/") + kAgentVersion);
  websocket::response_type response;
  auto [hs_ec] =
      co_await ws_.async_handshake(response, agent_.url_.authority(), agent_.url_.target, kTuple);
  if (hs_ec) {
    out.error = detail::describe_upgrade_failure(hs_ec, response);
    out.http_status = response.result_int();
    co_return out;
  }
  if (auto checked = detail::check_upgrade(response); !checked) {
    out.error = checked.error().message;
    beast::get_lowest_layer(ws_).close();
    co_return out;
  }
  out.upgraded = true;
  const auto connected_at = Clock::now();
  last_answer_ = connected_at;
  hb_interval_ = std::chrono::seconds(agent_.state_.heartbeat_s);
  send(make_hello(kAgentVersion, agent_.host_.hostname, agent_.host_.os, agent_.host_.boot_id));
  asio::co_spawn(
      ws_.get_executor(), [self]() { return self->heartbeat_loop(); }, asio::detached);
  for (;;) {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws_.async_read(buffer, kTuple);
    if (ec) {
      if (ec == websocket::error::closed) {
        out.close_code = ws_.reason().code;
        out.close_reason = std::string(ws_.reason().reason.c_str());
      } else if (out.error.empty()) {
        out.error = ec.message();
      }
      break;
    }
    handle(beast::buffers_to_string(buffer.data()));
  }
  closed_ = true;
  hb_timer_.cancel();
  boost::system::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  out.uptime = Clock::now() - connected_at;
  if (!drop_reason_.empty()) out.error = drop_reason_;
  co_return out;
}

void Connection::send(const nlohmann::json& frame, std::string delivered_id) {
  if (closed_) return;
  outbox_.emplace_back(log::dump(frame), std::move(delivered_id));
  if (writing_) return;
  writing_ = true;
  auto self = shared_from_this();
  asio::co_spawn(
      ws_.get_executor(), [self]() { return self->write_loop(); }, asio::detached);
}

asio::awaitable<void> Connection::write_loop() {
  while (!outbox_.empty() && !closed_) {
    auto [text, id] = std::move(outbox_.front());
    outbox_.pop_front();
    auto [ec, n] = co_await ws_.async_write(asio::buffer(text), kTuple);
    if (ec) {
      if (!closed_) log::warn("writing to the hub failed", {{"error", ec.message()}});
      drop();
      break;
    }
    if (!id.empty()) agent_.store_.mark_delivered(id);
  }
  writing_ = false;
}

asio::awaitable<void> Connection::heartbeat_loop() {
  while (!closed_) {
    hb_timer_.expires_after(agent_.jittered(hb_interval_));
    auto [ec] = co_await hb_timer_.async_wait(kTuple);
    if (closed_) break;
    if (ec) continue;  // rescheduled (the welcome changed the interval)
    if (Clock::now() - last_answer_ > 3 * hb_interval_) {
      drop_reason_ = "no heartbeat answer for three intervals: the connection is dead";
      log::warn(drop_reason_, {{"heartbeat_s", ms(hb_interval_) / 1000}});
      drop();
      break;
    }
    if (!welcomed_) continue;
    hb_sent_at_ = Clock::now();
    send(make_hb(++seq_));
  }
}

void Connection::drop() {
  if (closed_) return;
  closed_ = true;
  hb_timer_.cancel();
  boost::system::error_code ignored;
  beast::get_lowest_layer(ws_).socket().cancel(ignored);
  beast::get_lowest_layer(ws_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

void Connection::close_going_away() {
  if (closed_) return;
  auto self = shared_from_this();
  ws_.async_close(websocket::close_reason(websocket::close_code::going_away, "agent stopping"),
                  [self](boost::system::error_code) { self->drop(); });
}

void Connection::handle(std::string_view text) {
  auto parsed = parse_hub_frame(text);
  if (!parsed) {
    log::warn("the hub sent a frame this agent refuses", {{"error", parsed.error().message}});
    send(make_error("bad_frame", parsed.error().message, ""));
    return;
  }
  std::visit(
      Overloaded{[&](const WelcomeFrame& welcome) {
                   welcomed_ = true;
                   last_answer_ = Clock::now();
                   if (welcome.heartbeat_s > 0) {
                     hb_interval_ = std::chrono::seconds(welcome.heartbeat_s);
                     hb_timer_.cancel();  // reschedule with the hub's interval
                   }
                   log::info("connected to the hub", {{"device_id", welcome.device_id},
                                                      {"heartbeat_s", ms(hb_interval_) / 1000}});
                   for (auto& result : agent_.store_.undelivered_results()) {
                     const std::string id = result.value("id", std::string());
                     send(result, id);
                   }
                 },
                 [&](const HbAckFrame& ack) {
                   last_answer_ = Clock::now();
                   if (ack.seq == seq_) {
                     log::debug("heartbeat answered",
                                {{"seq", ack.seq}, {"rtt_ms", ms(Clock::now() - hb_sent_at_)}});
                   }
                 },
                 [&](const CmdFrame& cmd) {
                   // Acknowledged by dispatch() once the id is on disk: an ack the hub has
                   // seen for a command this agent could forget would leave it acked forever.
                   agent_.dispatch(cmd);
                 },
                 [&](const HubErrorFrame& error) {
                   log::warn(
                       "the hub refused a frame",
                       {{"code", error.code}, {"message", error.message}, {"ref", error.ref}});
                 },
                 [&](const UnknownFrame& unknown) {
                   log::warn("the hub sent an unknown frame type", {{"t", unknown.t}});
                   send(make_error("unknown_type",
                                   "this agent does not know frame type \"" + unknown.t + "\"",
                                   unknown.t));
                 }},
      parsed.value());
}

void Agent::dispatch(CmdFrame cmd) {
  auto self = shared_from_this();
  // Commands run off the I/O thread: begin() persists the id with fsync, a script may block.
  std::thread([self, cmd = std::move(cmd)] {
    nlohmann::json stored;
    const auto seen = self->store_.begin(cmd.id, &stored);
    asio::post(self->ioc_, [self, id = cmd.id] {
      if (self->current_ && self->current_->welcomed()) self->current_->send(make_ack(id));
    });
    switch (seen) {
      case RecentCommandStore::Seen::kNew: {
        log::info("running command", {{"command_id", cmd.id}, {"kind", cmd.kind}});
        nlohmann::json result;
        try {
          result = execute_command(cmd, self->command_context_);
        } catch (const std::exception& e) {
          result = make_result(cmd.id, "error", -1, "", e.what(), nlohmann::json::object());
        }
        self->store_.finish(cmd.id, result);
        log::info("command finished",
                  {{"command_id", cmd.id}, {"status", result.value("status", "")}});
        asio::post(self->ioc_, [self, result] { self->deliver(result); });
        break;
      }
      case RecentCommandStore::Seen::kFinished:
        log::info("repeated command: sending its stored result", {{"command_id", cmd.id}});
        asio::post(self->ioc_, [self, stored] { self->deliver(stored); });
        break;
      case RecentCommandStore::Seen::kRunning:
        log::info("repeated command is still running", {{"command_id", cmd.id}});
        break;
      case RecentCommandStore::Seen::kForgottenResult:
        log::warn("repeated command finished long ago; its result is no longer kept",
                  {{"command_id", cmd.id}});
        break;
    }
  }).detach();
}

void Agent::deliver(const nlohmann::json& result) {
  if (current_ && current_->welcomed()) {
    current_->send(result, result.value("id", std::string()));
  }
  // Otherwise it is sent after the next welcome (undelivered_results).
}

asio::awaitable<void> Agent::main_loop() {
  auto self = shared_from_this();
  signals_.async_wait([self](boost::system::error_code ec, int signal) {
    if (ec) return;
    log::info("stopping", {{"signal", signal}});
    self->stopping_ = true;
    if (self->current_) self->current_->close_going_away();
    self->retry_timer_.cancel();
  });
  int attempts = 0;
  while (!stopping_) {
    ++attempts;
    auto connection = std::make_shared<Connection>(*this, ioc_.get_executor(), *ssl_);
    current_ = connection;
    ConnectionOutcome out = co_await connection->run();
    current_.reset();
    if (stopping_) break;
    nlohmann::json fields = {{"uptime_ms", ms(out.uptime)}};
    if (out.close_code != 0) {
      fields["close_code"] = out.close_code;
      fields["close_reason"] = out.close_reason;
    }
    if (!out.error.empty()) fields["error"] = out.error;
    // The hub answers 401 to the upgrade only for a token it does not know (revoked, device
    // deleted, replaced by a re-enrollment; a database outage is 503): as final as 4001, and
    // retrying forever would only load the hub.
    if (out.close_code == 4001 || out.http_status == 401) {
      state_.revoked_reason =
          out.close_code == 4001
              ? "the hub closed the connection with 4001 (token revoked or device deleted)" +
                    (out.close_reason.empty() ? "" : ": " + out.close_reason)
              : std::string(
                    "the hub refused the device token (HTTP 401): revoked, deleted or "
                    "replaced by a newer enrollment");
      if (auto saved = save_state(options_.state_dir, state_); !saved) {
        log::error("cannot mark the state file as revoked", {{"error", saved.error().message}});
      }
      log::error(
          "the hub revoked this device; not reconnecting until it is enrolled again "
          "(helm-agent enroll)",
          fields);
      exit_code_ = kExitRevoked;
      break;
    }
    if (out.close_code == 4009) {
      // Another process holds this device's token (a cloned machine or state dir): reconnecting
      // would only take the connection back and forth between the two.
      log::error(
          "the hub closed this connection: superseded by a newer connection of the same device "
          "(another agent uses this device's token); stopping",
          fields);
      exit_code_ = kExitSuperseded;
      break;
    } else {
      log::warn(out.upgraded ? "connection to the hub ended" : "cannot connect to the hub", fields);
    }
    if (options_.max_connection_attempts > 0 && attempts >= options_.max_connection_attempts) {
      break;
    }
    backoff_.connection_ended(std::chrono::duration_cast<Backoff::Duration>(out.uptime));
    if (out.close_code == 1012) backoff_.use_long_base();
    const auto delay = backoff_.next();
    log::info("reconnecting", {{"delay_ms", delay.count()}});
    retry_timer_.expires_after(delay);
    co_await retry_timer_.async_wait(kTuple);
  }
  boost::system::error_code ignored;
  signals_.cancel(ignored);
}

}  // namespace

int run_agent(const RunOptions& options) {
  auto state = load_state(options.state_dir);
  if (!state) {
    log::error(state.error().message);
    return kExitConfig;
  }
  if (!state->revoked_reason.empty()) {
    log::error("this device was revoked by the hub; enroll it again (helm-agent enroll)",
               {{"reason", state->revoked_reason}});
    return kExitRevoked;
  }
  auto store = RecentCommandStore::open(options.state_dir / "commands.json");
  if (!store) {
    log::error(store.error().message);
    return kExitConfig;
  }
  auto agent = std::make_shared<Agent>(options, std::move(state.value()), std::move(store.value()));
  const auto policy_file =
      options.policy_file.empty() ? options.state_dir / "policy.json" : options.policy_file;
  std::error_code exists_ec;
  if (std::filesystem::exists(policy_file, exists_ec)) {
    auto policy = load_policy(policy_file);
    if (policy) {
      agent->command_context_.policy = std::move(policy.value());
      log::info("run_script enabled by policy", {{"policy", policy_file.string()}});
    } else {
      log::error("run_script disabled: the policy file is invalid",
                 {{"error", policy.error().message}});
    }
  } else if (!options.policy_file.empty()) {
    log::error("run_script disabled: no policy file", {{"policy", policy_file.string()}});
  }
  agent->command_context_.work_dir = options.state_dir / "work";
  if (auto made = ensure_state_dir(agent->command_context_.work_dir); !made) {
    log::warn(made.error().message);
  }
  const auto& st = agent->state_;
  if (!st.ca_pin.empty()) {
    agent->trust_.pin = parse_pin(st.ca_pin);
    if (!agent->trust_.pin) {
      log::error("the state file's ca_pin is not a SHA-256 in hex; enroll again");
      return kExitConfig;
    }
  }
  agent->trust_.ca_file = st.ca_file;
  auto url = parse_url(st.transport_url);
  if (!url || (url->scheme != "wss")) {
    log::error("the state file's transport_url is not a wss:// URL; enroll again",
               {{"transport_url", st.transport_url}});
    return kExitConfig;
  }
  agent->url_ = url.value();
  auto proxy =
      select_proxy(agent->url_, options.proxy, [](const char* n) { return std::getenv(n); });
  if (!proxy) {
    log::error(proxy.error().message);
    return kExitConfig;
  }
  agent->proxy_ = proxy.value();
  auto ctx = detail::make_client_context(agent->trust_);
  if (!ctx) {
    log::error(ctx.error().message);
    return kExitConfig;
  }
  agent->ssl_ = ctx.value();
  log::info("helm-agent starting", {{"version", kAgentVersion},
                                    {"device_id", st.device_id},
                                    {"transport_url", st.transport_url},
                                    {"proxy", agent->proxy_ ? agent->proxy_->host : ""}});
  asio::co_spawn(
      agent->ioc_,
      [agent]() -> asio::awaitable<void> {
        try {
          co_await agent->main_loop();
        } catch (const std::exception& e) {
          log::error("agent loop failed", {{"error", e.what()}});
          agent->exit_code_ = kExitConfig;
        }
      },
      asio::detached);
  agent->ioc_.run();
  return agent->exit_code_;
}

}  // namespace helm::agent
