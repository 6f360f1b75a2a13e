// The real helm-hub binary on a real PostgreSQL, driven over real TLS sockets.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <signal.h>

#include <pqxx/pqxx>
#include <thread>

#include "helm/storage/embedded_postgres.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

using namespace std::chrono_literals;

HttpRequestOptions with_ca(const HubProcess& hub) {
  HttpRequestOptions o;
  o.ca_file = hub.ca_file();
  return o;
}

long get_status(const HubProcess& hub, const std::string& path) {
  return https(hub.base_url() + path, with_ca(hub)).status;
}

bool wait_status(const HubProcess& hub, const std::string& path, long want,
                 std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (get_status(hub, path) == want) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// A PostgreSQL server of the test's own, for hubs started with --database-url.
struct ExternalDatabase {
  TempDir dir{"helm-extdb"};
  std::unique_ptr<storage::EmbeddedPostgres> server;
  void start() {
    auto pg = storage::EmbeddedPostgres::start({.data_dir = dir.path(), .supervise = false});
    ASSERT_TRUE(pg.ok()) << pg.error().message;
    server = std::move(pg).value();
  }
  std::string url() const { return "postgresql:///helm?host=" + dir.path() + "/run&user=helm"; }
};

TEST(HubServe, HealthzAnswersOverTls13WithTheDevelopmentCertificate) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  const auto r = https(hub.base_url() + "/healthz", with_ca(hub));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.tls_version, TLS1_3_VERSION);
  EXPECT_EQ(r.body, R"({"status":"ok"})");
  EXPECT_NE(hub.output().find("SHA-256"), std::string::npos) << "banner shows the fingerprint";
  EXPECT_NE(hub.log().find("\"cert_sha256\""), std::string::npos);
  EXPECT_EQ(hub.stop(SIGTERM), 0);
}

TEST(HubServe, Tls12ClientIsRefused) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  auto options = with_ca(hub);
  options.tls12_only = true;
  const auto r = https(hub.base_url() + "/healthz", options);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(get_status(hub, "/healthz"), 200) << "a refused client does not hurt the next one";
}

TEST(HubServe, ReadyzIs503WhileDatabaseIsDownAnd200WhenItIsBack) {
  ExternalDatabase db;
  ASSERT_NO_FATAL_FAILURE(db.start());
  TempDir dir;
  HubProcess hub({.data_dir = dir.path(), .extra_args = {"--database-url", db.url()}});
  ASSERT_TRUE(hub.ready()) << hub.log();
  EXPECT_EQ(get_status(hub, "/readyz"), 200);

  db.server->stop();
  const auto down = https(hub.base_url() + "/readyz", with_ca(hub));
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.headers.at("content-type"), "application/problem+json");
  EXPECT_EQ(get_status(hub, "/healthz"), 200) << "the process still serves";

  db.server.reset();
  ASSERT_NO_FATAL_FAILURE(db.start());
  EXPECT_TRUE(wait_status(hub, "/readyz", 200, 10s)) << hub.log();
}

TEST(HubServe, EmbeddedDatabaseRestartsAfterItDiesAndTheHubRecovers) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  const pid_t pg = storage::EmbeddedPostgres::running_server_pid(dir.path());
  ASSERT_GT(pg, 0);
  ::kill(pg, SIGKILL);
  EXPECT_TRUE(hub.wait_for_log("exited unexpectedly", 10s));
  EXPECT_TRUE(wait_status(hub, "/readyz", 200, 30s)) << hub.log();
}

TEST(HubServe, MigrationsApplyOnceWhenTwoHubsStartAtOnce) {
  ExternalDatabase db;
  ASSERT_NO_FATAL_FAILURE(db.start());
  TempDir dir_a;
  TempDir dir_b;
  std::optional<HubProcess> a;
  std::optional<HubProcess> b;
  std::thread ta([&] {
    a.emplace(HubOptions{.data_dir = dir_a.path(), .extra_args = {"--database-url", db.url()}});
  });
  std::thread tb([&] {
    b.emplace(HubOptions{.data_dir = dir_b.path(), .extra_args = {"--database-url", db.url()}});
  });
  ta.join();
  tb.join();
  ASSERT_TRUE(a->ready()) << a->log();
  ASSERT_TRUE(b->ready()) << b->log();

  pqxx::connection conn(db.server->connection_string());
  pqxx::work tx(conn);
  const auto rows = tx.exec("SELECT version, count(*) FROM schema_migrations GROUP BY version");
  ASSERT_GT(rows.size(), 0u);
  for (const auto& row : rows)
    EXPECT_EQ(row[1].as<int>(), 1) << "version " << row[0].c_str();
  const auto tables = tx.exec1("SELECT count(*) FROM pg_tables WHERE tablename = 'hub_meta'");
  EXPECT_EQ(tables[0].as<int>(), 1);
  tx.commit();

  // A third start applies nothing.
  a->stop();
  HubProcess again({.data_dir = dir_a.path(), .extra_args = {"--database-url", db.url()}});
  ASSERT_TRUE(again.ready()) << again.log();
  EXPECT_NE(again.log().find("\"applied\":[]"), std::string::npos);
}

TEST(HubServe, RefusesASchemaNewerThanItKnows) {
  ExternalDatabase db;
  ASSERT_NO_FATAL_FAILURE(db.start());
  {
    TempDir dir;
    HubProcess hub({.data_dir = dir.path(), .extra_args = {"--database-url", db.url()}});
    ASSERT_TRUE(hub.ready()) << hub.log();
  }
  {
    pqxx::connection conn(db.server->connection_string());
    pqxx::work tx(conn);
    tx.exec("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')");
    tx.commit();
  }
  TempDir dir;
  HubProcess hub({.data_dir = dir.path(), .extra_args = {"--database-url", db.url()}});
  EXPECT_FALSE(hub.ready());
  EXPECT_EQ(hub.wait_exit(30s), 1);
  EXPECT_NE(hub.log().find("newer than this helm-hub knows"), std::string::npos) << hub.log();
}

