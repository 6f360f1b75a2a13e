// Cost of one secret release through SecretService against a real (embedded) PostgreSQL: the
// session check (cached), the grant + secret + data-key query, decryption and the audit append,
// all in one transaction; with and without the cache of unwrapped data keys.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <pqxx/pqxx>

#include "bench_database.hpp"
#include "helm/auth/auth_service.hpp"
#include "helm/auth/credentials.hpp"
#include "helm/log/logger.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/storage/db_pool.hpp"

namespace {

using helm::secrets::ReleaseResult;

struct Fixture {
  helm::bench::BenchDatabase db{"helm-bench-release"};
  std::unique_ptr<helm::storage::DbPool> pool;
  std::unique_ptr<helm::auth::AuthService> auth;
  std::unique_ptr<helm::secrets::SecretService> cached;
  std::unique_ptr<helm::secrets::SecretService> uncached;
  helm::auth::SessionContext session;

  Fixture() {
    helm::log::set_level(helm::log::Level::kWarn);  // one info line per release otherwise
    const std::string org = db.org_id();
    const std::string token = db.session_token();
    pqxx::connection conn(db.conninfo());
    {
      pqxx::work tx(conn);
      tx.exec_params(
          "INSERT INTO plugin_secret_grants (org_id, plugin, secret_name)"
          " VALUES ($1, 'halopsa', 'halopsa/client_secret')",
          org);
      tx.commit();
    }
    pool = std::make_unique<helm::storage::DbPool>(
        helm::storage::DbPoolOptions{.conninfo = db.conninfo(), .size = 2});
    auth = std::make_unique<helm::auth::AuthService>(
        *pool, helm::auth::AuthOptions{.cache_ttl = std::chrono::hours(1)});
    auto ring = helm::secrets::MasterKeyring::of(helm::vault::MasterKey::generate());
    cached = std::make_unique<helm::secrets::SecretService>(*pool, *auth, ring,
                                                            helm::secrets::SecretServiceOptions{});
    uncached = std::make_unique<helm::secrets::SecretService>(
        *pool, *auth, ring, helm::secrets::SecretServiceOptions{.cache_data_keys = false});
    std::promise<helm::auth::AuthResult> authed;
    auth->authenticate(token, [&](helm::auth::AuthResult r) { authed.set_value(std::move(r)); });
    session = std::get<helm::auth::SessionContext>(authed.get_future().get());
    pqxx::work tx(conn);
    const std::string value = "a vendor client secret of ordinary length 0123456789";
    auto stored = cached->put(tx, session, org, "halopsa/client_secret",
                              {reinterpret_cast<const std::uint8_t*>(value.data()), value.size()});
    if (!stored) throw std::runtime_error(stored.error().message);
    tx.commit();
  }
  ~Fixture() {
    cached.reset();
    uncached.reset();
    auth.reset();
    pool.reset();
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void release_once(helm::secrets::SecretService& service, benchmark::State& state) {
  auto& f = fixture();
  std::promise<bool> done;
  service.release(f.session, "halopsa", {"halopsa/**"}, f.session.org_id, "halopsa/client_secret",
                  [&](ReleaseResult r) { done.set_value(r.ok()); });
  if (!done.get_future().get()) state.SkipWithError("release refused");
}

void BM_ReleaseCachedDataKey(benchmark::State& state) {
  fixture();  // start PostgreSQL outside the timing
  for (auto _ : state)
    release_once(*fixture().cached, state);
}
BENCHMARK(BM_ReleaseCachedDataKey)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_ReleaseUnwrappingDataKey(benchmark::State& state) {
  fixture();
  for (auto _ : state)
    release_once(*fixture().uncached, state);
}
BENCHMARK(BM_ReleaseUnwrappingDataKey)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
