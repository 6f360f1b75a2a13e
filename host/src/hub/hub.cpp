#include "helm/hub/hub.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "helm/agents/agent_routes.hpp"
#include "helm/agents/agent_service.hpp"
#include "helm/api/openapi.hpp"
#include "helm/auth/auth_service.hpp"
#include "helm/auth/session_events.hpp"
#include "helm/broker/event_bus.hpp"
#include "helm/broker/http_broker.hpp"
#include "helm/broker/plugin_kv_store.hpp"
#include "helm/broker/timer_service.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/http/problem.hpp"
#include "helm/http/router.hpp"
#include "helm/http/server.hpp"
#include "helm/http/tls_files.hpp"
#include "helm/hub/build_info.hpp"
#include "helm/hub/data_dir.hpp"
#include "helm/log/logger.hpp"
#include "helm/metrics/registry.hpp"
#include "helm/plugins/plugin_manager.hpp"
#include "helm/plugins/plugin_routes.hpp"
#include "helm/secrets/master_keyring.hpp"
#include "helm/secrets/secret_routes.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"

namespace helm::hub {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int fail(const std::string& message) {
  log::error("helm-hub cannot start", {{"error", message}});
  return 1;
}

Expected<storage::MigrationReport> migrate(const std::string& conninfo) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    try {
      pqxx::connection conn(conninfo);
      return storage::apply_migrations(conn, storage::builtin_migrations());
    } catch (const pqxx::broken_connection& e) {
      if (std::chrono::steady_clock::now() > deadline) {
        return Error{std::string("cannot connect to the database: ") + e.what()};
      }
      log::warn("database not reachable yet; retrying", {{"error", e.what()}});
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace

void add_health_routes(http::Router& router, storage::DbPool& pool, metrics::Registry& registry,
                       bool metrics_allow_remote) {
  router.add("GET", "/healthz", [](http::Request&, http::Responder respond) {
    respond(http::Response::json(200, json{{"status", "ok"}}.dump()));
  });
  router.add("GET", "/readyz", [&pool](http::Request&, http::Responder respond) {
    pool.submit(
        [](pqxx::connection_base& c) {
          pqxx::nontransaction tx(c);
          tx.exec("SELECT 1");
        },
        [respond](std::optional<storage::DbError> err) {
          if (err) {
            log::warn("readiness check failed", {{"error", err->message}});
            auto r = http::problem(503, "not-ready", "Service Unavailable",
                                   "The database is unreachable.");
            r.headers.emplace_back("Retry-After", "1");
            return respond(std::move(r));
          }
          respond(http::Response::json(200, json{{"status", "ready"}}.dump()));
        });
  });
  const bool allow_remote = metrics_allow_remote;
  router.add(
      "GET", "/metrics", [&registry, allow_remote](http::Request& req, http::Responder respond) {
        if (!req.remote_is_loopback && !allow_remote) {
          return respond(
              http::problem(403, "forbidden", "Forbidden",
                            "Metrics are served to loopback only; set api.metrics_allow_remote."));
        }
        respond(http::Response::text(200, registry.render(),
                                     "text/plain; version=0.0.4; charset=utf-8"));
      });
}

namespace {

void add_collectors(metrics::Registry& registry, storage::DbPool& pool, http::Server& server) {
  registry.add_collector([](std::string& out) {
    out += "# HELP helm_build_info Build of this hub.\n# TYPE helm_build_info gauge\n";
    out += std::string("helm_build_info{version=\"") + kVersion + "\",commit=\"" + kGitCommit +
           "\"} 1\n";
  });
  registry.add_collector([&pool](std::string& out) {
    const auto s = pool.stats();
    out +=
        "# HELP helm_db_pool_connections Database pool connections by state.\n"
        "# TYPE helm_db_pool_connections gauge\n";
    out += "helm_db_pool_connections{state=\"size\"} " + std::to_string(s.size) + "\n";
    out += "helm_db_pool_connections{state=\"connected\"} " + std::to_string(s.connected) + "\n";
    out += "helm_db_pool_connections{state=\"busy\"} " + std::to_string(s.busy) + "\n";
    out +=
        "# HELP helm_db_pool_queue_depth Jobs waiting for a connection.\n"
        "# TYPE helm_db_pool_queue_depth gauge\n";
    out += "helm_db_pool_queue_depth " + std::to_string(s.queued) + "\n";
    out +=
        "# HELP helm_db_pool_jobs_total Jobs finished, by outcome.\n"
        "# TYPE helm_db_pool_jobs_total counter\n";
    out += "helm_db_pool_jobs_total{outcome=\"unavailable\"} " +
           std::to_string(s.failed_unavailable) + "\n";
    out +=
        "helm_db_pool_jobs_total{outcome=\"query_error\"} " + std::to_string(s.failed_query) + "\n";
    out += "helm_db_pool_jobs_total{outcome=\"all\"} " + std::to_string(s.completed) + "\n";
  });
  registry.add_collector([&server](std::string& out) {
    const auto s = server.stats();
    out +=
        "# HELP helm_http_connections_open API connections open now.\n"
        "# TYPE helm_http_connections_open gauge\n";
    out += "helm_http_connections_open " + std::to_string(s.connections_open) + "\n";
    out +=
        "# HELP helm_http_connections_total API connections by outcome.\n"
        "# TYPE helm_http_connections_total counter\n";
    out += "helm_http_connections_total{outcome=\"accepted\"} " +
           std::to_string(s.connections_accepted) + "\n";
    out += "helm_http_connections_total{outcome=\"refused_limit\"} " +
           std::to_string(s.connections_refused) + "\n";
    out += "helm_http_connections_total{outcome=\"tls_failed\"} " +
           std::to_string(s.handshake_failures) + "\n";
    out +=
        "helm_http_connections_total{outcome=\"timed_out\"} " + std::to_string(s.timeouts) + "\n";
  });
}

// This binary's path, for commands the banner suggests.
std::string self_path() {
  std::error_code ec;
  const auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("helm-hub") : p.string();
}

std::string url_host(const std::string& host) {
  if (host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "[::1]";
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

int serve(const config::HubConfig& cfg) {
  if (auto level = log::parse_level(cfg.log_level)) log::set_level(*level);

  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // re-read the vault master key file
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  fs::create_directories(cfg.data_dir, ec);
  if (ec) return fail("cannot create data dir " + cfg.data_dir + ": " + ec.message());
  ::chmod(cfg.data_dir.c_str(), 0711);
  const fs::path data_dir = fs::canonical(cfg.data_dir);
  auto lock_fd = lock_data_dir(data_dir.string());
  if (!lock_fd) return fail(lock_fd.error().message);

  log::info("helm-hub starting",
            {{"version", kVersion}, {"commit", kGitCommit}, {"data_dir", data_dir.string()}});
  if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) {
    ::setenv("PGCONNECT_TIMEOUT", std::to_string(cfg.database.connect_timeout_s).c_str(), 1);
  }

  std::string cert_file = cfg.api.tls_cert_file;
  std::string key_file = cfg.api.tls_key_file;
  if (cert_file.empty()) {
    auto files = http::ensure_development_certificate(data_dir.string());
    if (!files) return fail(files.error().message);
    if (files->generated) {
      log::warn(
          "generated a self-signed development certificate; configure api.tls_cert_file "
          "and api.tls_key_file for production",
          {{"cert_file", files->cert_file}});
    }
    cert_file = files->cert_file;
    key_file = files->key_file;
  }
  auto fingerprint = http::certificate_fingerprint_sha256(cert_file);
  if (!fingerprint) return fail(fingerprint.error().message);

  std::unique_ptr<storage::EmbeddedPostgres> embedded;
  std::string conninfo = cfg.database.url;
  if (conninfo.empty()) {
    auto pg = storage::EmbeddedPostgres::start({.data_dir = data_dir.string()});
    if (!pg) return fail(pg.error().message);
    embedded = std::move(pg).value();
    conninfo = embedded->connection_string();
  }

  auto report = migrate(conninfo);
  if (!report) return fail(report.error().message);
  log::info("database schema ready",
            {{"schema_version", report->schema_version}, {"applied", report->applied}});

  // The vault's master key: loaded before anything serves, refused unless it is the key the
  // database's data keys were wrapped with.
  auto key_source = secrets::resolve_master_key_source(
      cfg, data_dir.string(), std::getenv(std::string(vault::kMasterKeyEnvVar).c_str()) != nullptr);
  if (!key_source) return fail(key_source.error().message);
  auto keyring = secrets::MasterKeyring::load(*key_source, true);
  if (!keyring) return fail("cannot load the vault master key: " + keyring.error().message);
  try {
    pqxx::connection conn(conninfo);
    auto checked = secrets::check_master_key(conn, *(*keyring)->current(), (*keyring)->describe());
    if (!checked) return fail(checked.error().message);
  } catch (const std::exception& e) {
    return fail(std::string("cannot check the vault master key: ") + e.what());
  }
  log::info("vault master key loaded", {{"source", (*keyring)->describe()},
                                        {"check_value", (*keyring)->current()->check_value()}});

  storage::DbPool pool({.conninfo = conninfo, .size = cfg.database.pool_size});
  metrics::Registry registry;
  http::Router router;
  add_health_routes(router, pool, registry, cfg.api.metrics_allow_remote);
  auth::AuthService auth_service(
      pool, {.idle_timeout = std::chrono::seconds(cfg.identity.session_idle_timeout_s),
             .absolute_timeout = std::chrono::seconds(cfg.identity.session_absolute_timeout_s)});
  TaskPool cpu(2);
  api::Services services{pool,
                         auth_service,
                         cpu,
                         {.opslimit = cfg.identity.password_opslimit,
                          .memlimit_bytes = uint64_t{cfg.identity.password_memlimit_kib} * 1024}};
  secrets::SecretService secret_service(
      pool, auth_service, *keyring, {.keep_versions = static_cast<int>(cfg.vault.keep_versions)});
  secrets::SecretServiceBinding secret_binding(services, secret_service);
  api::add_api_routes(router, services);
  // Agents: enrollment, device tokens, devices and the command outbox. The transport plugin
  // reaches the agent service through the plugin manager, and devices through its TransportLink.
  if (cfg.agents.heartbeat_s == 0 || cfg.agents.enroll_rate_per_s <= 0 ||
      cfg.agents.enroll_burst < 1) {
    return fail("agents.heartbeat_s, agents.enroll_rate_per_s and agents.enroll_burst must be > 0");
  }
  agents::AgentService agent_service(pool, {.tls_cert_file = cert_file,
                                            .tls_key_file = key_file,
                                            .heartbeat_s = static_cast<int>(cfg.agents.heartbeat_s),
                                            .enroll_per_s = cfg.agents.enroll_rate_per_s,
                                            .enroll_burst = cfg.agents.enroll_burst});
  if (auto started = agent_service.start(); !started) return fail(started.error().message);
  agents::add_agent_routes(router, services, agent_service);

  // Plugins: loaded and started before the API serves, so the list is complete from the start.
  // A plugin that fails is recorded as failed; the hub serves regardless.
  // Plugin calls, timeouts and lifecycle work run on their own workers, so a slow plugin never
  // holds up logins or REST handlers.
  TaskPool plugin_workers(4);
  // Outbound HTTPS for plugins: one libcurl multi thread; completions run on the plugin workers.
  // Vendor calls may block for as long as a script runs on an endpoint (Tactical RMM's cmd/ and
  // runscript/ wait up to their timeout): allow up to 11 minutes when a plugin asks for it.
  broker::HttpBroker http_broker({.max_timeout = std::chrono::minutes(11),
                                  .proxy = cfg.plugins.http_proxy,
                                  .no_proxy = cfg.plugins.no_proxy,
                                  .dispatch = [&plugin_workers](std::function<void()> task) {
                                    plugin_workers.post(std::move(task));
                                  }});
  plugins::PluginManagerOptions plugin_options{
      .search_path = plugins::plugin_search_path(cfg.plugins.path),
      .trusted_keys_file = cfg.plugins.trusted_keys_file,
      .allow_unsigned = cfg.plugins.allow_unsigned,
      .staging_root = data_dir / "plugin-staging"};
  if (cfg.plugins.trusted_keys_file.empty())
    plugin_options.dev_key_file = plugins::build_tree_dev_key();
  plugin_options.pool = &pool;
  plugin_options.secrets = &secret_service;
  plugin_options.auth = &auth_service;
  plugin_options.transport_host = &agent_service;
  plugin_options.workers = &plugin_workers;
  plugin_options.http = &http_broker;
  auto to_plugin_workers = [&plugin_workers](std::function<void()> task) {
    plugin_workers.post(std::move(task));
  };
  broker::PluginKvStore plugin_kv(pool);
  broker::EventBus event_bus(to_plugin_workers);
  broker::TimerService plugin_timers(to_plugin_workers);
  plugin_options.kv = &plugin_kv;
  plugin_options.events = &event_bus;
  plugin_options.timers = &plugin_timers;
  plugin_options.default_op_timeout = std::chrono::milliseconds(cfg.plugins.op_timeout_ms);
  plugins::PluginManager plugin_manager(std::move(plugin_options));
  agent_service.set_link(&plugin_manager.transport_link());
  plugin_manager.start();
  plugins::PluginManagerBinding plugin_binding(services, plugin_manager);
  // session.started / session.ended for plugins (after they subscribed): the first sweep also
  // ends and announces the sessions that ran out while the hub was down.
  auth::SessionEvents session_events(pool, event_bus,
                                     {.idle_timeout = auth_service.options().idle_timeout});
  session_events.start();

  http::Server server({cfg.api, cert_file, key_file}, router, registry);
  add_collectors(registry, pool, server);
  auto port = server.start();
  if (!port) return fail(port.error().message);

  const std::string url = "https://" + url_host(cfg.api.listen.host) + ":" + std::to_string(*port);
  log::info("api listening", {{"url", url},
                              {"host", cfg.api.listen.host},
                              {"port", *port},
                              {"cert_file", cert_file},
                              {"cert_sha256", *fingerprint},
                              {"database", embedded ? "embedded" : "external"}});
  std::cout << "\nhelm-hub " << kVersion << " is ready\n"
            << "  API          " << url << "/\n"
            << "  certificate  " << cert_file << "\n"
            << "  SHA-256      " << *fingerprint << "\n"
            << "  data dir     " << data_dir.string()
            << (embedded ? "  (embedded PostgreSQL)" : "  (external PostgreSQL)") << "\n\n"
            << "Next:\n"
            << "  curl --cacert " << cert_file << " " << url << "/readyz\n"
            << "  # first organization and owner (once; works while the hub runs):\n"
            << "  echo 'a long password' | " << self_path() << " admin bootstrap --data-dir "
            << data_dir.string() << " --org 'My MSP' --email owner@example.com --password-stdin\n"
            << "  curl --cacert " << cert_file << " " << url
            << "/api/v1/auth/login -d '{\"email\":\"owner@example.com\",\"password\":\"a long "
               "password\"}'\n"
            << "  API reference: " << url << "/api/v1/openapi.json\n"
            << "Stop with Ctrl-C (or SIGTERM): connections drain, then the database stops.\n"
            << std::endl;

  int signal_number = 0;
  while (sigwait(&stop_signals, &signal_number) == 0 && signal_number == SIGHUP) {
    if (auto st = (*keyring)->reload(); !st) {
      log::warn("SIGHUP: vault master key not re-read", {{"error", st.error().message}});
    } else {
      log::info("SIGHUP: vault master key re-read",
                {{"check_value", (*keyring)->current()->check_value()}});
    }
  }
  log::info("stopping: draining connections",
            {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"},
             {"grace_ms", cfg.shutdown_grace_ms}});
  server.begin_drain();
  if (!server.wait_drained(std::chrono::milliseconds(cfg.shutdown_grace_ms))) {
    log::warn("grace period over; closing the remaining connections");
  }
  server.stop();
  log::info("stopping plugins");
  session_events.stop();
  plugin_manager.shutdown();
  agent_service.stop();  // after the transport, before the pool its queued work runs on
  http_broker.shutdown();
  plugin_timers.shutdown();
  plugin_workers.stop();
  cpu.stop();
  pool.stop();
  if (embedded) embedded->stop();
  ::close(*lock_fd);
  log::info("helm-hub stopped");
  return 0;
}

}  // namespace helm::hub
