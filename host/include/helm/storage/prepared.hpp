/// @brief Running a statement prepared once per database connection.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <utility>

namespace helm::storage {

/// Runs `sql` as the statement `name`, prepared on the database connection the first time it is
/// used there (and again after a reconnect; pqxx keeps the definitions): the server parses and
/// plans a hot statement once per pool connection instead of once per call. Include only from
/// the .cpp files that run such statements: it brings in all of pqxx.
template <typename... Args>
pqxx::result exec_prepared(pqxx::transaction_base& tx, const std::string& name,
                           const std::string& sql, Args&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

}  // namespace helm::storage
