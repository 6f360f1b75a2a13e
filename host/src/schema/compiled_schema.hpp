// The compiled form of a schema: a flat array of nodes, one per subschema, that refer to each
// other by index. $ref edges are ordinary indices, so recursive schemas are simply cycles.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ecma_regex.hpp"
#include "formats.hpp"
#include "helm/schema/json_schema.hpp"

namespace helm::schema::detail {

using NodeId = std::uint32_t;

/// The JSON type of a value as error messages name it ("string", "number", "object" …).
std::string json_type_name(const nlohmann::json& value);

/// Bits of SchemaNode::types; kInteger is separate because 1.0 is an integer but "number" is not.
enum TypeBit : unsigned {
  kTypeNull = 1U << 0,
  kTypeBoolean = 1U << 1,
  kTypeObject = 1U << 2,
  kTypeArray = 1U << 3,
  kTypeNumber = 1U << 4,
  kTypeString = 1U << 5,
  kTypeInteger = 1U << 6,
};

struct PatternProperty {
  EcmaRegex pattern;
  NodeId schema;
};

/// One entry of `dependencies`: either property names that become required, or a schema the
/// whole object must then match.
struct PropertyDependency {
  std::string property;
  std::vector<std::string> required;
  std::optional<NodeId> schema;
};

/// One compiled subschema. Absent keywords are empty optionals / empty vectors.
struct SchemaNode {
  /// Where the subschema is: a JSON Pointer in the root document, "<uri>#<pointer>" elsewhere.
  std::string location;

  /// Set for the boolean schemas true and false; nothing else is then set.
  std::optional<bool> boolean;
  /// Set for a $ref; draft 7 ignores every sibling keyword, so nothing else is then set.
  std::optional<NodeId> ref;

  unsigned types = 0;  // TypeBit mask; 0 means no `type` keyword
  std::optional<nlohmann::json> enum_values;
  std::optional<nlohmann::json> const_value;

  std::optional<nlohmann::json> multiple_of;
  std::optional<nlohmann::json> maximum;
  std::optional<nlohmann::json> exclusive_maximum;
  std::optional<nlohmann::json> minimum;
  std::optional<nlohmann::json> exclusive_minimum;

  std::optional<std::uint64_t> max_length;
  std::optional<std::uint64_t> min_length;
  std::optional<EcmaRegex> pattern;
  std::optional<Format> format;
  std::string format_name;
  bool content_base64 = false;
  bool content_json = false;

  std::optional<NodeId> items;      // "items": schema
  std::vector<NodeId> tuple_items;  // "items": [schemas]
  bool has_tuple_items = false;     // distinguishes "items": [] from no items
  std::optional<NodeId> additional_items;
  std::optional<std::uint64_t> max_items;
  std::optional<std::uint64_t> min_items;
  bool unique_items = false;
  std::optional<NodeId> contains;

  std::optional<std::uint64_t> max_properties;
  std::optional<std::uint64_t> min_properties;
  std::vector<std::string> required;
  std::map<std::string, NodeId, std::less<>> properties;
  std::vector<PatternProperty> pattern_properties;
  std::optional<NodeId> additional_properties;
  std::vector<PropertyDependency> dependencies;
  std::optional<NodeId> property_names;

  std::optional<NodeId> if_schema;
  std::optional<NodeId> then_schema;
  std::optional<NodeId> else_schema;
  std::vector<NodeId> all_of;
  std::vector<NodeId> any_of;
  std::vector<NodeId> one_of;
  std::optional<NodeId> not_schema;
};

}  // namespace helm::schema::detail

namespace helm::schema {

struct JsonSchema::Compiled {
  std::vector<detail::SchemaNode> nodes;
  detail::NodeId root = 0;
  bool assert_formats = true;
  bool assert_content = true;
  std::size_t max_depth = 0;
  std::size_t max_pattern_subject_length = 0;
};

}  // namespace helm::schema
