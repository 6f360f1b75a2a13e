#include "helm/auth/auth_service.hpp"

#include <algorithm>

#include <pqxx/pqxx>

#include "helm/auth/credentials.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::auth {
namespace {

constexpr size_t kMaxCacheEntries = 200'000;

std::chrono::system_clock::time_point from_epoch(double seconds) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::duration<double>(seconds)));
}

// Looks a technician session up, ending it (with the reason) when it has timed out.
std::optional<SessionContext> load_session(pqxx::work& tx, const std::string& hash,
                                           const AuthOptions& options) {
  const auto rows = tx.exec_params(
      "SELECT s.id, t.id, t.email, t.org_id, t.role, o.is_operator, s.totp_pending,"
      " extract(epoch FROM s.absolute_expires_at)::float8,"
      " extract(epoch FROM now() - s.last_used_at)::float8,"
      " s.ended_at IS NOT NULL, t.disabled, extract(epoch FROM now())::float8"
      " FROM sessions s JOIN technicians t ON t.id = s.technician_id"
      " JOIN organizations o ON o.id = s.org_id WHERE s.token_hash = $1",
      pqxx::binarystring(hash));
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  if (r[9].as<bool>() || r[10].as<bool>()) return std::nullopt;
  const double absolute = r[7].as<double>();
  const double idle = r[8].as<double>();
  const double now = r[11].as<double>();
  const std::string id = r[0].c_str();
  const char* reason = nullptr;
  if (now >= absolute) {
    reason = "absolute_timeout";
  } else if (idle >= static_cast<double>(options.idle_timeout.count())) {
    reason = "idle_timeout";
  }
  if (reason != nullptr) {
    tx.exec_params(
        "UPDATE sessions SET ended_at = now(), end_reason = $2 WHERE id = $1 AND ended_at IS NULL",
        id, std::string(reason));
    return std::nullopt;
  }
  // Record use, but not on every request: idle timeouts are minutes, writes are not free. A
  // short idle timeout (seconds, in tests) is refreshed at a quarter of its length instead.
  const double refresh_after =
      std::min(15.0, static_cast<double>(options.idle_timeout.count()) / 4.0);
  if (idle > refresh_after) {
    tx.exec_params("UPDATE sessions SET last_used_at = now() WHERE id = $1", id);
  }
  SessionContext ctx;
  ctx.session_id = id;
  ctx.kind = PrincipalKind::kTechnician;
  ctx.principal_id = r[1].c_str();
  ctx.email = r[2].c_str();
  ctx.org_id = r[3].c_str();
  ctx.role = parse_role(r[4].c_str()).value_or(Role::kReadonly);
  ctx.org_is_operator = r[5].as<bool>();
  ctx.totp_pending = r[6].as<bool>();
  const double idle_deadline = now - idle + static_cast<double>(options.idle_timeout.count());
  ctx.expires_at = from_epoch(std::min(absolute, idle_deadline));
  return ctx;
}

std::optional<SessionContext> load_service_principal(pqxx::work& tx, const std::string& hash) {
  const auto rows = tx.exec_params(
      "SELECT p.id, p.name, p.org_id, p.role, o.is_operator,"
      " coalesce(extract(epoch FROM p.expires_at)::float8, 0), p.disabled,"
      " p.expires_at IS NOT NULL AND p.expires_at <= now(),"
      " p.last_used_at IS NULL OR p.last_used_at < now() - interval '15 seconds'"
      " FROM service_principals p JOIN organizations o ON o.id = p.org_id"
      " WHERE p.token_hash = $1",
      pqxx::binarystring(hash));
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  if (r[6].as<bool>() || r[7].as<bool>()) return std::nullopt;
  if (r[8].as<bool>()) {
    tx.exec_params("UPDATE service_principals SET last_used_at = now() WHERE id = $1",
                   std::string(r[0].c_str()));
  }
  SessionContext ctx;
  ctx.session_id = r[0].c_str();
  ctx.kind = PrincipalKind::kServicePrincipal;
  ctx.principal_id = r[0].c_str();
  ctx.email = r[1].c_str();
  ctx.org_id = r[2].c_str();
  ctx.role = parse_role(r[3].c_str()).value_or(Role::kReadonly);
  ctx.org_is_operator = r[4].as<bool>();
  const double expires = r[5].as<double>();
  ctx.expires_at = expires > 0 ? from_epoch(expires) : std::chrono::system_clock::time_point::max();
  return ctx;
}

}  // namespace

