#include "helm/storage/migrations.hpp"

#include <pqxx/pqxx>

namespace helm::storage {
namespace {
// "HELMMIGR" as a 64-bit advisory lock key.
constexpr long long kMigrationLockKey = 0x48454c4d4d494752LL;
}  // namespace

Expected<MigrationReport> apply_migrations(pqxx::connection_base& conn,
                                           const std::vector<Migration>& migrations) {
  MigrationReport report;
  const int newest_known = migrations.empty() ? 0 : migrations.back().version;
  try {
    pqxx::work tx(conn);
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey) + ")");
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    const int current =
        tx.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
    if (current > newest_known) {
      return Error{"the database schema is at version " + std::to_string(current) +
                   ", newer than this helm-hub knows (" + std::to_string(newest_known) +
                   "): upgrade helm-hub, or point it at the database it was made for"};
    }
    for (const auto& m : migrations) {
      if (m.version <= current) continue;
      try {
        tx.exec(std::string(m.sql));
      } catch (const pqxx::sql_error& e) {
        return Error{"migration " + std::to_string(m.version) + " (" + std::string(m.name) +
                     ") failed: " + e.what()};
      }
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     std::string(m.name));
      report.applied.push_back(m.version);
    }
    tx.commit();
    report.schema_version = std::max(current, newest_known);
  } catch (const pqxx::broken_connection& e) {
    return Error{std::string("database connection lost while migrating: ") + e.what()};
  } catch (const pqxx::sql_error& e) {
    return Error{std::string("migrating the database failed: ") + e.what()};
  }
  return report;
}

}  // namespace helm::storage
