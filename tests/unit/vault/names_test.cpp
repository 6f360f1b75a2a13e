#include "helm/vault/names.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace helm::vault {
namespace {

struct NameCase {
  std::string_view text;
  bool valid;
};

TEST(OrgIdTest, AcceptsOnlyLowerCaseDnsLabelsIncludingUuids) {
  const std::string longest(63, 'a');
  const std::string too_long(64, 'a');
  const NameCase cases[] = {
      {"acme", true},
      {"acme-msp", true},
      {"a", true},
      {"0", true},
      {"3f2a9c1e-5b7d-4f4a-8c8e-0b1d3f5a7c9e", true},
      {longest, true},
      {too_long, false},
      {"", false},
      {"Acme", false},
      {"-acme", false},
      {"acme-", false},
      {"acme_msp", false},
      {"acme.msp", false},
      {"acme msp", false},
      {"acme/msp", false},
      {"3F2A9C1E-5B7D-4F4A-8C8E-0B1D3F5A7C9E", false},
      {std::string_view("ac\0me", 5), false},
  };
  for (const auto& [text, valid] : cases) {
    SCOPED_TRACE(std::string(text));
    EXPECT_EQ(is_valid_org_id(text), valid);
  }
}

TEST(SecretNameTest, AcceptsOnlyCanonicalSlashSeparatedNames) {
  const std::string longest(128, 'a');
  const std::string too_long(129, 'a');
  const NameCase cases[] = {
      {"halopsa/api-key", true},
      {"cipp/tenant.a/refresh_token", true},
      {"a", true},
      {"9", true},
      {"a..b", true},
      {"a/b.c/d", true},
      {"a/.hidden", true},
      {longest, true},
      {too_long, false},
      {"", false},
      {"/halopsa/api-key", false},
      {"halopsa/", false},
      {"halopsa//api-key", false},
      {"halopsa/../api-key", false},
      {"halopsa/..", false},
      {"halopsa/./api-key", false},
      {"halopsa/.", false},
      {".hidden", false},
      {"-flag", false},
      {"_x", false},
      {"HaloPSA/api-key", false},
      {"halopsa/api key", false},
      {"halopsa\\api-key", false},
      {"halopsa/api-key*", false},
      {"halopsa/€", false},
      {std::string_view("a\0b", 3), false},
  };
  for (const auto& [text, valid] : cases) {
    SCOPED_TRACE(std::string(text));
    EXPECT_EQ(is_valid_secret_name(text), valid);
  }
}

struct GlobCase {
  std::string_view pattern;
  std::string_view name;
  bool matches;
};

TEST(SecretGlobTest, MatchesManifestDeclaredNames) {
  const GlobCase cases[] = {
      {"halopsa/api-key", "halopsa/api-key", true},
      {"halopsa/api-key", "halopsa/api-keys", false},
      {"halopsa/*", "halopsa/api-key", true},
      {"halopsa/*", "halopsa/client-id", true},
      {"halopsa/*", "halopsa", false},
      {"halopsa/*", "halopsa/tenant/api-key", false},
      {"halopsa/*", "ninjaone/api-key", false},
      {"halopsa/*", "halopsa-evil/api-key", false},
      {"halopsa/**", "halopsa/api-key", true},
      {"halopsa/**", "halopsa/tenant/api-key", true},
      {"halopsa/**", "halopsa", false},
      {"*", "anything", true},
      {"*", "a/b", false},
      {"**", "a/b/c", true},
      {"*/api-key", "halopsa/api-key", true},
      {"*/api-key", "a/b/api-key", false},
      {"**/api-key", "a/b/api-key", true},
      {"**/api-key", "api-key", false},
      {"cipp/*/refresh-token", "cipp/tenant-a/refresh-token", true},
      {"cipp/*/refresh-token", "cipp/a/b/refresh-token", false},
      {"cipp/**/refresh-token", "cipp/a/b/refresh-token", true},
      {"key-?", "key-1", true},
      {"key-?", "key-12", false},
      {"key-?", "key-", false},
      {"a?b", "a/b", false},
      {"*-key", "api-key", true},
      {"*-key", "-key", false},  // "-key" is not a valid name, so nothing matches it
      {"a*b*c", "axxbyyc", true},
      {"a*b*c", "axxbyy", false},
      {"halopsa/*", "halopsa/../x", false},
      {"***", "a", false},
      {"HaloPSA/*", "halopsa/api-key", false},
      {"", "a", false},
  };
  for (const auto& [pattern, name, matches] : cases) {
    SCOPED_TRACE(std::string(pattern) + " ~ " + std::string(name));
    EXPECT_EQ(glob_match(pattern, name), matches);
  }
}

TEST(SecretGlobTest, ValidatesPatternSyntax) {
  const NameCase cases[] = {
      {"halopsa/*", true}, {"**", true},   {"key-?", true},         {"*", true},
      {"", false},         {"***", false}, {"halopsa/[ab]", false}, {"Halo/*", false},
  };
  for (const auto& [text, valid] : cases) {
    SCOPED_TRACE(std::string(text));
    EXPECT_EQ(is_valid_secret_glob(text), valid);
  }
}

TEST(SecretGlobTest, PathologicalPatternsFinishQuickly) {
  const std::string name(128, 'a');
  std::string pattern;
  for (int i = 0; i < 42; ++i) {
    pattern += "*a";
  }
  pattern += "b";
  EXPECT_FALSE(glob_match(pattern, name));
}

}  // namespace
}  // namespace helm::vault
