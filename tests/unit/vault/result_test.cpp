#include "helm/vault/result.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace helm::vault {
namespace {

TEST(ResultTest, HoldsTheValueItWasGiven) {
  Result<std::string> result(std::string("kept"));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, "kept");
  EXPECT_EQ(result->size(), 4U);
}

TEST(ResultTest, HoldsTheErrorItWasGiven) {
  Result<int> result = make_error(VaultErrorCode::kKeyNotFound, "no key");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, VaultErrorCode::kKeyNotFound);
  EXPECT_EQ(result.error().message, "no key");
}

TEST(ResultTest, ReadingTheValueOfAnErrorThrowsBadResultAccess) {
  Result<int> result = make_error(VaultErrorCode::kInternal, "broken");
  EXPECT_THROW(static_cast<void>(result.value()), BadResultAccess);
  Result<void> status = make_error(VaultErrorCode::kInternal, "broken");
  EXPECT_THROW(status.value(), BadResultAccess);
}

TEST(ResultTest, VoidResultIsSuccessByDefault) {
  Result<void> status;
  EXPECT_TRUE(status.has_value());
  EXPECT_NO_THROW(status.value());
}

TEST(ResultTest, EveryErrorCodeHasADistinctName) {
  std::set<std::string> names;
  for (int code = 0; code <= static_cast<int>(VaultErrorCode::kInternal); ++code) {
    const std::string name(to_string(static_cast<VaultErrorCode>(code)));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

}  // namespace
}  // namespace helm::vault
