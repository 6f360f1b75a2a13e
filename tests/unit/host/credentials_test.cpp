#include "helm/auth/credentials.hpp"

#include <gtest/gtest.h>

namespace helm::auth {
namespace {

TEST(Tokens, CarryTheirPrefixAnd256RandomBits) {
  const auto a = new_token(kSessionTokenPrefix);
  const auto b = new_token(kSessionTokenPrefix);
  EXPECT_EQ(a.rfind("hhs_", 0), 0u);
  EXPECT_EQ(a.size(), 4u + 43u);  // base64url of 32 bytes, unpadded
  EXPECT_NE(a, b);
}

TEST(Tokens, AreStoredAsA32ByteHashThatDiffersFromTheToken) {
  const auto t = new_token(kServiceTokenPrefix);
  const auto h = token_hash(t);
  EXPECT_EQ(h.size(), 32u);
  EXPECT_EQ(h, token_hash(t));
  EXPECT_NE(h, token_hash(t + "x"));
  EXPECT_EQ(h.find(t.substr(4, 8)), std::string::npos);
}

TEST(Tokens, ComparisonIsConstantTimeAndExact) {
  // Equality goes through sodium_memcmp, whose run time does not depend on where bytes differ.
  EXPECT_TRUE(constant_time_equal("abcdef", "abcdef"));
  EXPECT_FALSE(constant_time_equal("abcdef", "abcdeg"));
  EXPECT_FALSE(constant_time_equal("abcdef", "bbcdef"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

TEST(Passwords, VerifyOnlyTheRightPasswordAndRehashWhenParametersChange) {
  const PasswordParams light{.opslimit = 1, .memlimit_bytes = 8 << 20};
  const PasswordParams heavier{.opslimit = 2, .memlimit_bytes = 8 << 20};
  const auto hash = hash_password("correct horse battery", light);
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(verify_password(hash, "correct horse battery"));
  EXPECT_FALSE(verify_password(hash, "correct horse batterY"));
  EXPECT_FALSE(password_needs_rehash(hash, light));
  EXPECT_TRUE(password_needs_rehash(hash, heavier));
}

}  // namespace
}  // namespace helm::auth
