#include "loadgen.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "enroll_async.hpp"
#include "helm/agent/frames.hpp"
#include "helm/agent/log.hpp"
#include "helm/agent/state.hpp"
#include "helm/agent/system_info.hpp"
#include "tls_connect.hpp"
#include "websocket_setup.hpp"

namespace helm::agent::loadgen {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Credentials {
  std::string device_id;
  std::string device_token;
  std::string transport_url;
  int heartbeat_s = 0;
};

// Per-thread measurements, merged after the threads stop (no locks on the hot path).
struct ThreadStats {
  std::vector<double> hb_rtt_ms;
  std::vector<double> ack_ms;
  std::vector<double> result_ms;
  std::map<std::string, std::uint64_t> errors;
  std::uint64_t hb_sent = 0;
  std::uint64_t commands = 0;
};

struct Shared {
  const Options* options = nullptr;
  std::shared_ptr<asio::ssl::context> ssl;
  std::string run_id;
  Clock::time_point start;
  std::vector<Credentials> credentials;  // pre-loaded, or filled by enrollment (index = agent)
  std::mutex credentials_mutex;
  std::atomic<int> connected{0};
  std::atomic<int> failed{0};
  std::atomic<std::uint64_t> hb_acked{0};
  std::atomic<bool> stopping{false};
  nlohmann::json inventory;
  HostIdentity host;
};

class SimAgent : public std::enable_shared_from_this<SimAgent> {
 public:
  SimAgent(Shared& shared, ThreadStats& stats, int index, asio::any_io_executor ex)
      : shared_(shared), stats_(stats), index_(index), ws_(ex, *shared.ssl), timer_(ex) {}

  asio::awaitable<void> run();

 private:
  asio::awaitable<bool> obtain_credentials();
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<void> write_loop();
  void send(std::string text, std::function<void()> on_written = {});
  void error(const std::string& kind) { ++stats_.errors[kind]; }
  void handle(const std::string& text);

  Shared& shared_;
  ThreadStats& stats_;
  int index_;
  Credentials creds_;
  detail::WsStream ws_;
  asio::steady_timer timer_;
  std::deque<std::pair<std::string, std::function<void()>>> outbox_;
  bool writing_ = false;
  bool closed_ = false;
  bool counted_ = false;
  std::uint64_t seq_ = 0;
  std::map<std::uint64_t, Clock::time_point> hb_sent_at_;
  Clock::duration hb_interval_{};
};

asio::awaitable<bool> SimAgent::obtain_credentials() {
  {
    std::lock_guard lock(shared_.credentials_mutex);
    if (static_cast<std::size_t>(index_) < shared_.credentials.size() &&
        !shared_.credentials[static_cast<std::size_t>(index_)].device_token.empty()) {
      creds_ = shared_.credentials[static_cast<std::size_t>(index_)];
      co_return true;
    }
  }
  EnrollRequest request;
  request.server = shared_.options->server;
  request.enrollment_key = shared_.options->key;
  request.trust = shared_.options->trust;
  request.machine_id = "loadgen-" + shared_.run_id + "-" + std::to_string(index_);
  request.host = shared_.host;
  request.host.hostname = "loadgen-" + shared_.run_id + "-" + std::to_string(index_);
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto outcome = co_await detail::enroll_async(request, *shared_.ssl);
    if (auto* state = std::get_if<AgentState>(&outcome)) {
      creds_ = {state->device_id, state->device_token, state->transport_url, state->heartbeat_s};
      std::lock_guard lock(shared_.credentials_mutex);
      shared_.credentials[static_cast<std::size_t>(index_)] = creds_;
      co_return true;
    }
    const auto& failure = std::get<EnrollFailure>(outcome);
    error(failure.http_status ? "enroll_http_" + std::to_string(failure.http_status)
                              : "enroll_connect");
    if (failure.http_status != 429) {
      if (index_ == 0) log::error("enrollment failed", {{"error", failure.message}});
      co_return false;
    }
    timer_.expires_after(std::chrono::seconds(std::max(1, failure.retry_after_s)));
    co_await timer_.async_wait(kTuple);
  }
  co_return false;
}

