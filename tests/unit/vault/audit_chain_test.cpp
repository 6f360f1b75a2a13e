#include "helm/vault/audit_chain.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace helm::vault {
namespace {

using std::chrono::microseconds;

AuditRecord release_record(int n) {
  AuditRecord record;
  record.timestamp = AuditTimestamp(microseconds(1'700'000'000'000'000 + n));
  record.actor = "tech:alice";
  record.session_id = "sess-" + std::to_string(n);
  record.plugin = "psa-halopsa";
  record.org_id = "acme-msp";
  record.action = "secret.release";
  record.secret_name = "halopsa/api-key";
  record.secret_version = 3;
  record.outcome = AuditOutcome::kAllowed;
  record.reason = "";
  record.extra = {{"operation", "tickets.list"}, {"request_id", n}};
  return record;
}

class AuditChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ChainAnchor anchor = ChainAnchor::genesis();
    for (int n = 0; n < 6; ++n) {
      AuditRecord record = release_record(n);
      ASSERT_TRUE(link_audit_record(record, anchor));
      anchor = ChainAnchor::after(record);
      chain_.push_back(std::move(record));
    }
  }

  static void expect_break(const std::vector<AuditRecord>& records, std::size_t index,
                           ChainBreakKind kind) {
    const auto broken = verify_chain(records);
    ASSERT_TRUE(broken.has_value());
    EXPECT_EQ(broken->index, index);
    EXPECT_EQ(broken->kind, kind) << to_string(broken->kind);
  }

  std::vector<AuditRecord> chain_;
};

TEST_F(AuditChainTest, IntactChainVerifies) {
  EXPECT_EQ(chain_.front().sequence, 1U);
  EXPECT_EQ(chain_.front().prev_hash, kGenesisPrevHash);
  EXPECT_EQ(chain_[1].prev_hash, chain_[0].hash);
  EXPECT_FALSE(verify_chain(chain_).has_value());
  EXPECT_FALSE(verify_chain(chain_, ChainAnchor::genesis(), chain_.back().hash).has_value());
  EXPECT_FALSE(verify_chain({}).has_value());
}

TEST_F(AuditChainTest, EditingAnyFieldOfARecordBreaksTheChainAtThatRecord) {
  const std::vector<void (*)(AuditRecord&)> edits = {
      [](AuditRecord& r) { r.timestamp += microseconds(1); },
      [](AuditRecord& r) { r.actor = "tech:mallory"; },
      [](AuditRecord& r) { r.session_id = "sess-x"; },
      [](AuditRecord& r) { r.plugin = "rmm-ninjaone"; },
      [](AuditRecord& r) { r.org_id = "globex"; },
      [](AuditRecord& r) { r.action = "secret.write"; },
      [](AuditRecord& r) { r.secret_name = "halopsa/client-id"; },
      [](AuditRecord& r) { r.secret_version = 4; },
      [](AuditRecord& r) { r.outcome = AuditOutcome::kDenied; },
      [](AuditRecord& r) { r.reason = "edited"; },
      [](AuditRecord& r) { r.extra["operation"] = "tickets.delete"; },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    SCOPED_TRACE(i);
    std::vector<AuditRecord> edited = chain_;
    edits[i](edited[2]);
    expect_break(edited, 2, ChainBreakKind::kHashMismatch);
  }
}

TEST_F(AuditChainTest, EditedRecordWithRecomputedHashBreaksTheChainAtTheNextRecord) {
  std::vector<AuditRecord> edited = chain_;
  edited[2].actor = "tech:mallory";
  edited[2].hash = compute_record_hash(edited[2].prev_hash, edited[2]);
  expect_break(edited, 3, ChainBreakKind::kPrevHashMismatch);
}

TEST_F(AuditChainTest, DeletingARecordBreaksTheChainWhereItWas) {
  std::vector<AuditRecord> deleted = chain_;
  deleted.erase(deleted.begin() + 3);
  expect_break(deleted, 3, ChainBreakKind::kSequenceMismatch);

  std::vector<AuditRecord> first_deleted = chain_;
  first_deleted.erase(first_deleted.begin());
  expect_break(first_deleted, 0, ChainBreakKind::kSequenceMismatch);
}

TEST_F(AuditChainTest, DeletingARecordAndRenumberingBreaksTheChainWhereItWas) {
  std::vector<AuditRecord> deleted = chain_;
  deleted.erase(deleted.begin() + 3);
  for (std::size_t i = 3; i < deleted.size(); ++i) {
    deleted[i].sequence -= 1;
    deleted[i].hash = compute_record_hash(deleted[i].prev_hash, deleted[i]);
  }
  expect_break(deleted, 3, ChainBreakKind::kPrevHashMismatch);
}

TEST_F(AuditChainTest, DeletingTheLastRecordIsCaughtAgainstTheKnownHead) {
  const Digest head = chain_.back().hash;
  std::vector<AuditRecord> truncated = chain_;
  truncated.pop_back();
  const auto broken = verify_chain(truncated, ChainAnchor::genesis(), head);
  ASSERT_TRUE(broken.has_value());
  EXPECT_EQ(broken->index, truncated.size());
  EXPECT_EQ(broken->kind, ChainBreakKind::kMissingTail);
}

TEST_F(AuditChainTest, SwappingTwoRecordsBreaksTheChainAtTheFirstOfThem) {
  std::vector<AuditRecord> reordered = chain_;
  std::swap(reordered[1], reordered[2]);
  expect_break(reordered, 1, ChainBreakKind::kSequenceMismatch);

  // Even with the sequence numbers swapped back, the links no longer line up.
  std::swap(reordered[1].sequence, reordered[2].sequence);
  expect_break(reordered, 1, ChainBreakKind::kPrevHashMismatch);
}

TEST_F(AuditChainTest, InsertingAForgedRecordBreaksTheChain) {
  // A forger who links the new record correctly to its predecessor still breaks its successor.
  AuditRecord forged = release_record(99);
  ASSERT_TRUE(link_audit_record(forged, ChainAnchor::after(chain_[2])));
  std::vector<AuditRecord> inserted = chain_;
  inserted.insert(inserted.begin() + 3, forged);
  expect_break(inserted, 4, ChainBreakKind::kSequenceMismatch);

  // A careless forger who copies a neighbour's links is caught at the forged record itself.
  AuditRecord copied = release_record(98);
  copied.sequence = chain_[3].sequence;
  copied.prev_hash = chain_[3].prev_hash;
  copied.hash = chain_[3].hash;
  std::vector<AuditRecord> careless = chain_;
  careless.insert(careless.begin() + 3, copied);
  expect_break(careless, 3, ChainBreakKind::kHashMismatch);
}

TEST_F(AuditChainTest, VerifiesASegmentFromAnAnchor) {
  const std::vector<AuditRecord> tail(chain_.begin() + 3, chain_.end());
  EXPECT_FALSE(verify_chain(tail, ChainAnchor::after(chain_[2])).has_value());
  const auto from_genesis = verify_chain(tail);
  ASSERT_TRUE(from_genesis.has_value());
  EXPECT_EQ(from_genesis->index, 0U);
}

TEST(AuditRecordTest, CanonicalBytesAreDeterministicAndIgnoreJsonKeyOrder) {
  AuditRecord first = release_record(1);
  AuditRecord second = release_record(1);
  first.extra = nlohmann::json::parse(R"({"b": 1, "a": [true, "x"]})");
  second.extra = nlohmann::json::parse(R"({"a": [true, "x"], "b": 1})");
  EXPECT_EQ(canonical_bytes(first), canonical_bytes(second));
  EXPECT_EQ(compute_record_hash(kGenesisPrevHash, first),
            compute_record_hash(kGenesisPrevHash, second));
  EXPECT_EQ(canonical_extra(first.extra), R"({"a":[true,"x"],"b":1})");
}

TEST(AuditRecordTest, CanonicalBytesKeepFieldBoundariesApart) {
  AuditRecord first = release_record(1);
  AuditRecord second = release_record(1);
  first.actor = "ab";
  first.session_id = "c";
  second.actor = "a";
  second.session_id = "bc";
  EXPECT_NE(canonical_bytes(first), canonical_bytes(second));
}

TEST(AuditRecordTest, HashDependsOnThePreviousHash) {
  const AuditRecord record = release_record(1);
  Digest other{};
  other[31] = 1;
  EXPECT_NE(compute_record_hash(kGenesisPrevHash, record), compute_record_hash(other, record));
}

TEST(AuditRecordTest, ValidationRefusesExtraKeysThatLookLikeSecretValues) {
  for (const char* key : {"value", "Password", "token", "api_key", "client_secret"}) {
    SCOPED_TRACE(key);
    AuditRecord record = release_record(1);
    record.extra = {{"request", {{"headers", {{key, "redacted?"}}}}}};
    const auto result = validate_audit_record(record);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, VaultErrorCode::kInvalidAuditRecord);
    EXPECT_EQ(result.error().message.find("redacted?"), std::string::npos);
    EXPECT_FALSE(link_audit_record(record, ChainAnchor::genesis()));
  }
}

TEST(AuditRecordTest, ValidationRefusesIncompleteOrMalformedRecords) {
  const std::vector<void (*)(AuditRecord&)> breakages = {
      [](AuditRecord& r) { r.actor.clear(); },
      [](AuditRecord& r) { r.action.clear(); },
      [](AuditRecord& r) { r.action = "Secret Release"; },
      [](AuditRecord& r) { r.org_id = "Acme"; },
      [](AuditRecord& r) { r.secret_name = "../x"; },
      [](AuditRecord& r) { r.secret_version = -1; },
      [](AuditRecord& r) { r.extra = nlohmann::json::array(); },
      [](AuditRecord& r) { r.reason = std::string(2000, 'r'); },
  };
  for (std::size_t i = 0; i < breakages.size(); ++i) {
    SCOPED_TRACE(i);
    AuditRecord record = release_record(1);
    breakages[i](record);
    EXPECT_FALSE(validate_audit_record(record));
  }
  AuditRecord hub_wide = release_record(1);
  hub_wide.org_id.clear();
  hub_wide.secret_name.clear();
  hub_wide.secret_version = 0;
  EXPECT_TRUE(validate_audit_record(hub_wide));
}

}  // namespace
}  // namespace helm::vault
