/// @brief The hub's append-only, hash-chained audit log in PostgreSQL: one serialized writer
/// path, a fire-and-forget helper for any mutation, and the verification behind
/// `helm-hub audit verify`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "helm/core/expected.hpp"
#include "helm/vault/audit_chain.hpp"

namespace pqxx {
class connection_base;
class transaction_base;
}  // namespace pqxx

namespace helm::storage {
class DbPool;
}
namespace helm::auth {
struct SessionContext;
}

namespace helm::secrets {

/// A record with the caller's identity filled in from `ctx` and the timestamp set to now.
vault::AuditRecord audit_record(const auth::SessionContext& ctx, std::string action,
                                vault::AuditOutcome outcome = vault::AuditOutcome::kAllowed);

/// Appends `record` inside `tx`, which the caller commits (so the record and the change it
/// describes land together or not at all). Appends are serialized by a transaction-scoped
/// advisory lock: the record takes the last sequence + 1 and links to the last hash. Sets the
/// record's sequence, prev_hash and hash. Error (nothing written) if the record is invalid, e.g.
/// it carries a secret-looking `extra` key; pqxx exceptions pass through.
Status append_audit(pqxx::transaction_base& tx, vault::AuditRecord& record);

/// Appends `record` in its own transaction on a pool thread, for events with no transaction of
/// their own (logins, refusals). `done(ok)` runs afterwards; failures are also logged.
void audit(storage::DbPool& pool, vault::AuditRecord record, std::function<void(bool)> done = {});

/// Every record, in sequence order, as stored.
std::vector<vault::AuditRecord> read_audit_log(pqxx::transaction_base& tx);

struct AuditVerification {
  std::uint64_t records = 0;
  /// Set when the chain is broken: what is wrong, naming the record ("record seq 7: ...").
  std::optional<std::string> broken;
};

/// Reads and verifies the whole log from its genesis.
AuditVerification verify_audit_log(pqxx::connection_base& conn);

}  // namespace helm::secrets