std::optional<Role> parse_role(std::string_view text) {
  if (text == "owner") return Role::kOwner;
  if (text == "admin") return Role::kAdmin;
  if (text == "technician") return Role::kTechnician;
  if (text == "readonly") return Role::kReadonly;
  return std::nullopt;
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kOwner:
      return "owner";
    case Role::kAdmin:
      return "admin";
    case Role::kTechnician:
      return "technician";
    case Role::kReadonly:
      return "readonly";
  }
  return "readonly";
}

AuthService::AuthService(storage::DbPool& pool, AuthOptions options)
    : pool_(pool), options_(options) {}

void AuthService::invalidate_cache() {
  std::lock_guard lock(mutex_);
  cache_.clear();
  valid_.clear();
}

void AuthService::check_still_valid(const SessionContext& context, std::function<void(bool)> done) {
  if (std::chrono::system_clock::now() >= context.expires_at) return done(false);
  const auto now = std::chrono::steady_clock::now();
  const std::string key =
      (context.kind == PrincipalKind::kTechnician ? "s:" : "p:") + context.session_id;
  {
    std::lock_guard lock(mutex_);
    if (auto it = valid_.find(key); it != valid_.end()) {
      if (now - it->second < options_.cache_ttl) return done(true);
      valid_.erase(it);
    }
  }
  auto valid = std::make_shared<bool>(false);
  const auto idle = options_.idle_timeout.count();
  pool_.submit(
      [valid, context, idle](pqxx::connection_base& c) {
        pqxx::work tx(c);
        if (context.kind == PrincipalKind::kTechnician) {
          *valid = !tx.exec_params(
                          "SELECT 1 FROM sessions s JOIN technicians t"
                          " ON t.id = s.technician_id WHERE s.id = $1"
                          " AND s.ended_at IS NULL AND NOT t.disabled"
                          " AND s.absolute_expires_at > now()"
                          " AND s.last_used_at > now() - $2 * interval '1 second'",
                          context.session_id, idle)
                        .empty();
        } else {
          *valid = !tx.exec_params(
                          "SELECT 1 FROM service_principals WHERE id = $1"
                          " AND NOT disabled AND (expires_at IS NULL OR expires_at > now())",
                          context.session_id)
                        .empty();
        }
      },
      [this, valid, key, now, done = std::move(done)](std::optional<storage::DbError> err) {
        const bool ok = !err && *valid;
        if (ok) {
          std::lock_guard lock(mutex_);
          if (valid_.size() >= kMaxCacheEntries) valid_.clear();
          valid_[key] = now;
        }
        done(ok);
      });
}

void AuthService::authenticate(std::string_view bearer_token,
                               std::function<void(AuthResult)> done) {
  const bool is_session = bearer_token.starts_with(kSessionTokenPrefix);
  const bool is_service = bearer_token.starts_with(kServiceTokenPrefix);
  if (bearer_token.empty()) return done(AuthFailure::kMissing);
  if ((!is_session && !is_service) || bearer_token.size() > 128) {
    return done(AuthFailure::kInvalid);
  }
  std::string hash = token_hash(bearer_token);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(hash); it != cache_.end()) {
      if (now - it->second.fetched < options_.cache_ttl &&
          std::chrono::system_clock::now() < it->second.context.expires_at) {
        return done(it->second.context);
      }
      cache_.erase(it);
    }
  }
  auto result = std::make_shared<std::optional<SessionContext>>();
  pool_.submit(
      [result, hash, is_session, this](pqxx::connection_base& c) {
        pqxx::work tx(c);
        *result = is_session ? load_session(tx, hash, options_) : load_service_principal(tx, hash);
        tx.commit();
      },
      [this, result, hash, now, done = std::move(done)](std::optional<storage::DbError> err) {
        if (err) return done(AuthFailure::kDatabaseUnavailable);
        if (!*result) return done(AuthFailure::kInvalid);
        {
          std::lock_guard lock(mutex_);
          if (cache_.size() >= kMaxCacheEntries) cache_.clear();
          cache_[hash] = Entry{**result, now};
        }
        done(**result);
      });
}

}  // namespace helm::auth