TEST(HubServe, RestartsCleanlyAfterKill9) {
  TempDir dir;
  {
    HubProcess hub({.data_dir = dir.path()});
    ASSERT_TRUE(hub.ready()) << hub.log();
    EXPECT_EQ(hub.stop(SIGKILL), 128 + SIGKILL);
  }
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  EXPECT_EQ(get_status(hub, "/readyz"), 200);
  EXPECT_EQ(hub.stop(SIGTERM), 0);
  EXPECT_EQ(storage::EmbeddedPostgres::running_server_pid(dir.path()), 0)
      << "a clean stop stops the embedded PostgreSQL too";
}

TEST(HubServe, SecondHubOnTheSameDataDirIsRefused) {
  TempDir dir;
  HubProcess first({.data_dir = dir.path()});
  ASSERT_TRUE(first.ready()) << first.log();
  HubProcess second({.data_dir = dir.path()});
  EXPECT_EQ(second.wait_exit(30s), 1);
  EXPECT_NE(second.log().find("already running"), std::string::npos);
  EXPECT_EQ(get_status(first, "/healthz"), 200);
}

TEST(HubServe, UnknownConfigKeyIsRejectedByName) {
  TempDir dir;
  write_file(dir.file("hub.json"), R"({"api": {"lisen": "127.0.0.1:1"}})");
  HubProcess hub({.data_dir = dir.path(),
                  .extra_args = {"--config", dir.file("hub.json")},
                  .wait_ready = false});
  EXPECT_EQ(hub.wait_exit(30s), 2);
  EXPECT_NE(hub.log().find("unknown configuration key 'api.lisen'"), std::string::npos)
      << hub.log();
}

TEST(HubServe, OversizedBodyGets413AndTheConnectionStaysUsableForOthers) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path(), .env = {{"HELM_API_MAX_BODY_BYTES", "4096"}}});
  ASSERT_TRUE(hub.ready()) << hub.log();
  auto options = with_ca(hub);
  options.method = "POST";
  options.body = std::string(8192, 'x');
  const auto r = https(hub.base_url() + "/healthz", options);
  EXPECT_EQ(r.status, 413) << r.error;
  EXPECT_EQ(r.headers.at("content-type"), "application/problem+json");
  EXPECT_NE(r.body.find("4096"), std::string::npos);

  // A client that streams a body without announcing its length still gets 413.
  RawTlsClient raw("127.0.0.1", hub.port());
  ASSERT_TRUE(raw.connected());
  raw.send("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  raw.send("2000\r\n" + std::string(0x2000, 'y') + "\r\n");
  const auto answer = raw.read_some(3s);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_EQ(get_status(hub, "/healthz"), 200);
}

TEST(HubServe, SlowHeaderClientIsCutOffWhileANormalClientIsServed) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path(), .env = {{"HELM_API_HEADER_TIMEOUT_MS", "1000"}}});
  ASSERT_TRUE(hub.ready()) << hub.log();
  RawTlsClient slow("127.0.0.1", hub.port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send("GET /healthz HTTP/1.1\r\n"));
  const auto started = std::chrono::steady_clock::now();
  bool closed = false;
  std::thread trickle([&] {
    const std::string rest = "Host: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for (char c : rest) {
      if (!slow.send(std::string(1, c))) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  // Meanwhile a normal client is served at once.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(get_status(hub, "/healthz"), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);

  const auto got = slow.read_some(5s, &closed);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(closed) << "the trickling client was not cut off";
  EXPECT_EQ(got.find("200 OK"), std::string::npos) << "it must not be served";
  EXPECT_LT(elapsed, 4s);
  trickle.join();
}

TEST(HubServe, MetricsCountRequestsByRouteAndShowPoolAndBuild) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  ASSERT_EQ(get_status(hub, "/healthz"), 200);
  ASSERT_EQ(get_status(hub, "/nope"), 404);
  const auto r = https(hub.base_url() + "/metrics", with_ca(hub));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(
      r.body.find(R"(helm_http_requests_total{route="/healthz",method="GET",status="200"} 1)"),
      std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"(status="404")"), std::string::npos);
  EXPECT_NE(r.body.find("helm_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(r.body.find("helm_db_pool_connections"), std::string::npos);
  EXPECT_NE(r.body.find("helm_build_info{version="), std::string::npos);
}

TEST(HubServe, KeepAliveServesManyRequestsOnOneConnection) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  RawTlsClient raw("127.0.0.1", hub.port());
  ASSERT_TRUE(raw.connected());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    const auto got = raw.read_some(2s, nullptr, R"({"status":"ok"})");
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK", 0), 0u) << got;
  }
}

TEST(HubServe, MalformedRequestGetsAProblemNotACrash) {
  TempDir dir;
  HubProcess hub({.data_dir = dir.path()});
  ASSERT_TRUE(hub.ready()) << hub.log();
  RawTlsClient raw("127.0.0.1", hub.port());
  ASSERT_TRUE(raw.connected());
  raw.send("G@T /healthz HTTP/9.9\r\n\r\n");
  const auto got = raw.read_some(2s);
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  EXPECT_NE(got.find("application/problem+json"), std::string::npos);
  EXPECT_EQ(get_status(hub, "/healthz"), 200);
}

}  // namespace
}  // namespace helm::test