asio::awaitable<void> SimAgent::run() {
  auto self = shared_from_this();
  const auto& options = *shared_.options;
  if (options.rate > 0) {
    timer_.expires_at(shared_.start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(index_ / options.rate)));
    co_await timer_.async_wait(kTuple);
  }
  auto fail = [&](const std::string& kind) {
    error(kind);
    if (!counted_) {
      counted_ = true;
      ++shared_.failed;
    }
  };
  if (!co_await obtain_credentials()) {
    if (!counted_) {
      counted_ = true;
      ++shared_.failed;
    }
    co_return;
  }
  auto url = parse_url(creds_.transport_url);
  if (!url) {
    fail("bad_transport_url");
    co_return;
  }
  if (auto connected = co_await detail::connect_tls(ws_.next_layer(), url.value(), std::nullopt,
                                                    options.trust, std::chrono::seconds(30));
      !connected) {
    if (index_ == 0) log::error("connect failed", {{"error", connected.error().message}});
    fail("tls_connect");
    co_return;
  }
  detail::prepare_websocket(ws_, creds_.device_token, "helm-loadgen/" + std::string(kAgentVersion));
  websocket::response_type response;
  auto [hs_ec] = co_await ws_.async_handshake(response, url->authority(), url->target, kTuple);
  if (hs_ec) {
    if (index_ == 0) {
      log::error("upgrade failed", {{"error", detail::describe_upgrade_failure(hs_ec, response)}});
    }
    fail(response.result_int() ? "upgrade_http_" + std::to_string(response.result_int())
                               : "upgrade");
    co_return;
  }
  if (!detail::check_upgrade(response)) {
    fail("subprotocol");
    co_return;
  }
  const int hb = options.heartbeat_s > 0 ? options.heartbeat_s
                                         : (creds_.heartbeat_s > 0 ? creds_.heartbeat_s : 30);
  hb_interval_ = std::chrono::seconds(hb);
  send(log::dump(make_hello(kAgentVersion, "loadgen-" + std::to_string(index_), "linux",
                            shared_.host.boot_id)));
  for (;;) {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws_.async_read(buffer, kTuple);
    if (ec) {
      if (shared_.stopping) break;
      if (ec == websocket::error::closed) {
        fail("closed_" + std::to_string(ws_.reason().code));
      } else {
        fail("read_" + ec.message());
      }
      break;
    }
    handle(beast::buffers_to_string(buffer.data()));
  }
  closed_ = true;
  timer_.cancel();
}

