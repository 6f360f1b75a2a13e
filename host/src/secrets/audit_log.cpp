#include "helm/secrets/audit_log.hpp"

#include <ctime>
#include <pqxx/pqxx>

#include "helm/auth/session_context.hpp"
#include "helm/log/logger.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::secrets {
namespace {

// "HELMAUDT" as a 64-bit advisory lock key: one writer appends at a time, hub-wide.
constexpr long long kAuditLockKey = 0x48454c4d41554454LL;

// Exact to the microsecond, so the record read back hashes to the same bytes.
std::string timestamp_text(vault::AuditTimestamp ts) {
  const auto us = ts.time_since_epoch().count();
  auto secs = us / 1'000'000;
  auto frac = us % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%06lld+00", buf, static_cast<long long>(frac));
  return out;
}

vault::Digest digest_of(const pqxx::field& f) {
  vault::Digest d{};
  const pqxx::binarystring b(f);
  if (b.size() == d.size()) std::copy(b.begin(), b.end(), d.begin());
  return d;
}

std::optional<vault::AuditOutcome> parse_outcome(std::string_view s) {
  for (auto o : {vault::AuditOutcome::kAllowed, vault::AuditOutcome::kDenied,
                 vault::AuditOutcome::kFailed}) {
    if (vault::to_string(o) == s) return o;
  }
  return std::nullopt;
}

}  // namespace

vault::AuditRecord audit_record(const auth::SessionContext& ctx, std::string action,
                                vault::AuditOutcome outcome) {
  vault::AuditRecord r;
  r.timestamp =
      std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
  r.actor = ctx.principal_id;
  r.session_id = ctx.session_id;
  r.org_id = ctx.org_id;
  r.action = std::move(action);
  r.outcome = outcome;
  return r;
}

Status append_audit(pqxx::transaction_base& tx, vault::AuditRecord& record) {
  if (record.timestamp == vault::AuditTimestamp{}) {
    record.timestamp =
        std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
  }
  if (auto v = vault::validate_audit_record(record); !v) {
    return Error{"audit record refused: " + v.error().message};
  }
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kAuditLockKey) + ")");
  vault::ChainAnchor anchor = vault::ChainAnchor::genesis();
  const auto last = tx.exec("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
  if (!last.empty()) {
    anchor.next_sequence = last[0][0].as<std::uint64_t>() + 1;
    anchor.prev_hash = digest_of(last[0][1]);
  }
  if (auto linked = vault::link_audit_record(record, anchor); !linked) {
    return Error{"audit record refused: " + linked.error().message};
  }
  const std::string prev(record.prev_hash.begin(), record.prev_hash.end());
  const std::string hash(record.hash.begin(), record.hash.end());
  tx.exec_params(
      "INSERT INTO audit_log (seq, ts, actor, session_id, plugin, org_id, action, secret_name,"
      " secret_version, outcome, reason, extra, prev_hash, hash)"
      " VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
      static_cast<long long>(record.sequence), timestamp_text(record.timestamp), record.actor,
      record.session_id, record.plugin, record.org_id, record.action, record.secret_name,
      record.secret_version, std::string(vault::to_string(record.outcome)), record.reason,
      vault::canonical_extra(record.extra), pqxx::binarystring(prev), pqxx::binarystring(hash));
  return {};
}

void audit(storage::DbPool& pool, vault::AuditRecord record, std::function<void(bool)> done) {
  auto rec = std::make_shared<vault::AuditRecord>(std::move(record));
  auto status = std::make_shared<Status>();
  pool.submit(
      [rec, status](pqxx::connection_base& c) {
        pqxx::work tx(c);
        *status = append_audit(tx, *rec);
        if (status->ok()) tx.commit();
      },
      [rec, status, done = std::move(done)](std::optional<storage::DbError> err) {
        const bool ok = !err && status->ok();
        if (!ok) {
          log::error(
              "audit record not written",
              {{"action", rec->action}, {"error", err ? err->message : status->error().message}});
        }
        if (done) done(ok);
      });
}

std::vector<vault::AuditRecord> read_audit_log(pqxx::transaction_base& tx) {
  std::vector<vault::AuditRecord> out;
  const auto rows = tx.exec(
      "SELECT seq, (extract(epoch FROM ts) * 1000000)::bigint, actor, session_id, plugin, org_id,"
      " action, secret_name, secret_version, outcome, reason, extra, prev_hash, hash"
      " FROM audit_log ORDER BY seq");
  out.reserve(rows.size());
  for (const auto& r : rows) {
    vault::AuditRecord rec;
    rec.sequence = r[0].as<std::uint64_t>();
    rec.timestamp = vault::AuditTimestamp(std::chrono::microseconds(r[1].as<long long>()));
    rec.actor = r[2].c_str();
    rec.session_id = r[3].c_str();
    rec.plugin = r[4].c_str();
    rec.org_id = r[5].c_str();
    rec.action = r[6].c_str();
    rec.secret_name = r[7].c_str();
    rec.secret_version = r[8].as<int>();
    // An outcome this build does not know cannot hash to the stored value: mark it denied and
    // let the hash check report the record.
    const auto outcome = parse_outcome(r[9].c_str());
    rec.outcome = outcome.value_or(vault::AuditOutcome::kDenied);
    rec.reason = r[10].c_str();
    auto extra = nlohmann::json::parse(r[11].c_str(), nullptr, false);
    rec.extra = extra.is_discarded() ? nlohmann::json(r[11].c_str()) : extra;
    rec.prev_hash = digest_of(r[12]);
    rec.hash = digest_of(r[13]);
    if (!outcome) rec.hash = vault::Digest{};  // forces a hash mismatch
    out.push_back(std::move(rec));
  }
  return out;
}

AuditVerification verify_audit_log(pqxx::connection_base& conn) {
  pqxx::read_transaction tx(conn);
  const auto records = read_audit_log(tx);
  AuditVerification out;
  out.records = records.size();
  if (const auto broken = vault::verify_chain(records)) {
    const auto& at = records.at(std::min(broken->index, records.size() - 1));
    std::string what;
    switch (broken->kind) {
      case vault::ChainBreakKind::kSequenceMismatch:
        what =
            "its sequence does not follow the record before it (a record was deleted, "
            "inserted or moved)";
        break;
      case vault::ChainBreakKind::kPrevHashMismatch:
        what =
            "it does not link to the hash of the record before it (records were deleted, "
            "inserted or reordered)";
        break;
      case vault::ChainBreakKind::kHashMismatch:
        what = "its contents do not match its hash (the record was edited)";
        break;
      case vault::ChainBreakKind::kMissingTail:
        what = "the log ends early";
        break;
    }
    out.broken = "record seq " + std::to_string(at.sequence) + " (position " +
                 std::to_string(broken->index + 1) + " of " + std::to_string(records.size()) +
                 ", action " + at.action + "): " + what;
  }
  return out;
}

}  // namespace helm::secrets
