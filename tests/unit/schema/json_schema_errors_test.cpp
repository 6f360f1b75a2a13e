// What users see when validation fails: instance paths, schema paths and messages, plus compile
// errors for broken schemas and the guards against pathological schemas and instances.
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "helm/schema/json_schema.hpp"

namespace helm::schema {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

JsonSchema compile_or_die(const json& schema, const CompileOptions& options = {}) {
  auto compiled = JsonSchema::compile(schema, options);
  if (!compiled) ADD_FAILURE() << "unexpected compile error: " << compiled.error().message;
  return std::move(compiled).value();
}

std::vector<ValidationError> errors_for(const json& schema, const json& instance) {
  return compile_or_die(schema).validate(instance);
}

TEST(JsonSchemaErrors, RequiredPropertyMissingNamesThePath) {
  const json schema = {
      {"properties", {{"config", {{"type", "object"}, {"required", {"base_url", "token"}}}}}}};
  EXPECT_THAT(errors_for(schema, {{"config", {{"token", "t"}}}}),
              ElementsAre(ValidationError{"/config/base_url", "/properties/config/required",
                                          "is required"}));
}

TEST(JsonSchemaErrors, TypeMismatchSaysWhatWasExpectedAndWhatArrived) {
  EXPECT_THAT(errors_for({{"type", "string"}}, 5),
              ElementsAre(ValidationError{"", "/type", "must be a string, got number"}));
}

TEST(JsonSchemaErrors, SeveralAllowedTypesAreJoinedWithOr) {
  const auto errors = errors_for({{"type", {"string", "null"}}}, true);
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message, "must be a string or null, got boolean");
}

TEST(JsonSchemaErrors, IntegerAcceptsWholeFloatsOnly) {
  const JsonSchema schema = compile_or_die({{"type", "integer"}});
  EXPECT_TRUE(schema.is_valid(json::parse("1.0")));
  EXPECT_TRUE(schema.is_valid(json::parse("-7")));
  EXPECT_THAT(schema.validate(1.5),
              ElementsAre(ValidationError{"", "/type", "must be an integer, got number"}));
}

TEST(JsonSchemaErrors, EnumMismatchListsTheAllowedValues) {
  const auto errors = errors_for({{"enum", {"debug", "info", 3}}}, "trace");
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message, R"(must be one of ["debug", "info", 3])");
  EXPECT_EQ(errors[0].schema_path, "/enum");
}

TEST(JsonSchemaErrors, EnumAndConstCompareNumbersByValue) {
  EXPECT_TRUE(compile_or_die({{"enum", {1, "x"}}}).is_valid(json::parse("1.0")));
  EXPECT_TRUE(compile_or_die({{"const", {{"a", {1}}}}}).is_valid(json::parse(R"({"a":[1.0]})")));
  EXPECT_FALSE(compile_or_die({{"const", false}}).is_valid(0));
}

TEST(JsonSchemaErrors, ConstMismatchShowsTheConstant) {
  const auto errors = errors_for({{"const", "prod"}}, "dev");
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message, R"(must equal "prod")");
}

TEST(JsonSchemaErrors, AdditionalPropertyIsNamedInTheMessage) {
  const json schema = {{"properties", {{"name", {{"type", "string"}}}}},
                       {"additionalProperties", false}};
  EXPECT_THAT(errors_for(schema, {{"name", "x"}, {"foo", 1}}),
              ElementsAre(ValidationError{"/foo", "/additionalProperties",
                                          "additional property 'foo' is not allowed"}));
}

TEST(JsonSchemaErrors, PatternPropertiesAreNotAdditional) {
  const json schema = {{"patternProperties", {{"^x-", true}}}, {"additionalProperties", false}};
  const JsonSchema compiled = compile_or_die(schema);
  EXPECT_TRUE(compiled.is_valid({{"x-trace", 1}}));
  EXPECT_FALSE(compiled.is_valid({{"trace", 1}}));
}

TEST(JsonSchemaErrors, ArrayItemsAppearAsIndicesInThePath) {
  const json schema = {
      {"properties",
       {{"servers", {{"items", {{"properties", {{"port", {{"maximum", 65535}}}}}}}}}}}};
  const json instance = {{"servers", {{{"port", 80}}, {{"port", 70000}}}}};
  EXPECT_THAT(errors_for(schema, instance),
              ElementsAre(ValidationError{"/servers/1/port",
                                          "/properties/servers/items/properties/port/maximum",
                                          "must be at most 65535, got 70000"}));
}

