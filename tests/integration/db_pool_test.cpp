// The database pool against a real PostgreSQL that stops and starts under it.
#include "helm/storage/db_pool.hpp"

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"
#include "test_support.hpp"

namespace helm::test {
namespace {

std::unique_ptr<storage::EmbeddedPostgres> start_server(const std::string& dir) {
  auto pg = storage::EmbeddedPostgres::start({.data_dir = dir, .supervise = false});
  EXPECT_TRUE(pg.ok()) << (pg.ok() ? "" : pg.error().message);
  return pg.ok() ? std::move(pg).value() : nullptr;
}

std::optional<storage::DbError> select_one(storage::DbPool& pool) {
  return pool.run([](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
  });
}

TEST(DbPool, FirstRequestAfterADatabaseRestartSucceeds) {
  TempDir dir("helm-pool");
  auto server = start_server(dir.path());
  ASSERT_TRUE(server);
  storage::DbPool pool({.conninfo = server->connection_string(), .size = 2});
  EXPECT_FALSE(select_one(pool));
  EXPECT_FALSE(select_one(pool));

  server->stop();
  server.reset();
  const auto down = select_one(pool);
  ASSERT_TRUE(down);
  EXPECT_EQ(down->kind, storage::DbErrorKind::kUnavailable);

  server = start_server(dir.path());
  ASSERT_TRUE(server);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // past the fail-fast window
  for (int i = 0; i < 4; ++i) {
    const auto err = select_one(pool);
    EXPECT_FALSE(err) << "attempt " << i << ": " << (err ? err->message : "");
  }
  EXPECT_EQ(pool.stats().failed_unavailable, 1u);
}

TEST(DbPool, QueryErrorsAreReportedAsQueryErrorsAndKeepTheConnection) {
  TempDir dir("helm-pool");
  auto server = start_server(dir.path());
  ASSERT_TRUE(server);
  storage::DbPool pool({.conninfo = server->connection_string(), .size = 1});
  const auto err = pool.run([](pqxx::connection_base& c) {
    pqxx::work tx(c);
    tx.exec("SELECT * FROM no_such_table");
  });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, storage::DbErrorKind::kQuery);
  EXPECT_FALSE(select_one(pool));
  EXPECT_EQ(pool.stats().connected, 1u);
}

TEST(DbPool, StoppedPoolRefusesNewWork) {
  TempDir dir("helm-pool");
  auto server = start_server(dir.path());
  ASSERT_TRUE(server);
  storage::DbPool pool({.conninfo = server->connection_string(), .size = 1});
  pool.stop();
  const auto err = select_one(pool);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, storage::DbErrorKind::kUnavailable);
}

TEST(Migrations, AreAppliedOnceAndRecorded) {
  TempDir dir("helm-mig");
  auto server = start_server(dir.path());
  ASSERT_TRUE(server);
  pqxx::connection conn(server->connection_string());
  auto first = storage::apply_migrations(conn, storage::builtin_migrations());
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->applied.size(), storage::builtin_migrations().size());
  auto second = storage::apply_migrations(conn, storage::builtin_migrations());
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->applied.empty());
  EXPECT_EQ(second->schema_version, storage::builtin_migrations().back().version);
}

TEST(Migrations, AFailingMigrationLeavesNothingBehind) {
  TempDir dir("helm-mig");
  auto server = start_server(dir.path());
  ASSERT_TRUE(server);
  pqxx::connection conn(server->connection_string());
  std::vector<storage::Migration> broken = {
      {1, "good", "CREATE TABLE t_good (id int)"},
      {2, "bad", "CREATE TABLE t_bad (id int); SELECT no_such_function()"}};
  auto result = storage::apply_migrations(conn, broken);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("migration 2 (bad) failed"), std::string::npos);
  pqxx::work tx(conn);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't_%'")[0].as<int>(), 0);
}

}  // namespace
}  // namespace helm::test
