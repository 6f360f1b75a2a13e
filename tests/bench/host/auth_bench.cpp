// Cost of authenticating one request: token hash + cache lookup (the common case), and a cache
// miss that goes to PostgreSQL (once per token per second at most).
#include <benchmark/benchmark.h>

#include <future>

#include "bench_database.hpp"
#include "helm/auth/auth_service.hpp"
#include "helm/auth/credentials.hpp"
#include "helm/storage/db_pool.hpp"

namespace {

struct Fixture {
  helm::bench::BenchDatabase db{"helm-bench-auth"};
  std::unique_ptr<helm::storage::DbPool> pool;
  std::unique_ptr<helm::auth::AuthService> auth;
  std::string token = db.session_token();

  Fixture() {
    pool = std::make_unique<helm::storage::DbPool>(
        helm::storage::DbPoolOptions{.conninfo = db.conninfo(), .size = 1});
    // A long cache life so the hit benchmark measures hits only.
    auth = std::make_unique<helm::auth::AuthService>(
        *pool, helm::auth::AuthOptions{.cache_ttl = std::chrono::hours(1)});
  }
  ~Fixture() {
    auth.reset();
    pool.reset();
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
