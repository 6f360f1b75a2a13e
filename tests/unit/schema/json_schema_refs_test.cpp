// $ref and $id: JSON Pointer fragments, base URI changes, location-independent identifiers,
// recursion, other documents through the loader, and the built-in draft-07 meta-schema.
#include <map>
#include <stdexcept>
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
using ::testing::HasSubstr;
using ::testing::SizeIs;

JsonSchema compile_or_die(const json& schema, const CompileOptions& options = {}) {
  auto compiled = JsonSchema::compile(schema, options);
  if (!compiled) ADD_FAILURE() << "unexpected compile error: " << compiled.error().message;
  return std::move(compiled).value();
}

// A loader over an in-memory map that records what it was asked for.
struct FakeDocuments {
  std::map<std::string, json> documents;
  std::vector<std::string> requests;

  SchemaDocumentLoader loader() {
    return [this](const std::string& uri, json& document) {
      requests.push_back(uri);
      const auto it = documents.find(uri);
      if (it == documents.end()) return false;
      document = it->second;
      return true;
    };
  }
};

TEST(JsonSchemaRefs, PointerIntoDefinitionsResolves) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "definitions": {"port": {"type": "integer", "maximum": 65535}},
    "properties": {"listen": {"$ref": "#/definitions/port"}}
  })"));
  EXPECT_TRUE(schema.is_valid({{"listen", 8080}}));
  EXPECT_THAT(schema.validate({{"listen", 70000}}),
              ElementsAre(ValidationError{"/listen", "/definitions/port/maximum",
                                          "must be at most 65535, got 70000"}));
}

TEST(JsonSchemaRefs, SiblingsOfRefAreIgnored) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "definitions": {"list": {"type": "array"}},
    "$ref": "#/definitions/list",
    "maxItems": 1
  })"));
  EXPECT_TRUE(schema.is_valid({1, 2, 3}));
  EXPECT_FALSE(schema.is_valid("not a list"));
}

TEST(JsonSchemaRefs, EscapedAndPercentEncodedPointersResolve) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "definitions": {"a/b": {"type": "integer"}, "c~d": {"type": "string"},
                    "e%f": {"type": "boolean"}},
    "properties": {
      "slash": {"$ref": "#/definitions/a~1b"},
      "tilde": {"$ref": "#/definitions/c~0d"},
      "percent": {"$ref": "#/definitions/e%25f"}
    }
  })"));
  EXPECT_TRUE(schema.is_valid({{"slash", 1}, {"tilde", "x"}, {"percent", true}}));
  EXPECT_FALSE(schema.is_valid({{"slash", "x"}}));
  EXPECT_FALSE(schema.is_valid({{"tilde", 1}}));
  EXPECT_FALSE(schema.is_valid({{"percent", 1}}));
}

TEST(JsonSchemaRefs, LocationIndependentIdentifierResolves) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "allOf": [{"$ref": "#positive"}],
    "definitions": {"whatever": {"$id": "#positive", "minimum": 1}}
  })"));
  EXPECT_TRUE(schema.is_valid(3));
  EXPECT_FALSE(schema.is_valid(0));
}

TEST(JsonSchemaRefs, PlainNameIdInsideResourceIsScopedToThatResource) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "$id": "https://helm.example/root.json",
    "properties": {
      "a": {"$ref": "#word"},
      "b": {"$ref": "https://helm.example/root.json#word"},
      "c": {"$ref": "other.json#word"}
    },
    "definitions": {
      "word": {"$id": "#word", "type": "string"},
      "other": {"$id": "other.json", "definitions": {"w": {"$id": "#word", "type": "integer"}}}
    }
  })"));
  EXPECT_TRUE(schema.is_valid({{"a", "x"}, {"b", "y"}, {"c", 3}}));
  EXPECT_FALSE(schema.is_valid({{"c", "x"}}));
  EXPECT_FALSE(schema.is_valid({{"b", 3}}));
}

TEST(JsonSchemaRefs, IdChangesTheBaseForRelativeRefs) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "$id": "https://helm.example/schemas/root.json",
    "items": {"$ref": "types/port.json"},
    "definitions": {
      "port": {"$id": "types/port.json", "type": "integer"},
      "decoy": {"$id": "https://elsewhere.example/types/port.json", "type": "string"}
    }
  })"));
  EXPECT_TRUE(schema.is_valid({1, 2}));
  EXPECT_FALSE(schema.is_valid({"1"}));
}

