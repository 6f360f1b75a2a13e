// Cost of authenticating one request: token hash + cache lookup (the common case), and a cache
// miss that goes to PostgreSQL (once per token per second at most).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <pqxx/pqxx>

#include "helm/auth/auth_service.hpp"
#include "helm/auth/credentials.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"

namespace {

struct Fixture {
  std::string dir;
  std::unique_ptr<helm::storage::EmbeddedPostgres> pg;
  std::unique_ptr<helm::storage::DbPool> pool;
  std::unique_ptr<helm::auth::AuthService> auth;
  std::string token;

  Fixture() {
    char tmpl[] = "/tmp/helm-bench-auth-XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto started = helm::storage::EmbeddedPostgres::start({.data_dir = dir, .supervise = false});
    if (!started) throw std::runtime_error(started.error().message);
    pg = std::move(started).value();
    pqxx::connection conn(pg->connection_string());
    if (!helm::storage::apply_migrations(conn, helm::storage::builtin_migrations())) {
      throw std::runtime_error("migrations failed");
    }
    token = helm::auth::new_token(helm::auth::kSessionTokenPrefix);
    pqxx::work tx(conn);
    const auto org = tx.exec1("INSERT INTO organizations (name) VALUES ('bench') RETURNING id")[0]
                         .as<std::string>();
    const auto tech = tx.exec_params1(
                            "INSERT INTO technicians (org_id, email, role, password_hash)"
                            " VALUES ($1, 'b@b.test', 'technician', 'x') RETURNING id",
                            org)[0]
                          .as<std::string>();
    tx.exec_params(
        "INSERT INTO sessions (token_hash, org_id, technician_id, absolute_expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 day')",
        pqxx::binarystring(helm::auth::token_hash(token)), org, tech);
    tx.commit();
    pool = std::make_unique<helm::storage::DbPool>(
        helm::storage::DbPoolOptions{.conninfo = pg->connection_string(), .size = 1});
    // A long cache life so the hit benchmark measures hits only.
    auth = std::make_unique<helm::auth::AuthService>(
        *pool, helm::auth::AuthOptions{.cache_ttl = std::chrono::hours(1)});
  }
  ~Fixture() {
    auth.reset();
    pool.reset();
    pg->stop();
    std::filesystem::remove_all(dir);
  }
  bool authenticate() {
    std::promise<bool> done;
    auth->authenticate(token, [&](helm::auth::AuthResult r) {
      done.set_value(std::holds_alternative<helm::auth::SessionContext>(r));
    });
    return done.get_future().get();
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_TokenHash(benchmark::State& state) {
  const auto token = helm::auth::new_token(helm::auth::kSessionTokenPrefix);
  for (auto _ : state)
    benchmark::DoNotOptimize(helm::auth::token_hash(token));
}
BENCHMARK(BM_TokenHash);

void BM_AuthenticateCacheHit(benchmark::State& state) {
  auto& f = fixture();
  if (!f.authenticate()) state.SkipWithError("the session did not authenticate");
  for (auto _ : state) {
    bool ok = false;
    f.auth->authenticate(f.token, [&](helm::auth::AuthResult r) {
      ok = std::holds_alternative<helm::auth::SessionContext>(r);
    });
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_AuthenticateCacheHit);

void BM_AuthenticateCacheMissPostgres(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    f.auth->invalidate_cache();
    if (!f.authenticate()) state.SkipWithError("the session did not authenticate");
  }
}
BENCHMARK(BM_AuthenticateCacheMissPostgres)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