void SimAgent::handle(const std::string& text) {
  const auto received = Clock::now();
  auto frame = parse_hub_frame(text);
  if (!frame) {
    error("bad_frame");
    return;
  }
  if (const auto* welcome = std::get_if<WelcomeFrame>(&frame.value())) {
    if (welcome->heartbeat_s > 0 && shared_.options->heartbeat_s == 0) {
      hb_interval_ = std::chrono::seconds(welcome->heartbeat_s);
    }
    if (!counted_) {
      counted_ = true;
      ++shared_.connected;
      auto self = shared_from_this();
      asio::co_spawn(
          ws_.get_executor(), [self] { return self->heartbeat_loop(); }, asio::detached);
    }
  } else if (const auto* ack = std::get_if<HbAckFrame>(&frame.value())) {
    const auto it = hb_sent_at_.find(ack->seq);
    if (it != hb_sent_at_.end()) {
      stats_.hb_rtt_ms.push_back(ms_between(it->second, received));
      hb_sent_at_.erase(hb_sent_at_.begin(), std::next(it));
      shared_.hb_acked.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (const auto* cmd = std::get_if<CmdFrame>(&frame.value())) {
    ++stats_.commands;
    auto& stats = stats_;
    send(log::dump(make_ack(cmd->id)),
         [&stats, received] { stats.ack_ms.push_back(ms_between(received, Clock::now())); });
    nlohmann::json result;
    if (cmd->kind == "ping") {
      result = make_result(cmd->id, "ok", 0, "", "", {{"pong", true}});
    } else if (cmd->kind == "inventory") {
      result = make_result(cmd->id, "ok", 0, "", "", shared_.inventory);
    } else {
      result = make_result(cmd->id, "error", -1, "", "helm-loadgen runs only ping and inventory",
                           nlohmann::json::object());
    }
    send(log::dump(result),
         [&stats, received] { stats.result_ms.push_back(ms_between(received, Clock::now())); });
  } else if (const auto* unknown = std::get_if<UnknownFrame>(&frame.value())) {
    send(log::dump(make_error("unknown_type", "unknown frame type", unknown->t)));
  }
}

void SimAgent::send(std::string text, std::function<void()> on_written) {
  if (closed_) return;
  outbox_.emplace_back(std::move(text), std::move(on_written));
  if (writing_) return;
  writing_ = true;
  auto self = shared_from_this();
  asio::co_spawn(
      ws_.get_executor(), [self] { return self->write_loop(); }, asio::detached);
}

asio::awaitable<void> SimAgent::write_loop() {
  while (!outbox_.empty() && !closed_) {
    auto [text, on_written] = std::move(outbox_.front());
    outbox_.pop_front();
    auto [ec, n] = co_await ws_.async_write(asio::buffer(text), kTuple);
    if (ec) {
      if (!shared_.stopping) error("write");
      break;
    }
    if (on_written) on_written();
  }
  writing_ = false;
}

asio::awaitable<void> SimAgent::heartbeat_loop() {
  auto self = shared_from_this();
  std::mt19937 rng(static_cast<unsigned>(index_));
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  while (!closed_ && !shared_.stopping) {
    timer_.expires_after(std::chrono::duration_cast<Clock::duration>(hb_interval_ * jitter(rng)));
    auto [ec] = co_await timer_.async_wait(kTuple);
    if (ec || closed_ || shared_.stopping) break;
    const auto seq = ++seq_;
    hb_sent_at_[seq] = Clock::now();
    ++stats_.hb_sent;
    if (hb_sent_at_.size() > 3) {
      error("hb_unanswered");
      hb_sent_at_.erase(hb_sent_at_.begin());
    }
    send(log::dump(make_hb(seq)));
  }
}

struct HubSample {
  long long rss_kib = -1;
  double cpu_ms = -1;
  /// The hub and every process under it (its embedded PostgreSQL and the backends working for
  /// it), including children they have reaped: what the machine spent, not only the hub.
  double tree_cpu_ms = -1;
};

struct ProcStat {
  pid_t ppid = 0;
  unsigned long long utime = 0, stime = 0, cutime = 0, cstime = 0;
};

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  ProcStat out;
  // After "pid (comm)": state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
  for (int i = 3; i <= 17 && fields >> field; ++i) {
    try {
      if (i == 4) out.ppid = static_cast<pid_t>(std::stol(field));
      if (i == 14) out.utime = std::stoull(field);
      if (i == 15) out.stime = std::stoull(field);
      if (i == 16) out.cutime = std::stoull(field);
      if (i == 17) out.cstime = std::stoull(field);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return out;
}

double tree_cpu_ms(pid_t root) {
  std::map<pid_t, ProcStat> all;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto stat = read_proc_stat(pid)) all[pid] = *stat;
  }
  std::set<pid_t> tree{root};
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& [pid, stat] : all) {
      if (!tree.count(pid) && tree.count(stat.ppid)) {
        tree.insert(pid);
        grew = true;
      }
    }
  }
  unsigned long long ticks = 0;
  for (const pid_t pid : tree) {
    const auto found = all.find(pid);
    if (found == all.end()) continue;
    const auto& s = found->second;
    ticks += s.utime + s.stime + (pid == root ? 0 : s.cutime + s.cstime);
  }
  return 1000.0 * static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

HubSample sample_hub(pid_t pid) {
  HubSample sample;
  if (pid <= 0) return sample;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) sample.rss_kib = std::atoll(line.c_str() + 6);
  }
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    }
    sample.cpu_ms =
        1000.0 * static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  sample.tree_cpu_ms = tree_cpu_ms(pid);
  return sample;
}

