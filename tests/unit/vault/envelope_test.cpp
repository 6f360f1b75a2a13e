#include "helm/vault/envelope.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace helm::vault {
namespace {

constexpr std::string_view kOrg = "acme-msp";
constexpr std::string_view kName = "halopsa/api-key";
// 64 bytes, the size of a typical vendor API key.
constexpr std::string_view kPlaintext =
    "hp_live_8f3a9c1e5b7d2f4a6c8e0b1d3f5a7c9e_client-secret-value-001";
static_assert(kPlaintext.size() == 64);

class EnvelopeTest : public ::testing::Test {
 protected:
  SealedSecret seal(std::string_view org = kOrg, std::string_view name = kName, int version = 1) {
    auto sealed = seal_secret(data_key_, org, name, version, bytes_of(kPlaintext));
    EXPECT_TRUE(sealed) << sealed.error().message;
    return std::move(sealed).value();
  }

  /// Opens `sealed` as kOrg/kName and expects `code`; the message must not leak the plaintext.
  void expect_open_fails(const SealedSecret& sealed, VaultErrorCode code,
                         std::string_view org = kOrg, std::string_view name = kName) {
    const auto opened = open_secret(data_key_, org, name, sealed);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, code) << opened.error().message;
    EXPECT_EQ(opened.error().message.find(kPlaintext), std::string::npos);
  }

  WrappedDataKey wrap(std::string_view org = kOrg) {
    auto wrapped = wrap_data_key(master_key_, org, data_key_);
    EXPECT_TRUE(wrapped) << wrapped.error().message;
    return std::move(wrapped).value();
  }

  MasterKey master_key_ = MasterKey::generate();
  DataKey data_key_ = DataKey::generate(1).value();
};

TEST_F(EnvelopeTest, SealedSecretOpensToTheOriginalValue) {
  const SealedSecret sealed = seal();
  EXPECT_EQ(sealed.format, kSealFormatVersion);
  EXPECT_EQ(sealed.version, 1);
  EXPECT_EQ(sealed.data_key_version, 1);
  const auto opened = open_secret(data_key_, kOrg, kName, sealed);
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(opened->as_chars(), kPlaintext);
}

TEST_F(EnvelopeTest, StoredBytesDifferFromAndDoNotContainThePlaintext) {
  const SealedSecret sealed = seal();
  ASSERT_EQ(sealed.ciphertext.size(), kPlaintext.size() + kAeadTagBytes);
  const std::string stored(sealed.ciphertext.begin(), sealed.ciphertext.end());
  EXPECT_EQ(stored.find(kPlaintext.substr(0, 8)), std::string::npos);
  EXPECT_FALSE(std::equal(kPlaintext.begin(), kPlaintext.end(), sealed.ciphertext.begin()));
}

TEST_F(EnvelopeTest, SealingTheSameValueTwiceUsesFreshNoncesAndCiphertexts) {
  const SealedSecret first = seal();
  const SealedSecret second = seal();
  EXPECT_NE(first.nonce, second.nonce);
  EXPECT_NE(first.ciphertext, second.ciphertext);
}

TEST_F(EnvelopeTest, OpeningFailsWhenAnyBitOfTheCiphertextIsFlipped) {
  const SealedSecret original = seal();
  for (std::size_t i = 0; i < original.ciphertext.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      SCOPED_TRACE(testing::Message() << "byte " << i << " bit " << bit);
      SealedSecret tampered = original;
      tampered.ciphertext[i] ^= static_cast<std::uint8_t>(1U << bit);
      expect_open_fails(tampered, VaultErrorCode::kAuthenticationFailed);
    }
  }
}

TEST_F(EnvelopeTest, OpeningFailsWhenAnyBitOfTheNonceIsFlipped) {
  const SealedSecret original = seal();
  for (std::size_t i = 0; i < original.nonce.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      SCOPED_TRACE(testing::Message() << "byte " << i << " bit " << bit);
      SealedSecret tampered = original;
      tampered.nonce[i] ^= static_cast<std::uint8_t>(1U << bit);
      expect_open_fails(tampered, VaultErrorCode::kAuthenticationFailed);
    }
  }
}

