/// @brief Authenticates bearer tokens (technician sessions and service-principal tokens) against
/// PostgreSQL with a cache of at most one second, so revocation is seen on the next request.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>

#include "helm/auth/session_context.hpp"

namespace helm::storage {
class DbPool;
}

namespace helm::auth {

struct AuthOptions {
  std::chrono::seconds idle_timeout{30 * 60};
  std::chrono::seconds absolute_timeout{12 * 60 * 60};
  std::chrono::milliseconds cache_ttl{1000};  ///< revocation may take this long to be seen
};

enum class AuthFailure { kMissing, kInvalid, kDatabaseUnavailable };

using AuthResult = std::variant<SessionContext, AuthFailure>;

class AuthService {
 public:
  AuthService(storage::DbPool& pool, AuthOptions options);

  /// Calls `done` (on the caller's thread on a cache hit, else on a database thread).
  void authenticate(std::string_view bearer_token, std::function<void(AuthResult)> done);

  /// "Is this session still valid right now?" — not expired, not logged out or revoked, account
  /// not disabled. Answers from a cache of at most cache_ttl, else from the database; `done`
  /// runs on the caller's thread (cache hit) or a database thread. Database trouble is "no".
  void check_still_valid(const SessionContext& context, std::function<void(bool)> done);

  /// Forgets every cached session at once (after logout, disable, revoke on this node).
  void invalidate_cache();

  const AuthOptions& options() const { return options_; }

 private:
  struct Entry {
    SessionContext context;
    std::chrono::steady_clock::time_point fetched;
  };
  storage::DbPool& pool_;
  AuthOptions options_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> cache_;                                  ///< by token hash
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> valid_;  ///< by session
};

}  // namespace helm::auth
