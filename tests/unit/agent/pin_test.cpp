#include "helm/agent/pin.hpp"

#include <gtest/gtest.h>

#include <string>

namespace helm::agent {
namespace {

constexpr const char* kAbcHash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(CertPin, ParsesPlainLowerCaseHex) {
  const auto pin = parse_pin(kAbcHash);
  ASSERT_TRUE(pin);
  EXPECT_EQ((*pin)[0], 0xba);
  EXPECT_EQ((*pin)[31], 0xad);
  EXPECT_EQ(format_pin(*pin), kAbcHash);
}

TEST(CertPin, IgnoresColonsAndCase) {
  std::string with_colons;
  const std::string upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
  for (std::size_t i = 0; i < upper.size(); i += 2) {
    if (i) with_colons += ':';
    with_colons += upper.substr(i, 2);
  }
  const auto pin = parse_pin(with_colons);
  ASSERT_TRUE(pin);
  EXPECT_EQ(format_pin(*pin), kAbcHash);
}

TEST(CertPin, RefusesWrongLengthOrNonHex) {
  EXPECT_FALSE(parse_pin(""));
  EXPECT_FALSE(parse_pin(std::string(kAbcHash).substr(2)));
  EXPECT_FALSE(parse_pin(std::string(kAbcHash) + "00"));
  std::string bad = kAbcHash;
  bad[5] = 'g';
  EXPECT_FALSE(parse_pin(bad));
}

TEST(CertPin, Sha256MatchesKnownVector) {
  const std::string abc = "abc";
  const auto hash = sha256_of({reinterpret_cast<const std::uint8_t*>(abc.data()), abc.size()});
  EXPECT_EQ(format_pin(hash), kAbcHash);
}

}  // namespace
}  // namespace helm::agent
