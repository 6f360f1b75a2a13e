#include "helm/vault/audit_chain.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "helm/vault/canonical_encoding.hpp"
#include "helm/vault/names.hpp"
#include "helm/vault/secure_buffer.hpp"

namespace helm::vault {

static_assert(std::tuple_size_v<Digest> == crypto_generichash_BYTES);

namespace {

constexpr std::string_view kAuditLabel = "helm-audit/v1";
constexpr std::size_t kMaxIdLength = 256;
constexpr std::size_t kMaxReasonLength = 1024;
constexpr std::size_t kMaxExtraLength = 4096;

// Keys that would only appear in `extra` if someone were about to log a secret.
constexpr std::array<std::string_view, 16> kForbiddenExtraKeys = {
    "value",      "secret",       "secret_value",  "plaintext",    "password", "passwd",
    "token",      "access_token", "refresh_token", "api_key",      "apikey",   "private_key",
    "credential", "credentials",  "client_secret", "authorization"};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// The first forbidden key found anywhere inside `value`, or empty.
std::string find_forbidden_key(const nlohmann::json& value) {
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      const std::string folded = lower(key);
      if (std::find(kForbiddenExtraKeys.begin(), kForbiddenExtraKeys.end(), folded) !=
          kForbiddenExtraKeys.end()) {
        return key;
      }
      if (std::string found = find_forbidden_key(child); !found.empty()) {
        return found;
      }
    }
  } else if (value.is_array()) {
    for (const auto& child : value) {
      if (std::string found = find_forbidden_key(child); !found.empty()) {
        return found;
      }
    }
  }
  return {};
}

bool is_action_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

VaultError invalid_record(std::string message) {
  return make_error(VaultErrorCode::kInvalidAuditRecord, std::move(message));
}

}  // namespace

std::string_view to_string(AuditOutcome outcome) noexcept {
  switch (outcome) {
    case AuditOutcome::kAllowed:
      return "allowed";
    case AuditOutcome::kDenied:
      return "denied";
    case AuditOutcome::kFailed:
      return "failed";
  }
  return "unknown";
}

std::string_view to_string(ChainBreakKind kind) noexcept {
  switch (kind) {
    case ChainBreakKind::kSequenceMismatch:
      return "sequence_mismatch";
    case ChainBreakKind::kPrevHashMismatch:
      return "prev_hash_mismatch";
    case ChainBreakKind::kHashMismatch:
      return "hash_mismatch";
    case ChainBreakKind::kMissingTail:
      return "missing_tail";
  }
  return "unknown";
}

std::string canonical_extra(const nlohmann::json& extra) {
  // nlohmann::json objects are std::map-backed, so keys come out sorted; ensure_ascii and the
  // replace handler make the text pure ASCII and keep dump() from throwing on invalid UTF-8.
  return extra.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

Bytes canonical_bytes(const AuditRecord& record) {
  return CanonicalEncoder{}
      .add_string(kAuditLabel)
      .add_u64(record.sequence)
      .add_i64(record.timestamp.time_since_epoch().count())
      .add_string(record.actor)
      .add_string(record.session_id)
      .add_string(record.plugin)
      .add_string(record.org_id)
      .add_string(record.action)
      .add_string(record.secret_name)
      .add_u32(static_cast<std::uint32_t>(record.secret_version))
      .add_string(to_string(record.outcome))
      .add_string(record.reason)
      .add_string(canonical_extra(record.extra))
      .take();
}

Digest compute_record_hash(const Digest& prev_hash, const AuditRecord& record) {
  ensure_sodium_initialized();
  const Bytes body = canonical_bytes(record);
  crypto_generichash_state state;
  Digest digest{};
  crypto_generichash_init(&state, nullptr, 0, digest.size());
  crypto_generichash_update(&state, prev_hash.data(), prev_hash.size());
  crypto_generichash_update(&state, body.data(), body.size());
  crypto_generichash_final(&state, digest.data(), digest.size());
  return digest;
}

Result<void> validate_audit_record(const AuditRecord& record) {
  if (record.actor.empty() || record.actor.size() > kMaxIdLength) {
    return invalid_record("audit record needs an actor of 1 to 256 characters");
  }
  if (record.session_id.size() > kMaxIdLength || record.plugin.size() > kMaxIdLength) {
    return invalid_record("audit record session id and plugin must be at most 256 characters");
  }
  if (record.action.empty() || record.action.size() > kMaxIdLength ||
      !std::all_of(record.action.begin(), record.action.end(), is_action_char)) {
    return invalid_record(
        "audit record action must be 1 to 256 of [a-z0-9._-], e.g. "
        "'secret.release'");
  }
  if (!record.org_id.empty() && !is_valid_org_id(record.org_id)) {
    return invalid_record("audit record organization id is invalid");
  }
  if (!record.secret_name.empty() && !is_valid_secret_name(record.secret_name)) {
    return invalid_record("audit record secret name is invalid");
  }
  if (record.secret_version < 0) {
    return invalid_record("audit record secret version must be 0 (none) or positive");
  }
  if (record.reason.size() > kMaxReasonLength) {
    return invalid_record("audit record reason must be at most 1024 characters");
  }
  if (!record.extra.is_object()) {
    return invalid_record("audit record extra must be a JSON object");
  }
  if (const std::string key = find_forbidden_key(record.extra); !key.empty()) {
    return invalid_record("audit record extra has a key '" + key +
                          "' that looks like it carries a secret; audit only metadata, never a "
                          "value");
  }
  if (canonical_extra(record.extra).size() > kMaxExtraLength) {
    return invalid_record("audit record extra must encode to at most 4096 bytes");
  }
  return {};
}

Result<void> link_audit_record(AuditRecord& record, const ChainAnchor& anchor) {
  if (auto ok = validate_audit_record(record); !ok) {
    return ok;
  }
  record.sequence = anchor.next_sequence;
  record.prev_hash = anchor.prev_hash;
  record.hash = compute_record_hash(record.prev_hash, record);
  return {};
}

std::optional<ChainBreak> verify_chain(std::span<const AuditRecord> records,
                                       const ChainAnchor& start,
                                       const std::optional<Digest>& expected_last_hash) {
  ChainAnchor expected = start;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const AuditRecord& record = records[i];
    if (record.sequence != expected.next_sequence) {
      return ChainBreak{i, ChainBreakKind::kSequenceMismatch};
    }
    if (sodium_memcmp(record.prev_hash.data(), expected.prev_hash.data(), Digest{}.size()) != 0) {
      return ChainBreak{i, ChainBreakKind::kPrevHashMismatch};
    }
    const Digest recomputed = compute_record_hash(record.prev_hash, record);
    if (sodium_memcmp(recomputed.data(), record.hash.data(), recomputed.size()) != 0) {
      return ChainBreak{i, ChainBreakKind::kHashMismatch};
    }
    expected = ChainAnchor::after(record);
  }
  if (expected_last_hash && *expected_last_hash != expected.prev_hash) {
    return ChainBreak{records.size(), ChainBreakKind::kMissingTail};
  }
  return std::nullopt;
}

}  // namespace helm::vault
