/// @brief Hash-chained audit records of secret releases: canonical encoding, linking, verification.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "helm/vault/bytes.hpp"
#include "helm/vault/result.hpp"

namespace helm::vault {

/// A BLAKE2b-256 digest.
using Digest = std::array<std::uint8_t, 32>;

/// The prev_hash of the first record of a log: 32 zero bytes.
inline constexpr Digest kGenesisPrevHash{};

/// Microseconds since the Unix epoch (UTC): PostgreSQL timestamptz precision, so a record read
/// back from the database hashes to the same bytes.
using AuditTimestamp = std::chrono::sys_time<std::chrono::microseconds>;

enum class AuditOutcome { kAllowed, kDenied, kFailed };
std::string_view to_string(AuditOutcome outcome) noexcept;

/// One audit event, such as a secret release. There is deliberately no field for a secret value:
/// only who, where, what and the outcome. `reason` and `extra` are free-form, so
/// validate_audit_record() rejects `extra` objects that carry keys such as "value", "password" or
/// "token" at any depth.
struct AuditRecord {
  std::uint64_t sequence = 0;  // 1, 2, 3 ... with no gaps
  AuditTimestamp timestamp{};
  std::string actor;  // technician or service principal id
  std::string session_id;
  std::string plugin;       // empty when no plugin is involved
  std::string org_id;       // empty for hub-wide events
  std::string action;       // e.g. "secret.release", "secret.write", "key.rotate"
  std::string secret_name;  // empty when no secret is involved
  int secret_version = 0;   // 0 when no secret version is involved
  AuditOutcome outcome = AuditOutcome::kAllowed;
  std::string reason;                               // why, e.g. "session expired"
  nlohmann::json extra = nlohmann::json::object();  // small object of non-secret context
  Digest prev_hash{};  // hash of the previous record, or kGenesisPrevHash
  Digest hash{};       // BLAKE2b-256(prev_hash || canonical_bytes(*this))
};

/// The deterministic encoding hashed into the chain: CanonicalEncoder fields
/// ("helm-audit/v1", u64 sequence, i64 timestamp_us, actor, session_id, plugin, org_id, action,
///  secret_name, u32 secret_version, outcome name, reason, extra as compact sorted-key JSON with
/// non-ASCII escaped). prev_hash and hash are not part of it. Store `extra` as this exact text
/// (not as jsonb, which may renormalize numbers) so it round-trips.
Bytes canonical_bytes(const AuditRecord& record);

/// `extra` in the canonical text form described above.
std::string canonical_extra(const nlohmann::json& extra);

/// BLAKE2b-256(prev_hash || canonical_bytes(record)).
Digest compute_record_hash(const Digest& prev_hash, const AuditRecord& record);

/// Checks a record before it is appended: actor and action present, org id and secret name
/// valid when present, bounded field lengths, `extra` an object without secret-looking keys.
Result<void> validate_audit_record(const AuditRecord& record);

/// Where a chain (or a verified segment of one) continues from.
struct ChainAnchor {
  std::uint64_t next_sequence = 1;
  Digest prev_hash = kGenesisPrevHash;

  static ChainAnchor genesis() noexcept { return {}; }
  static ChainAnchor after(const AuditRecord& record) noexcept {
    return {record.sequence + 1, record.hash};
  }
};

/// Validates `record`, then sets its sequence and prev_hash from `anchor` and computes its hash.
Result<void> link_audit_record(AuditRecord& record, const ChainAnchor& anchor);

enum class ChainBreakKind {
  kSequenceMismatch,  // sequence is not the previous one plus one
  kPrevHashMismatch,  // prev_hash is not the previous record's hash
  kHashMismatch,      // the record's contents do not hash to its stored hash
  kMissingTail,       // the chain ends before the expected last hash (records cut off the end)
};
std::string_view to_string(ChainBreakKind kind) noexcept;

/// The first place a chain stops being intact. For kMissingTail, index == records.size().
struct ChainBreak {
  std::size_t index;
  ChainBreakKind kind;
};

/// Verifies `records` in order, starting from `start` (genesis for a whole log). Returns the first
/// broken index, or nullopt if intact. An edited, deleted, inserted or reordered record breaks the
/// chain at or just after its position. Deleting records from the end is only detectable against
/// an externally kept head: pass it as `expected_last_hash`. Note that the chain is unkeyed, so
/// someone able to rewrite the whole stored suffix can recompute it; anchoring the head outside
/// the database is what makes that detectable.
std::optional<ChainBreak> verify_chain(std::span<const AuditRecord> records,
                                       const ChainAnchor& start = ChainAnchor::genesis(),
                                       const std::optional<Digest>& expected_last_hash = {});

}  // namespace helm::vault
