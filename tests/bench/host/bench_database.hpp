/// @brief What the host benchmarks share: a private embedded PostgreSQL with the hub's schema,
/// one organization, one technician and one live session whose token the benchmark uses.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>

#include "helm/auth/credentials.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"

namespace helm::bench {

class BenchDatabase {
 public:
  explicit BenchDatabase(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    auto started = storage::EmbeddedPostgres::start({.data_dir = dir_, .supervise = false});
    if (!started) throw std::runtime_error(started.error().message);
    pg_ = std::move(started).value();
    pqxx::connection conn(pg_->connection_string());
    if (!storage::apply_migrations(conn, storage::builtin_migrations())) {
      throw std::runtime_error("migrations failed");
    }
    token_ = auth::new_token(auth::kSessionTokenPrefix);
    pqxx::work tx(conn);
    org_ = tx.exec1("INSERT INTO organizations (name) VALUES ('bench') RETURNING id")[0]
               .as<std::string>();
    const auto tech = tx.exec_params1(
                            "INSERT INTO technicians (org_id, email, role, password_hash)"
                            " VALUES ($1, 'b@b.test', 'technician', 'x') RETURNING id",
                            org_)[0]
                          .as<std::string>();
    tx.exec_params(
        "INSERT INTO sessions (token_hash, org_id, technician_id, absolute_expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 day')",
        pqxx::binarystring(auth::token_hash(token_)), org_, tech);
    tx.commit();
  }

  ~BenchDatabase() {
    pg_->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  BenchDatabase(const BenchDatabase&) = delete;
  BenchDatabase& operator=(const BenchDatabase&) = delete;

  std::string conninfo() const { return pg_->connection_string(); }
  const std::string& org_id() const { return org_; }
  const std::string& session_token() const { return token_; }

 private:
  std::string dir_;
  std::unique_ptr<storage::EmbeddedPostgres> pg_;
  std::string org_;
  std::string token_;
};

}  // namespace helm::bench