TEST(JsonSchemaRefs, RecursiveRefValidatesATree) {
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "definitions": {
      "node": {"type": "object", "required": ["name"],
               "properties": {"name": {"type": "string"},
                              "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}
    },
    "$ref": "#/definitions/node"
  })"));
  EXPECT_TRUE(schema.is_valid(json::parse(
      R"({"name": "root", "children": [{"name": "a"}, {"name": "b", "children": [{"name": "c"}]}]})")));
  EXPECT_THAT(schema.validate(json::parse(
                  R"({"name": "root", "children": [{"name": "a", "children": [{}]}]})")),
              ElementsAre(ValidationError{"/children/0/children/0/name",
                                          "/definitions/node/required", "is required"}));
}

TEST(JsonSchemaRefs, UnresolvablePointerIsACompileError) {
  const auto result = JsonSchema::compile({{"properties", {{"a", {{"$ref", "#/definitions/x"}}}}}});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().schema_path, "/properties/a/$ref");
  EXPECT_THAT(result.error().message, HasSubstr("points to nothing"));
}

TEST(JsonSchemaRefs, UnknownPlainNameIsACompileError) {
  const auto result = JsonSchema::compile({{"$ref", "#nowhere"}});
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("no schema declares \"$id\": \"#nowhere\""));
}

TEST(JsonSchemaRefs, OtherDocumentWithoutLoaderIsACompileError) {
  const auto result = JsonSchema::compile({{"$ref", "https://helm.example/common.json"}});
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("no document loader is configured"));
}

TEST(JsonSchemaRefs, LoaderServesOtherDocumentsOncePerDocument) {
  FakeDocuments remote;
  remote.documents["https://helm.example/common.json"] =
      json::parse(R"({"definitions": {"port": {"type": "integer", "maximum": 65535},
                                       "host": {"type": "string"}}})");
  CompileOptions options;
  options.loader = remote.loader();
  const JsonSchema schema = compile_or_die(json::parse(R"({
    "properties": {
      "port": {"$ref": "https://helm.example/common.json#/definitions/port"},
      "host": {"$ref": "https://helm.example/common.json#/definitions/host"}
    }
  })"),
                                           options);
  EXPECT_THAT(remote.requests, ElementsAre("https://helm.example/common.json"));
  EXPECT_TRUE(schema.is_valid({{"port", 80}, {"host", "h"}}));
  // Errors inside another document carry its URI so the user knows which file to open.
  EXPECT_THAT(schema.validate({{"port", 70000}}),
              ElementsAre(ValidationError{
                  "/port", "https://helm.example/common.json#/definitions/port/maximum",
                  "must be at most 65535, got 70000"}));
}

TEST(JsonSchemaRefs, BaseUriOptionAnchorsRelativeRefs) {
  FakeDocuments remote;
  remote.documents["https://helm.example/common/port.json"] = {{"type", "integer"}};
  CompileOptions options;
  options.base_uri = "https://helm.example/plugins/weather/config.json";
  options.loader = remote.loader();
  const JsonSchema schema = compile_or_die({{"$ref", "../../common/port.json"}}, options);
  EXPECT_THAT(remote.requests, ElementsAre("https://helm.example/common/port.json"));
  EXPECT_FALSE(schema.is_valid("80"));
}

TEST(JsonSchemaRefs, LoaderThatThrowsBecomesACompileError) {
  CompileOptions options;
  options.loader = [](const std::string&, json&) -> bool {
    throw std::runtime_error("disk on fire");
  };
  const auto result = JsonSchema::compile({{"$ref", "https://helm.example/x.json"}}, options);
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("disk on fire"));
}

TEST(JsonSchemaRefs, Draft7MetaSchemaIsBuiltIn) {
  const JsonSchema meta = compile_or_die({{"$ref", "http://json-schema.org/draft-07/schema#"}});
  EXPECT_TRUE(meta.is_valid(json::parse(R"({"type": "object", "required": ["a"]})")));
  const auto errors = meta.validate(json::parse(R"({"minLength": -1})"));
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_EQ(errors[0].instance_path, "/minLength");
  EXPECT_EQ(errors[0].schema_path,
            "http://json-schema.org/draft-07/schema#/definitions/nonNegativeInteger/minimum");
}

TEST(JsonSchemaRefs, IdInsideEnumDataIsNotAnIdentifier) {
  const auto result = JsonSchema::compile(json::parse(R"({
    "enum": [{"$id": "#fake"}],
    "not": {"$ref": "#fake"}
  })"));
  EXPECT_FALSE(result);
}

}  // namespace
}  // namespace helm::schema