TEST(JsonSchemaErrors, PathTokensAreEscapedAsJsonPointer) {
  const json schema = {{"properties", {{"a/b~c", {{"type", "integer"}}}}}};
  const auto errors = errors_for(schema, {{"a/b~c", "x"}});
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].instance_path, "/a~1b~0c");
  EXPECT_EQ(errors[0].schema_path, "/properties/a~1b~0c/type");
}

TEST(JsonSchemaErrors, NumericBoundsStateTheLimitAndTheValue) {
  EXPECT_EQ(errors_for({{"minimum", 1}}, 0).at(0).message, "must be at least 1, got 0");
  EXPECT_EQ(errors_for({{"exclusiveMaximum", 10}}, 10).at(0).message,
            "must be less than 10, got 10");
  EXPECT_EQ(errors_for({{"exclusiveMinimum", 0}}, 0).at(0).message,
            "must be greater than 0, got 0");
}

TEST(JsonSchemaErrors, LargeIntegersCompareExactly) {
  // 2^53 + 1 is not representable as a double; a double-based comparison would call it equal.
  const JsonSchema schema = compile_or_die({{"maximum", 9007199254740992ULL}});
  EXPECT_TRUE(schema.is_valid(9007199254740992ULL));
  EXPECT_FALSE(schema.is_valid(9007199254740993ULL));
  EXPECT_FALSE(compile_or_die({{"multipleOf", 2}}).is_valid(9007199254740993ULL));
}

TEST(JsonSchemaErrors, MultipleOfToleratesBinaryFractions) {
  EXPECT_TRUE(compile_or_die({{"multipleOf", 0.1}}).is_valid(0.3));
  EXPECT_TRUE(compile_or_die({{"multipleOf", 0.01}}).is_valid(19.99));
  EXPECT_FALSE(compile_or_die({{"multipleOf", 0.1}}).is_valid(0.35));
  EXPECT_EQ(errors_for({{"multipleOf", 0.5}}, 1.2).at(0).message,
            "must be a multiple of 0.5, got 1.2");
}

TEST(JsonSchemaErrors, MaxLengthCountsCodePointsNotBytes) {
  const JsonSchema schema = compile_or_die({{"maxLength", 3}});
  EXPECT_TRUE(schema.is_valid("\xC3\xA9\xC3\xA9\xC3\xA9"));  // "ééé": 6 bytes, 3 code points
  EXPECT_THAT(
      schema.validate("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"),
      ElementsAre(ValidationError{"", "/maxLength", "must be at most 3 characters long, got 4"}));
  EXPECT_EQ(errors_for({{"minLength", 1}}, "").at(0).message,
            "must be at least 1 character long, got 0");
}

TEST(JsonSchemaErrors, PatternIsNotAnchored) {
  const JsonSchema schema = compile_or_die({{"pattern", "a+"}});
  EXPECT_TRUE(schema.is_valid("xxaxx"));
  EXPECT_EQ(schema.validate("xyz").at(0).message, "must match the pattern 'a+'");
}

TEST(JsonSchemaErrors, PatternMatchesCodePoints) {
  const JsonSchema schema = compile_or_die({{"pattern", "^.$"}});
  EXPECT_TRUE(schema.is_valid("\xE2\x82\xAC"));  // "€" is one code point, three bytes
}

TEST(JsonSchemaErrors, OverlongStringFailsPatternInsteadOfOverflowingTheStack) {
  const std::string huge(200000, 'a');
  const auto errors = errors_for({{"pattern", "^(a|b)*$"}}, huge);
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_THAT(errors[0].message, HasSubstr("too long to check against the pattern"));

  CompileOptions options;
  options.max_pattern_subject_length = 5000;
  EXPECT_TRUE(compile_or_die({{"pattern", "^(a|b)*$"}}, options).is_valid(std::string(5000, 'a')));
}

TEST(JsonSchemaErrors, UniqueItemsTreatsOneAndOnePointZeroAsEqual) {
  const auto errors = errors_for({{"uniqueItems", true}}, json::parse("[1, 2, 1.0]"));
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message, "must not contain duplicates, but items 0 and 2 are equal");
  EXPECT_TRUE(compile_or_die({{"uniqueItems", true}}).is_valid(json::parse("[1, true, \"1\"]")));
}