TEST_F(EnvelopeTest, OpeningFailsWhenCiphertextMovedToAnotherOrganization) {
  expect_open_fails(seal(), VaultErrorCode::kAuthenticationFailed, "globex", kName);
}

TEST_F(EnvelopeTest, OpeningFailsWhenCiphertextMovedToAnotherSecretName) {
  expect_open_fails(seal(), VaultErrorCode::kAuthenticationFailed, kOrg, "halopsa/client-id");
  expect_open_fails(seal(), VaultErrorCode::kAuthenticationFailed, kOrg, "ninjaone/api-key");
}

TEST_F(EnvelopeTest, OpeningFailsWhenCiphertextMovedToAnotherSecretVersion) {
  SealedSecret moved = seal(kOrg, kName, 1);
  moved.version = 2;
  expect_open_fails(moved, VaultErrorCode::kAuthenticationFailed);
  SealedSecret older = seal(kOrg, kName, 7);
  older.version = 6;
  expect_open_fails(older, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, OpeningFailsWhenCiphertextRelabelledWithAnotherDataKeyVersion) {
  // The same key bytes under another version number: only the additional data differs.
  const auto relabelled_key = DataKey::from_bytes(2, data_key_.bytes());
  ASSERT_TRUE(relabelled_key);
  SealedSecret moved = seal();
  moved.data_key_version = 2;
  const auto opened = open_secret(*relabelled_key, kOrg, kName, moved);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, OpeningWithADataKeyOfAnotherVersionIsReportedAsAMismatch) {
  const auto newer = DataKey::generate(2);
  ASSERT_TRUE(newer);
  const auto opened = open_secret(*newer, kOrg, kName, seal());
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, VaultErrorCode::kDataKeyVersionMismatch);
}

TEST_F(EnvelopeTest, OpeningFailsWithAnotherOrganizationsDataKey) {
  const auto other = DataKey::generate(1);
  ASSERT_TRUE(other);
  const auto opened = open_secret(*other, kOrg, kName, seal());
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, OpeningRejectsImpossibleNonceAndCiphertextLengths) {
  const SealedSecret original = seal();
  SealedSecret short_nonce = original;
  short_nonce.nonce.pop_back();
  expect_open_fails(short_nonce, VaultErrorCode::kMalformedCiphertext);
  SealedSecret tag_only = original;
  tag_only.ciphertext.resize(kAeadTagBytes);
  expect_open_fails(tag_only, VaultErrorCode::kMalformedCiphertext);
  SealedSecret truncated = original;
  truncated.ciphertext.pop_back();
  expect_open_fails(truncated, VaultErrorCode::kAuthenticationFailed);
  SealedSecret empty = original;
  empty.ciphertext.clear();
  expect_open_fails(empty, VaultErrorCode::kMalformedCiphertext);
}

TEST_F(EnvelopeTest, OpeningRejectsAnUnknownSealFormat) {
  SealedSecret future = seal();
  future.format = kSealFormatVersion + 1;
  expect_open_fails(future, VaultErrorCode::kUnsupportedFormat);
}

