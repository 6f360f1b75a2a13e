// The `format` assertions and the content keywords, one behaviour per test.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "helm/schema/json_schema.hpp"

namespace helm::schema {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;

JsonSchema format_schema(const std::string& format, const CompileOptions& options = {}) {
  auto compiled = JsonSchema::compile({{"format", format}}, options);
  if (!compiled) ADD_FAILURE() << compiled.error().message;
  return std::move(compiled).value();
}

// Expects every value in `valid` to pass and every value in `invalid` to fail `format`.
void expect_format(const std::string& format, const std::vector<std::string>& valid,
                   const std::vector<std::string>& invalid) {
  const JsonSchema schema = format_schema(format);
  for (const auto& value : valid)
    EXPECT_TRUE(schema.is_valid(value)) << format << ": " << value;
  for (const auto& value : invalid) {
    EXPECT_FALSE(schema.is_valid(value)) << format << ": " << value;
  }
}

TEST(JsonSchemaFormats, UnknownFormatPasses) {
  EXPECT_TRUE(format_schema("semver-ish").is_valid("anything"));
}

TEST(JsonSchemaFormats, FormatsOnlyApplyToStrings) {
  EXPECT_TRUE(format_schema("ipv4").is_valid(12));
}

TEST(JsonSchemaFormats, FormatAssertionCanBeTurnedOff) {
  CompileOptions options;
  options.assert_formats = false;
  EXPECT_TRUE(format_schema("date", options).is_valid("yesterday"));
}

TEST(JsonSchemaFormats, FailureNamesTheFormat) {
  EXPECT_THAT(format_schema("date-time").validate("tomorrow"),
              ElementsAre(ValidationError{"", "/format", "must be a valid date-time"}));
  EXPECT_EQ(format_schema("email").validate("nobody").at(0).message, "must be a valid email");
}

TEST(JsonSchemaFormats, DateTimeFollowsRfc3339) {
  expect_format("date-time",
                {"2024-02-29T12:00:00Z", "1990-12-31T15:59:50.123-08:00", "1998-12-31T23:59:60Z",
                 "1998-12-31t15:59:60-08:00"},
                {"2023-02-29T12:00:00Z", "2024-01-01 12:00:00Z", "2024-01-01T12:00:00",
                 "2024-01-01T24:00:00Z", "2024-01-01T12:00:60Z", "2024-01-01T12:00:00+24:00"});
  expect_format("date", {"2000-02-29", "1963-06-19"}, {"1900-02-29", "2024-13-01", "2024-1-01"});
  expect_format("time", {"08:30:06.283185Z", "23:59:60Z", "00:00:00+05:30"},
                {"08:30:06", "8:30:06Z", "01:01:01,1111Z"});
}

TEST(JsonSchemaFormats, EmailNeedsALocalPartAndADomain) {
  expect_format(
      "email",
      {"joe.bloggs@example.com", "\"joe bloggs\"@example.com", "a@[127.0.0.1]", "a@[IPv6:::1]"},
      {"2962", "@example.com", "joe@", ".joe@example.com", "jo..e@example.com",
       "joe@exa_mple.com"});
  expect_format("idn-email", {"\xEC\x8B\xA4\xEB\xA1\x80@example.com"}, {"2962"});
}

TEST(JsonSchemaFormats, HostnameLimitsLabels) {
  expect_format("hostname", {"www.example.com", "localhost", "xn--4gbwdl.xn--wgbh1c", "a.b."},
                {"", "-leading.example", "trailing-.example", "under_score.example",
                 std::string(64, 'a') + ".example", "a..b"});
}

TEST(JsonSchemaFormats, IdnHostnameAppliesIdna2008Rules) {
  expect_format("idn-hostname",
                {"\xEC\x8B\xA4\xEB\xA1\x80.\xED\x85\x8C\xEC\x8A\xA4\xED\x8A\xB8",  // 실례.테스트
                 "b\xC3\xBC"
                 "cher.example"},                              // bücher
                {"\xE3\x80\xAE\xEC\x8B\xA4\xEB\xA1\x80.test",  // starts with a combining mark
                 "\xE2\x98\x83.example"});                     // U+2603 SNOWMAN is DISALLOWED
}

TEST(JsonSchemaFormats, IpAddressesUseStrictTextForms) {
  expect_format("ipv4", {"192.168.0.1", "0.0.0.0"},
                {"256.1.1.1", "1.2.3", "01.2.3.4", "0x7f000001", "1.2.3.4.5"});
  expect_format("ipv6", {"::1", "::", "2001:db8::7", "::ffff:192.168.0.1", "1:2:3:4:5:6:7:8"},
                {"12345::", "1:2:3:4:5:6:7:8:9", "::laptop", "1::2::3", ":1:2"});
}

TEST(JsonSchemaFormats, UriRequiresASchemeButUriReferenceDoesNot) {
  expect_format("uri",
                {"http://foo.bar/?baz=qux#quux", "urn:oasis:names:specification",
                 "ldap://[2001:db8::7]/c=GB?objectClass?one", "mailto:John.Doe@example.com"},
                {"/abc", "//foo.bar/", "http:// shouldfail.com", "\\\\WINDOWS\\share",
                 "http://h\xC3\xA9.example/"});
  expect_format("uri-reference", {"/abc", "abc", "#fragment", "//foo.bar/?q"},
                {"#frag\\ment", "\\\\WINDOWS\\share"});
  expect_format("iri", {"http://h\xC3\xA9.example/\xCF\x80"}, {"/abc"});
  expect_format("uri-template", {"http://example.com/{user}/repos{?page,per_page}"},
                {"http://example.com/{user", "http://example.com/{us er}"});
}

TEST(JsonSchemaFormats, JsonPointersRequireEscapedTildes) {
  expect_format("json-pointer", {"", "/", "/a~0b/c~1d", "/foo//bar"}, {"a", "/~2", "/~", "#/a"});
  expect_format("relative-json-pointer", {"0", "1/a", "2#"}, {"/a", "01", "-1"});
}

TEST(JsonSchemaFormats, RegexFormatUsesEcma262Syntax) {
  expect_format("regex", {"^[a-z]+$", "(?<year>\\d{4})", "\\p{L}+", "a{2,3}?"},
                {"^(abc]", "\\Z", "a{3,2}", "*a", "[z-a]", "(?<n>a)(?<n>b)"});
}

TEST(JsonSchemaFormats, ContentEncodingAndMediaTypeAreChecked) {
  const auto schema = JsonSchema::compile(
      {{"contentEncoding", "base64"}, {"contentMediaType", "application/json"}});
  ASSERT_TRUE(schema);
  EXPECT_TRUE(schema->is_valid("eyJmb28iOiAiYmFyIn0K"));  // {"foo": "bar"}
  EXPECT_EQ(schema->validate("ezp9Cg==").at(0).message, "must contain a JSON document");
  EXPECT_EQ(schema->validate("%%%%").at(0).message, "must be base64-encoded");
}

}  // namespace
}  // namespace helm::schema
