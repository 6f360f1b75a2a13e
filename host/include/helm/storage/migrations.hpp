/// @brief Numbered SQL migrations built into the binary, applied once each under an advisory lock.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "helm/core/expected.hpp"

namespace pqxx {
class connection_base;  // libpqxx 6 (Debian 12): the base of every connection type
}

namespace helm::storage {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

/// The migrations compiled into this binary, in version order (generated from host/migrations/).
const std::vector<Migration>& builtin_migrations();

struct MigrationReport {
  int schema_version = 0;    ///< after applying
  std::vector<int> applied;  ///< versions this call applied
};

/// Applies every migration in `migrations` that the database lacks, in one transaction holding
/// a transaction-scoped advisory lock, so hubs starting at once apply each migration once.
/// Refuses a database whose schema is newer than the newest migration known here.
Expected<MigrationReport> apply_migrations(pqxx::connection_base& conn,
                                           const std::vector<Migration>& migrations);

}  // namespace helm::storage
