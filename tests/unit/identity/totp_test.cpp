#include "helm/identity/totp.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace helm::identity {
namespace {

std::vector<std::uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

// RFC 4226 and RFC 6238 both use this ASCII secret for their SHA-1 vectors.
std::vector<std::uint8_t> rfc_secret() {
  return bytes_of("12345678901234567890");
}
constexpr std::int64_t kNoStepAccepted = std::numeric_limits<std::int64_t>::min();

struct TotpVector {
  std::int64_t unix_time;
  std::string_view eight_digits;
};

// RFC 6238 Appendix B, SHA1 column.
constexpr TotpVector kRfc6238Vectors[] = {
    {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
    {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
};

TEST(TotpTest, MatchesRfc6238AppendixBWithEightDigits) {
  for (const auto& [unix_time, eight_digits] : kRfc6238Vectors) {
    SCOPED_TRACE(unix_time);
    EXPECT_EQ(hotp_code(rfc_secret(), static_cast<std::uint64_t>(totp_step(unix_time)), 8),
              eight_digits);
  }
}

TEST(TotpTest, SixDigitCodeIsTheLastSixDigitsOfTheRfc6238Value) {
  for (const auto& [unix_time, eight_digits] : kRfc6238Vectors) {
    SCOPED_TRACE(unix_time);
    EXPECT_EQ(totp_code(rfc_secret(), unix_time), eight_digits.substr(2));
  }
}

TEST(HotpTest, MatchesRfc4226AppendixD) {
  constexpr std::string_view kExpected[] = {"755224", "287082", "359152", "969429", "338314",
                                            "254676", "287922", "162583", "399871", "520489"};
  for (std::uint64_t counter = 0; counter < std::size(kExpected); ++counter) {
    SCOPED_TRACE(counter);
    EXPECT_EQ(hotp_code(rfc_secret(), counter), kExpected[counter]);
  }
}

TEST(HotpTest, RefusesDigitCountsOutsideSixToEight) {
  EXPECT_THROW(static_cast<void>(hotp_code(rfc_secret(), 0, 5)), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(hotp_code(rfc_secret(), 0, 9)), std::invalid_argument);
  EXPECT_EQ(hotp_code(rfc_secret(), 0, 7).size(), 7u);
}

TEST(TotpTest, StepIsFlooredThirtySecondInterval) {
  EXPECT_EQ(totp_step(0), 0);
  EXPECT_EQ(totp_step(29), 0);
  EXPECT_EQ(totp_step(30), 1);
  EXPECT_EQ(totp_step(59), 1);
  EXPECT_EQ(totp_step(-1), -1);
  EXPECT_EQ(totp_step(-30), -1);
  EXPECT_EQ(totp_step(-31), -2);
}

TEST(TotpTest, CurrentCodeIsAcceptedAndReturnsItsStep) {
  const std::int64_t now = 1111111111;
  const std::optional<std::int64_t> step =
      verify_totp(rfc_secret(), totp_code(rfc_secret(), now), now, kNoStepAccepted);
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ(*step, totp_step(now));
}

TEST(TotpTest, ReplayedCodeIsRefused) {
  const std::int64_t now = 1234567890;
  const std::string code = totp_code(rfc_secret(), now);
  const std::optional<std::int64_t> first = verify_totp(rfc_secret(), code, now, kNoStepAccepted);
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(verify_totp(rfc_secret(), code, now, *first).has_value());
  // Still refused a step later, when the code is only inside the drift window.
  EXPECT_FALSE(verify_totp(rfc_secret(), code, now + 30, *first).has_value());
}

TEST(TotpTest, CodeFromAStepAlreadyPassedIsRefusedEvenIfNeverUsed) {
  const std::int64_t now = 1234567890;
  const std::string previous = totp_code(rfc_secret(), now - 30);
  // A later code was accepted first; the older one must not sign in afterwards.
  EXPECT_FALSE(verify_totp(rfc_secret(), previous, now, totp_step(now)).has_value());
}

TEST(TotpTest, PreviousAndNextStepAreAcceptedOnceEach) {
  const std::int64_t now = 2000000000;
  const std::int64_t step = totp_step(now);
  const std::string previous = totp_code(rfc_secret(), now - 30);
  const std::string next = totp_code(rfc_secret(), now + 30);

  const std::optional<std::int64_t> previous_step =
      verify_totp(rfc_secret(), previous, now, kNoStepAccepted);
  ASSERT_TRUE(previous_step.has_value());
  EXPECT_EQ(*previous_step, step - 1);
  EXPECT_FALSE(verify_totp(rfc_secret(), previous, now, *previous_step).has_value());

  const std::optional<std::int64_t> next_step =
      verify_totp(rfc_secret(), next, now, *previous_step);
  ASSERT_TRUE(next_step.has_value());
  EXPECT_EQ(*next_step, step + 1);
  EXPECT_FALSE(verify_totp(rfc_secret(), next, now, *next_step).has_value());
}

TEST(TotpTest, CodesOutsideTheWindowAreRefused) {
  const std::int64_t now = 2000000000;
  EXPECT_FALSE(verify_totp(rfc_secret(), totp_code(rfc_secret(), now - 60), now, kNoStepAccepted)
                   .has_value());
  EXPECT_FALSE(verify_totp(rfc_secret(), totp_code(rfc_secret(), now + 60), now, kNoStepAccepted)
                   .has_value());
  EXPECT_FALSE(verify_totp(rfc_secret(), totp_code(rfc_secret(), now - 30), now, kNoStepAccepted, 0)
                   .has_value());
  EXPECT_TRUE(verify_totp(rfc_secret(), totp_code(rfc_secret(), now - 60), now, kNoStepAccepted, 2)
                  .has_value());
}

TEST(TotpTest, CodesThatAreNotExactlySixDigitsAreRefused) {
  const std::int64_t now = 1111111111;
  const std::string code = totp_code(rfc_secret(), now);
  ASSERT_TRUE(verify_totp(rfc_secret(), code, now, kNoStepAccepted).has_value());
  const std::string malformed[] = {
      "",
      code.substr(0, 5),
      code + "0",
      "14050471",  // the 8-digit value whose last six digits are the code
      " " + code.substr(1),
      code.substr(0, 3) + " " + code.substr(3, 2),
      code.substr(0, 5) + "a",
      "+" + code.substr(1),
      std::string("\0", 1) + code.substr(1),
      "\xd9\xa1" + code.substr(2),  // ARABIC-INDIC DIGIT ONE
  };
  for (const std::string& attempt : malformed) {
    SCOPED_TRACE(attempt);
    EXPECT_FALSE(verify_totp(rfc_secret(), attempt, now, kNoStepAccepted).has_value());
  }
}

TEST(TotpTest, WrongCodeIsRefused) {
  const std::int64_t now = 1111111111;
  std::string code = totp_code(rfc_secret(), now);
  code[5] = code[5] == '9' ? '0' : static_cast<char>(code[5] + 1);
  EXPECT_FALSE(verify_totp(rfc_secret(), code, now, kNoStepAccepted).has_value());
}

TEST(TotpTest, CodeForAnotherSecretIsRefused) {
  const std::int64_t now = 1111111111;
  const std::vector<std::uint8_t> other = bytes_of("12345678901234567891");
  EXPECT_FALSE(verify_totp(rfc_secret(), totp_code(other, now), now, kNoStepAccepted).has_value());
}

TEST(TotpTest, NegativeWindowIsAProgrammingError) {
  EXPECT_THROW(static_cast<void>(verify_totp(rfc_secret(), "123456", 0, kNoStepAccepted, -1)),
               std::invalid_argument);
}

TEST(TotpSecretTest, GeneratedSecretIsTwentyRandomBytesInBase32) {
  const std::string first = generate_totp_secret();
  const std::string second = generate_totp_secret();
  EXPECT_EQ(first.size(), 32u);
  EXPECT_NE(first, second);
  EXPECT_EQ(first.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), std::string::npos);
  const Expected<std::vector<std::uint8_t>> decoded = base32_decode(first);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->size(), kTotpSecretBytes);
  EXPECT_EQ(base32_encode(decoded.value()), first);
}

struct Base32Vector {
  std::string_view plain;
  std::string_view encoded;
};

// RFC 4648 section 10, without the padding.
constexpr Base32Vector kRfc4648Vectors[] = {
    {"", ""},
    {"f", "MY"},
    {"fo", "MZXQ"},
    {"foo", "MZXW6"},
    {"foob", "MZXW6YQ"},
    {"fooba", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI"},
};

TEST(Base32Test, EncodesRfc4648VectorsWithoutPadding) {
  for (const auto& [plain, encoded] : kRfc4648Vectors) {
    SCOPED_TRACE(plain);
    EXPECT_EQ(base32_encode(bytes_of(plain)), encoded);
  }
}

TEST(Base32Test, DecodesRfc4648VectorsWithAndWithoutPadding) {
  const std::string_view padded[] = {
      "", "MY======", "MZXQ====", "MZXW6===", "MZXW6YQ=", "MZXW6YTB", "MZXW6YTBOI======"};
  for (std::size_t i = 0; i < std::size(kRfc4648Vectors); ++i) {
    const auto& [plain, encoded] = kRfc4648Vectors[i];
    SCOPED_TRACE(plain);
    for (const std::string_view text : {encoded, padded[i]}) {
      const Expected<std::vector<std::uint8_t>> decoded = base32_decode(text);
      ASSERT_TRUE(decoded.ok()) << decoded.error().message;
      EXPECT_EQ(decoded.value(), bytes_of(plain));
    }
  }
}

TEST(Base32Test, AcceptsLowerCaseAndSpacesAsPeopleTypeThem) {
  const Expected<std::vector<std::uint8_t>> decoded = base32_decode("mzxw 6ytb oi");
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), bytes_of("foobar"));
}