TEST_F(EnvelopeTest, SealingRejectsInvalidOrganizationNameVersionOrSize) {
  const ByteView value = bytes_of(kPlaintext);
  EXPECT_EQ(seal_secret(data_key_, "Acme", kName, 1, value).error().code,
            VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(seal_secret(data_key_, kOrg, "../etc/passwd", 1, value).error().code,
            VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(seal_secret(data_key_, kOrg, kName, 0, value).error().code,
            VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(seal_secret(data_key_, kOrg, kName, 1, ByteView{}).error().code,
            VaultErrorCode::kInvalidArgument);
  const std::string huge(kMaxSecretBytes + 1, 'x');
  const auto too_big = seal_secret(data_key_, kOrg, kName, 1, bytes_of(huge));
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code, VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(too_big.error().message.find("xxxx"), std::string::npos);
  const std::string largest(kMaxSecretBytes, 'x');
  EXPECT_TRUE(seal_secret(data_key_, kOrg, kName, 1, bytes_of(largest)));
}

TEST_F(EnvelopeTest, AdditionalDataKeepsFieldBoundariesApart) {
  EXPECT_NE(secret_additional_data(1, "ab", "c", 1, 1), secret_additional_data(1, "a", "bc", 1, 1));
  EXPECT_NE(secret_additional_data(1, "a", "b", 1, 2), secret_additional_data(1, "a", "b", 2, 1));
  EXPECT_NE(data_key_additional_data(1, "a", 1, "k"), secret_additional_data(1, "a", "k", 1, 1));
}

TEST_F(EnvelopeTest, UnwrappedDataKeyOpensSecretsSealedWithTheOriginal) {
  const SealedSecret sealed = seal();
  const WrappedDataKey wrapped = wrap();
  EXPECT_EQ(wrapped.key_version, 1);
  EXPECT_EQ(wrapped.master_key_id, master_key_.check_value());
  ASSERT_EQ(wrapped.ciphertext.size(), kDataKeyBytes + kAeadTagBytes);
  EXPECT_FALSE(
      std::equal(data_key_.bytes().begin(), data_key_.bytes().end(), wrapped.ciphertext.begin()));

  const auto unwrapped = unwrap_data_key(master_key_, kOrg, wrapped);
  ASSERT_TRUE(unwrapped) << unwrapped.error().message;
  EXPECT_EQ(unwrapped->version(), 1);
  const auto opened = open_secret(*unwrapped, kOrg, kName, sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->as_chars(), kPlaintext);
}

TEST_F(EnvelopeTest, UnwrappingFailsWhenAnyBitOfTheWrappedKeyOrItsNonceIsFlipped) {
  const WrappedDataKey original = wrap();
  for (Bytes WrappedDataKey::*field : {&WrappedDataKey::ciphertext, &WrappedDataKey::nonce}) {
    for (std::size_t i = 0; i < (original.*field).size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        SCOPED_TRACE(testing::Message() << "byte " << i << " bit " << bit);
        WrappedDataKey tampered = original;
        (tampered.*field)[i] ^= static_cast<std::uint8_t>(1U << bit);
        const auto unwrapped = unwrap_data_key(master_key_, kOrg, tampered);
        ASSERT_FALSE(unwrapped);
        EXPECT_EQ(unwrapped.error().code, VaultErrorCode::kAuthenticationFailed);
      }
    }
  }
}

TEST_F(EnvelopeTest, UnwrappingWithTheWrongMasterKeyFailsBeforeDecryption) {
  const MasterKey wrong = MasterKey::generate();
  const auto unwrapped = unwrap_data_key(wrong, kOrg, wrap());
  ASSERT_FALSE(unwrapped);
  EXPECT_EQ(unwrapped.error().code, VaultErrorCode::kWrongMasterKey);
  EXPECT_NE(unwrapped.error().message.find(master_key_.check_value()), std::string::npos);
}

TEST_F(EnvelopeTest, UnwrappingWithTheWrongMasterKeyFailsEvenIfTheKeyIdIsForged) {
  const MasterKey wrong = MasterKey::generate();
  WrappedDataKey forged = wrap();
  forged.master_key_id = wrong.check_value();
  const auto unwrapped = unwrap_data_key(wrong, kOrg, forged);
  ASSERT_FALSE(unwrapped);
  EXPECT_EQ(unwrapped.error().code, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, UnwrappingFailsWhenWrappedKeyMovedToAnotherOrganization) {
  const auto unwrapped = unwrap_data_key(master_key_, "globex", wrap());
  ASSERT_FALSE(unwrapped);
  EXPECT_EQ(unwrapped.error().code, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, UnwrappingFailsWhenWrappedKeyRelabelledWithAnotherVersion) {
  WrappedDataKey relabelled = wrap();
  relabelled.key_version = 2;
  const auto unwrapped = unwrap_data_key(master_key_, kOrg, relabelled);
  ASSERT_FALSE(unwrapped);
  EXPECT_EQ(unwrapped.error().code, VaultErrorCode::kAuthenticationFailed);
}

TEST_F(EnvelopeTest, UnwrappingRejectsUnknownFormatAndImpossibleLengths) {
  WrappedDataKey future = wrap();
  future.format = kWrapFormatVersion + 1;
  EXPECT_EQ(unwrap_data_key(master_key_, kOrg, future).error().code,
            VaultErrorCode::kUnsupportedFormat);
  WrappedDataKey truncated = wrap();
  truncated.ciphertext.pop_back();
  EXPECT_EQ(unwrap_data_key(master_key_, kOrg, truncated).error().code,
            VaultErrorCode::kMalformedCiphertext);
}

TEST_F(EnvelopeTest, RewrappingUnderANewMasterKeyKeepsSecretsReadable) {
  const SealedSecret sealed = seal();
  const WrappedDataKey old_wrap = wrap();
  const MasterKey new_master = MasterKey::generate();
  const auto new_wrap = rewrap_data_key(master_key_, new_master, kOrg, old_wrap);
  ASSERT_TRUE(new_wrap) << new_wrap.error().message;
  EXPECT_EQ(new_wrap->key_version, old_wrap.key_version);
  EXPECT_EQ(new_wrap->master_key_id, new_master.check_value());
  EXPECT_NE(new_wrap->nonce, old_wrap.nonce);

  EXPECT_EQ(unwrap_data_key(master_key_, kOrg, *new_wrap).error().code,
            VaultErrorCode::kWrongMasterKey);
  const auto unwrapped = unwrap_data_key(new_master, kOrg, *new_wrap);
  ASSERT_TRUE(unwrapped);
  const auto opened = open_secret(*unwrapped, kOrg, kName, sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->as_chars(), kPlaintext);
}

TEST_F(EnvelopeTest, RewrappingFailsWhenTheOldMasterKeyIsWrong) {
  const MasterKey stranger = MasterKey::generate();
  const auto result = rewrap_data_key(stranger, MasterKey::generate(), kOrg, wrap());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, VaultErrorCode::kWrongMasterKey);
}

TEST_F(EnvelopeTest, ResealingUnderANewDataKeyKeepsValueAndSecretVersion) {
  const SealedSecret old_seal = seal(kOrg, kName, 4);
  const auto new_key = DataKey::generate(2);
  ASSERT_TRUE(new_key);
  const auto new_seal = reseal_secret(data_key_, *new_key, kOrg, kName, old_seal);
  ASSERT_TRUE(new_seal) << new_seal.error().message;
  EXPECT_EQ(new_seal->version, 4);
  EXPECT_EQ(new_seal->data_key_version, 2);
  EXPECT_EQ(open_secret(data_key_, kOrg, kName, *new_seal).error().code,
            VaultErrorCode::kDataKeyVersionMismatch);
  const auto opened = open_secret(*new_key, kOrg, kName, *new_seal);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->as_chars(), kPlaintext);
}

TEST_F(EnvelopeTest, ResealingRefusesAKeyOfTheSameVersion) {
  const auto same_version = DataKey::generate(1);
  ASSERT_TRUE(same_version);
  EXPECT_EQ(reseal_secret(data_key_, *same_version, kOrg, kName, seal()).error().code,
            VaultErrorCode::kInvalidArgument);
}

TEST(DataKeyTest, RefusesVersionsBelowOneAndKeysOfWrongLength) {
  EXPECT_EQ(DataKey::generate(0).error().code, VaultErrorCode::kInvalidArgument);
  const std::string short_key(31, 'k');
  EXPECT_EQ(DataKey::from_bytes(1, bytes_of(short_key)).error().code,
            VaultErrorCode::kInvalidArgument);
  const std::string key(32, 'k');
  EXPECT_EQ(DataKey::from_bytes(-1, bytes_of(key)).error().code, VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(DataKey::adopt(1, SecureBuffer(31)).error().code, VaultErrorCode::kInvalidArgument);
  EXPECT_EQ(DataKey::adopt(0, SecureBuffer(32)).error().code, VaultErrorCode::kInvalidArgument);
}

TEST(DataKeyTest, AdoptTakesTheBufferWithoutCopying) {
  SecureBuffer buffer = SecureBuffer::copy_of(bytes_of(std::string(32, 'k')));
  const std::uint8_t* address = buffer.data();
  const auto key = DataKey::adopt(3, std::move(buffer));
  ASSERT_TRUE(key);
  EXPECT_EQ(key->version(), 3);
  EXPECT_EQ(key->bytes().data(), address);
}

TEST(DataKeyTest, GeneratedKeysAreRandom) {
  const auto first = DataKey::generate(1);
  const auto second = DataKey::generate(1);
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(std::equal(first->bytes().begin(), first->bytes().end(), second->bytes().begin()));
}

}  // namespace
}  // namespace helm::vault