nlohmann::json percentiles(std::vector<double> values) {
  if (values.empty()) return {{"p50", nullptr}, {"p99", nullptr}, {"max", nullptr}, {"n", 0}};
  std::sort(values.begin(), values.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(i, values.size() - 1)];
  };
  return {{"p50", at(0.5)}, {"p99", at(0.99)}, {"max", values.back()}, {"n", values.size()}};
}

std::vector<Credentials> load_tokens(const std::string& file) {
  std::vector<Credentials> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto doc = nlohmann::json::parse(line, nullptr, false);
    if (!doc.is_object() || !doc.contains("device_token")) continue;
    out.push_back({doc.value("device_id", std::string()), doc.value("device_token", std::string()),
                   doc.value("transport_url", std::string()), doc.value("heartbeat_s", 0)});
  }
  return out;
}

void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) log::warn("cannot raise RLIMIT_NOFILE");
  }
}

}  // namespace

double process_tree_cpu_ms(pid_t root) {
  return tree_cpu_ms(root);
}

nlohmann::json run(const Options& options) {
  raise_fd_limit();
  Shared shared;
  shared.options = &options;
  shared.host = host_identity();
  shared.inventory = collect_inventory();
  {
    std::random_device rd;
    char id[9];
    std::snprintf(id, sizeof id, "%08x", rd());
    shared.run_id = id;
  }
  int agents = options.agents;
  if (!options.tokens_file.empty()) {
    shared.credentials = load_tokens(options.tokens_file);
    if (agents <= 0 || agents > static_cast<int>(shared.credentials.size())) {
      agents = static_cast<int>(shared.credentials.size());
    }
    shared.credentials.resize(static_cast<std::size_t>(agents));
  } else {
    shared.credentials.resize(static_cast<std::size_t>(agents));
  }
  if (agents <= 0) return {{"error", "no agents to simulate (empty --tokens file or --agents 0)"}};
  auto ssl = detail::make_client_context(options.trust);
  if (!ssl) return {{"error", ssl.error().message}};
  shared.ssl = ssl.value();

  const int threads = std::max(1, options.threads);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<ThreadStats> stats(static_cast<std::size_t>(threads));
  using Guard = asio::executor_work_guard<asio::io_context::executor_type>;
  std::vector<Guard> guards;
  for (int t = 0; t < threads; ++t) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    guards.emplace_back(contexts.back()->get_executor());
  }
  const HubSample at_start = sample_hub(options.hub_pid);
  shared.start = Clock::now();
  for (int i = 0; i < agents; ++i) {
    auto& ioc = *contexts[static_cast<std::size_t>(i % threads)];
    auto agent = std::make_shared<SimAgent>(shared, stats[static_cast<std::size_t>(i % threads)], i,
                                            ioc.get_executor());
    asio::co_spawn(
        ioc,
        [agent]() -> asio::awaitable<void> {
          try {
            co_await agent->run();
          } catch (const std::exception& e) {
            log::error("simulated agent failed", {{"error", e.what()}});
          }
        },
        asio::detached);
  }
  std::vector<std::thread> workers;
  for (auto& ioc : contexts)
    workers.emplace_back([&ioc] { ioc->run(); });

  const double connect_timeout =
      options.connect_timeout_s > 0
          ? options.connect_timeout_s
          : 60.0 + (options.rate > 0 ? agents / options.rate : agents / 200.0);
  while (shared.connected + shared.failed < agents &&
         ms_between(shared.start, Clock::now()) < connect_timeout * 1000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (!options.json_only) {
      std::fprintf(stderr, "\rconnecting: %d/%d connected, %d failed, %.1f s   ",
                   shared.connected.load(), agents, shared.failed.load(),
                   ms_between(shared.start, Clock::now()) / 1000);
    }
  }
  const auto connect_done = Clock::now();
  const double connect_s = ms_between(shared.start, connect_done) / 1000;
  if (!options.json_only) std::fprintf(stderr, "\n");
  const HubSample after_connect = sample_hub(options.hub_pid);
  const std::uint64_t acked_before = shared.hb_acked.load();
  if (!options.json_only) {
    std::fprintf(stderr, "steady phase: %.0f s with %d agents\n", options.duration_s,
                 shared.connected.load());
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(options.duration_s));
  const HubSample after_steady = sample_hub(options.hub_pid);
  const std::uint64_t acked_steady = shared.hb_acked.load() - acked_before;
  shared.stopping = true;
  guards.clear();
  for (auto& ioc : contexts)
    ioc->stop();
  for (auto& w : workers)
    w.join();

  if (!options.save_tokens.empty()) {
    std::string lines;
    for (const auto& c : shared.credentials) {
      if (c.device_token.empty()) continue;
      lines += log::dump({{"device_id", c.device_id},
                          {"device_token", c.device_token},
                          {"transport_url", c.transport_url},
                          {"heartbeat_s", c.heartbeat_s}}) +
               "\n";
    }
    if (auto saved = write_file_atomic(options.save_tokens, lines, 0600); !saved) {
      log::error("cannot save tokens", {{"error", saved.error().message}});
    }
  }

  ThreadStats all;
  for (auto& s : stats) {
    all.hb_rtt_ms.insert(all.hb_rtt_ms.end(), s.hb_rtt_ms.begin(), s.hb_rtt_ms.end());
    all.ack_ms.insert(all.ack_ms.end(), s.ack_ms.begin(), s.ack_ms.end());
    all.result_ms.insert(all.result_ms.end(), s.result_ms.begin(), s.result_ms.end());
    for (const auto& [k, v] : s.errors)
      all.errors[k] += v;
    all.hb_sent += s.hb_sent;
    all.commands += s.commands;
  }
  const int connected = shared.connected.load();
  nlohmann::json summary = {{"agents", agents},
                            {"connected", connected},
                            {"failed", shared.failed.load()},
                            {"threads", threads},
                            {"connect_s", connect_s},
                            {"connect_rate_per_s", connect_s > 0 ? connected / connect_s : 0.0},
                            {"steady_s", options.duration_s},
                            {"heartbeats", {{"sent", all.hb_sent}, {"acked_steady", acked_steady}}},
                            {"hb_rtt_ms", percentiles(all.hb_rtt_ms)},
                            {"commands",
                             {{"received", all.commands},
                              {"ack_ms", percentiles(all.ack_ms)},
                              {"result_ms", percentiles(all.result_ms)}}},
                            {"errors", all.errors},
                            {"rss_per_agent_kib", nullptr},
                            {"cpu_per_connection_ms", nullptr},
                            {"cpu_per_heartbeat_us", nullptr}};
  if (options.hub_pid > 0) {
    summary["hub"] = {{"pid", options.hub_pid},
                      {"rss_kib",
                       {{"start", at_start.rss_kib},
                        {"connected", after_connect.rss_kib},
                        {"end", after_steady.rss_kib}}},
                      {"cpu_ms",
                       {{"start", at_start.cpu_ms},
                        {"connected", after_connect.cpu_ms},
                        {"end", after_steady.cpu_ms}}},
                      {"tree_cpu_ms",
                       {{"start", at_start.tree_cpu_ms},
                        {"connected", after_connect.tree_cpu_ms},
                        {"end", after_steady.tree_cpu_ms}}}};
    if (connected > 0 && at_start.rss_kib >= 0 && after_connect.rss_kib >= 0) {
      summary["rss_per_agent_kib"] =
          static_cast<double>(after_connect.rss_kib - at_start.rss_kib) / connected;
      summary["cpu_per_connection_ms"] = (after_connect.cpu_ms - at_start.cpu_ms) / connected;
      summary["tree_cpu_per_connection_ms"] =
          (after_connect.tree_cpu_ms - at_start.tree_cpu_ms) / connected;
    }
    if (acked_steady > 0 && after_steady.cpu_ms >= 0) {
      summary["cpu_per_heartbeat_us"] =
          (after_steady.cpu_ms - after_connect.cpu_ms) * 1000.0 / static_cast<double>(acked_steady);
      summary["tree_cpu_per_heartbeat_us"] =
          (after_steady.tree_cpu_ms - after_connect.tree_cpu_ms) * 1000.0 /
          static_cast<double>(acked_steady);
    }
  }
  return summary;
}

}  // namespace helm::agent::loadgen