TEST(Base32Test, RoundTripsEveryLength) {
  std::vector<std::uint8_t> bytes;
  for (int length = 0; length <= 41; ++length) {
    SCOPED_TRACE(length);
    const Expected<std::vector<std::uint8_t>> decoded = base32_decode(base32_encode(bytes));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(decoded.value(), bytes);
    bytes.push_back(static_cast<std::uint8_t>(length * 37 + 255));
  }
}

TEST(Base32Test, RefusesTextNoEncoderProduces) {
  const std::string_view invalid[] = {
      "MZXW1YTB",  // '1' is not in the alphabet
      "MZXW0YTB", "MZXW8YTB", "MZ-XW6", "MZXW6\n", "MY=A", "M", "MZX", "MZXW6Y",
  };
  for (const std::string_view text : invalid) {
    SCOPED_TRACE(text);
    const Expected<std::vector<std::uint8_t>> decoded = base32_decode(text);
    ASSERT_FALSE(decoded.ok());
    EXPECT_FALSE(decoded.error().message.empty());
  }
}

TEST(Base32Test, ErrorNamesTheBadCharacter) {
  const Expected<std::vector<std::uint8_t>> decoded = base32_decode("JBSW1");
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("'1'"), std::string::npos) << decoded.error().message;
}

TEST(OtpauthUriTest, BuildsTheKeyUriAuthenticatorsScan) {
  EXPECT_EQ(otpauth_uri("Helm", "alice@example.com", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Helm:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Helm"
            "&algorithm=SHA1&digits=6&period=30");
}

TEST(OtpauthUriTest, PercentEncodesIssuerAndAccount) {
  EXPECT_EQ(otpauth_uri("Acme MSP: Hub", "bob+ops@example.com", "JBSWY3DP"),
            "otpauth://totp/Acme%20MSP%3A%20Hub:bob%2Bops@example.com?secret=JBSWY3DP"
            "&issuer=Acme%20MSP%3A%20Hub&algorithm=SHA1&digits=6&period=30");
  EXPECT_EQ(otpauth_uri("H&b", "j\xc3\xa9@x.io", "A"),
            "otpauth://totp/H%26b:j%C3%A9@x.io?secret=A&issuer=H%26b"
            "&algorithm=SHA1&digits=6&period=30");
}

}  // namespace
}  // namespace helm::identity