TEST(JsonSchemaErrors, ArraySizeAndTupleLimitsAreExplained) {
  EXPECT_EQ(errors_for({{"maxItems", 1}}, {1, 2}).at(0).message, "must have at most 1 item, got 2");
  const auto errors =
      errors_for({{"items", {{{"type", "string"}}}}, {"additionalItems", false}}, {"a", "b"});
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].instance_path, "/1");
  EXPECT_EQ(errors[0].message, "is not allowed: the array may have at most 1 item, got 2");
}

TEST(JsonSchemaErrors, ContainsFailureSaysNoItemMatched) {
  EXPECT_EQ(errors_for({{"contains", {{"const", 5}}}}, {1, 2}).at(0).message,
            "must contain at least one item that matches the 'contains' schema");
}

TEST(JsonSchemaErrors, AnyOfFailureSummarisesEachOption) {
  const auto errors = errors_for({{"anyOf", {{{"type", "string"}}, {{"type", "null"}}}}}, 3);
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message,
            "must match at least one schema in anyOf (anyOf/0: must be a string, got number; "
            "anyOf/1: must be null, got number)");
}

TEST(JsonSchemaErrors, OneOfReportsWhichSchemasMatched) {
  const auto errors = errors_for({{"oneOf", {{{"minimum", 0}}, {{"maximum", 10}}}}}, 5);
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].message,
            "must match exactly one schema in oneOf, but matches oneOf/0 and oneOf/1");
}

TEST(JsonSchemaErrors, NotAndFalseSchemasExplainThemselves) {
  EXPECT_EQ(errors_for({{"not", {{"type", "null"}}}}, nullptr).at(0).message,
            "must not match the schema in 'not'");
  EXPECT_THAT(errors_for({{"properties", {{"legacy", false}}}}, {{"legacy", 1}}),
              ElementsAre(ValidationError{"/legacy", "/properties/legacy",
                                          "is not allowed here (schema false)"}));
}

TEST(JsonSchemaErrors, IfThenElseReportsTheBranchTaken) {
  const json schema = {{"if", {{"properties", {{"kind", {{"const", "tcp"}}}}}}},
                       {"then", {{"required", {"port"}}}},
                       {"else", {{"required", {"path"}}}}};
  EXPECT_THAT(errors_for(schema, {{"kind", "tcp"}}),
              ElementsAre(ValidationError{"/port", "/then/required", "is required"}));
  EXPECT_THAT(errors_for(schema, {{"kind", "unix"}}),
              ElementsAre(ValidationError{"/path", "/else/required", "is required"}));
}

TEST(JsonSchemaErrors, DependencyNamesTheTriggeringProperty) {
  const json schema = {{"dependencies", {{"tls_cert", {"tls_key"}}}}};
  EXPECT_THAT(errors_for(schema, {{"tls_cert", "a.pem"}}),
              ElementsAre(ValidationError{"/tls_key", "/dependencies",
                                          "is required when 'tls_cert' is present"}));
}

TEST(JsonSchemaErrors, PropertyNameErrorsQuoteTheName) {
  const json schema = {{"propertyNames", {{"pattern", "^[a-z_]+$"}}}};
  EXPECT_THAT(errors_for(schema, {{"Bad-Key", 1}}),
              ElementsAre(ValidationError{"/Bad-Key", "/propertyNames/pattern",
                                          "property name 'Bad-Key' must match the pattern "
                                          "'^[a-z_]+$'"}));
}

TEST(JsonSchemaErrors, ValidateCollectsEveryFailure) {
  const json schema = {
      {"type", "object"}, {"required", {"a", "b"}}, {"properties", {{"c", {{"type", "string"}}}}}};
  const JsonSchema compiled = compile_or_die(schema);
  const json instance = {{"c", 1}};
  EXPECT_THAT(compiled.validate(instance), SizeIs(3));
  EXPECT_FALSE(compiled.is_valid(instance));
}

TEST(JsonSchemaErrors, RefCycleWithoutProgressReportsAnErrorInsteadOfOverflowing) {
  for (const char* text :
       {R"({"$ref": "#"})", R"({"anyOf": [{"$ref": "#"}]})", R"({"not": {"$ref": "#"}})",
        R"({"definitions": {"a": {"$ref": "#/definitions/b"},
                                               "b": {"$ref": "#/definitions/a"}},
                               "$ref": "#/definitions/a"})"}) {
    const JsonSchema schema = compile_or_die(json::parse(text));
    EXPECT_FALSE(schema.is_valid(1)) << text;
    const auto errors = schema.validate(1);
    ASSERT_THAT(errors, SizeIs(1)) << text;
    EXPECT_THAT(errors[0].message, HasSubstr("$ref cycle")) << text;
  }
}

TEST(JsonSchemaErrors, DeeplyNestedInstanceHitsTheDepthLimitGracefully) {
  json instance = json::array();
  for (int i = 0; i < 20000; ++i)
    instance = json::array({std::move(instance)});
  const JsonSchema schema = compile_or_die({{"items", {{"$ref", "#"}}}});
  EXPECT_FALSE(schema.is_valid(instance));
  EXPECT_THAT(schema.validate(instance).at(0).message, HasSubstr("gave up after 256"));

  CompileOptions options;
  options.max_depth = 2000;
  json shallow = json::array();
  for (int i = 0; i < 500; ++i)
    shallow = json::array({std::move(shallow)});
  EXPECT_TRUE(compile_or_die({{"items", {{"$ref", "#"}}}}, options).is_valid(shallow));
}

TEST(JsonSchemaErrors, CopiesValidateConcurrently) {
  const JsonSchema schema = compile_or_die({{"properties", {{"n", {{"type", "integer"}}}}}});
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([copy = schema, &slot = failures[t]] {
      for (int i = 0; i < 500; ++i) {
        if (!copy.is_valid({{"n", i}}) || copy.is_valid({{"n", "x"}})) ++slot;
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  EXPECT_THAT(failures, ElementsAre(0, 0, 0, 0));
}

// --- compile errors ---------------------------------------------------------------------------

TEST(JsonSchemaCompileErrors, InvalidKeywordValueNamesThePath) {
  const auto result = JsonSchema::compile({{"properties", {{"port", {{"minimum", "1"}}}}}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().schema_path, "/properties/port/minimum");
  EXPECT_EQ(result.error().message,
            "invalid schema at /properties/port/minimum: must be a number, got string");
}

TEST(JsonSchemaCompileErrors, UnknownTypeNameIsRejected) {
  const auto result = JsonSchema::compile({{"type", "int"}});
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("unknown type 'int'"));
}

TEST(JsonSchemaCompileErrors, NegativeLengthIsRejected) {
  const auto result = JsonSchema::compile({{"minLength", -1}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message,
            "invalid schema at /minLength: must be a non-negative integer, got -1");
}

TEST(JsonSchemaCompileErrors, MalformedPatternIsRejected) {
  const auto result = JsonSchema::compile({{"properties", {{"id", {{"pattern", "^(abc]"}}}}}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().schema_path, "/properties/id/pattern");
  EXPECT_THAT(result.error().message, HasSubstr("not a valid ECMA 262 regular expression"));
}

TEST(JsonSchemaCompileErrors, RegexFeatureTheEngineLacksIsRejectedRatherThanMisread) {
  const auto result = JsonSchema::compile({{"pattern", "(?<=a)b"}});  // lookbehind
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("cannot run"));
}

TEST(JsonSchemaCompileErrors, NonSchemaValueIsRejected) {
  EXPECT_FALSE(JsonSchema::compile(42));
  const auto result = JsonSchema::compile({{"items", {1}}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().schema_path, "/items/0");
}

TEST(JsonSchemaCompileErrors, OtherDraftsAreRejectedByName) {
  const auto result =
      JsonSchema::compile({{"$schema", "https://json-schema.org/draft/2020-12/schema"}});
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("implements draft 7 only"));
  EXPECT_TRUE(JsonSchema::compile({{"$schema", "http://json-schema.org/draft-07/schema#"}}));
}

TEST(JsonSchemaCompileErrors, EmptyCombinatorIsRejected) {
  const auto result = JsonSchema::compile({{"anyOf", json::array()}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().schema_path, "/anyOf");
}

}  // namespace
}  // namespace helm::schema
