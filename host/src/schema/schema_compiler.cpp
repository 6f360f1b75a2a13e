#include "schema_compiler.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "draft7_metaschema.hpp"
#include "uri.hpp"

namespace helm::schema::detail {

namespace {

using nlohmann::json;

// Deeper nesting than this in a schema document is refused rather than recursed into.
constexpr int kMaxSchemaNesting = 512;

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (const char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Splits an RFC 6901 pointer into unescaped tokens; nullopt if it is malformed.
std::optional<std::vector<std::string>> split_pointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') return std::nullopt;
  std::size_t start = 1;
  while (true) {
    const std::size_t slash = pointer.find('/', start);
    const std::string_view raw = pointer.substr(start, slash - start);
    std::string token;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '~') {
        token.push_back(raw[i]);
      } else if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        return std::nullopt;
      }
    }
    tokens.push_back(std::move(token));
    if (slash == std::string_view::npos) return tokens;
    start = slash + 1;
  }
}

// The child of `value` named by one pointer token, or null.
const json* step(const json& value, const std::string& token) {
  if (value.is_object()) {
    const auto it = value.find(token);
    return it == value.end() ? nullptr : &*it;
  }
  if (value.is_array()) {
    if (token.empty() || token.size() > 18 || (token.size() > 1 && token.front() == '0')) {
      return nullptr;
    }
    std::size_t index = 0;
    for (const char c : token) {
      if (c < '0' || c > '9') return nullptr;
      index = index * 10 + static_cast<std::size_t>(c - '0');
    }
    return index < value.size() ? &value[index] : nullptr;
  }
  return nullptr;
}

bool is_schema_value(const json& value) {
  return value.is_object() || value.is_boolean();
}

bool is_supported_metaschema(std::string_view uri) {
  return uri == "http://json-schema.org/draft-07/schema#" ||
         uri == "http://json-schema.org/draft-07/schema" ||
         uri == "https://json-schema.org/draft-07/schema#" ||
         uri == "https://json-schema.org/draft-07/schema";
}

// Whether the $id `id` names a resource (has something besides a fragment), as opposed to being a
// plain-name fragment like "#foo" that only labels a location inside the current resource.
bool id_names_resource(std::string_view id) {
  const UriParts parts = split_uri(id);
  return parts.scheme || parts.authority || !parts.path.empty() || parts.query;
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const CompileOptions& options) : options_(options) {}

  Result<std::shared_ptr<const JsonSchema::Compiled>> run(const json& schema) {
    const std::size_t root_document = add_document(strip_fragment(options_.base_uri), schema);
    if (schema.is_object()) {
      const auto declared = schema.find("$schema");
      if (declared != schema.end()) {
        if (!declared->is_string()) {
          fail("/$schema", "must be a string, got " + json_type_name(*declared));
        } else if (!is_supported_metaschema(declared->get_ref<const std::string&>())) {
          fail("/$schema", "names '" + declared->get<std::string>() +
                               "', but this validator implements draft 7 only "
                               "(http://json-schema.org/draft-07/schema#)");
        }
      }
    }
    const NodeId root = compile_at({root_document, ""}, documents_[root_document].uri, 0);
    while (!error_ && !pending_refs_.empty()) {
      const PendingRef pending = std::move(pending_refs_.front());
      pending_refs_.pop_front();
      if (const auto target = resolve(pending)) nodes_[pending.node].ref = *target;
    }
    if (error_) return *error_;

    auto compiled = std::make_shared<JsonSchema::Compiled>();
    compiled->nodes = std::move(nodes_);
    compiled->root = root;
    compiled->assert_formats = options_.assert_formats;
    compiled->assert_content = options_.assert_content;
    compiled->max_depth = options_.max_depth;
    compiled->max_pattern_subject_length = options_.max_pattern_subject_length;
    return std::shared_ptr<const JsonSchema::Compiled>(std::move(compiled));
  }

 private:
  struct Document {
    std::string uri;  // without fragment; "" for an id-less root document
    json root;
  };

  struct Location {
    std::size_t document;
    std::string pointer;  // escaped RFC 6901 pointer into the document

    bool operator<(const Location& other) const {
      return std::tie(document, pointer) < std::tie(other.document, other.pointer);
    }
  };

  struct PendingRef {
    NodeId node;
    std::string target;  // the $ref resolved against its base URI
    std::string text;    // the $ref as written
    std::string path;    // where the $ref keyword is, for messages
  };

  // --- errors ---------------------------------------------------------------------------------

  std::string display_path(const std::string& path) const { return path.empty() ? "#" : path; }

  // Records the first error; `path` is already in display form for this document.
  void fail(const std::string& path, const std::string& what) {
    if (error_) return;
    error_ = SchemaError{path, "invalid schema at " + display_path(path) + ": " + what};
  }

  std::string location_text(const Location& location) const {
    if (location.document == 0) return location.pointer;
    return documents_[location.document].uri + "#" + location.pointer;
  }

  // --- documents and identifiers ----------------------------------------------------------------

  std::size_t add_document(std::string uri, json root) {
    documents_.push_back({uri, std::move(root)});
    const std::size_t index = documents_.size() - 1;
    ids_.emplace(uri, Location{index, ""});
    index_ids(index, documents_[index].root, "", uri, 0);
    return index;
  }

  // Records every $id in the document so $refs can find them: absolute ids as resources, "#name"
  // ids as plain-name fragments. Walks only keywords that hold subschemas, so an "$id" inside
  // `enum` or `const` data is not mistaken for one.
  void index_ids(std::size_t document, const json& schema, const std::string& pointer,
                 std::string base, int depth) {
    if (!schema.is_object() || depth > kMaxSchemaNesting) return;
    const auto id = schema.find("$id");
    if (id != schema.end() && id->is_string() && !schema.contains("$ref")) {
      const std::string& id_text = id->get_ref<const std::string&>();
      const std::string resolved = resolve_uri(base, id_text);
      if (id_names_resource(id_text)) {
        base = strip_fragment(resolved);
        ids_.emplace(base, Location{document, pointer});
      }
      const std::size_t hash = resolved.find('#');
      if (hash != std::string::npos && hash + 1 < resolved.size() && resolved[hash + 1] != '/') {
        ids_.emplace(resolved, Location{document, pointer});
      }
    }
    for (const char* keyword : {"additionalItems", "items", "contains", "additionalProperties",
                                "propertyNames", "if", "then", "else", "not"}) {
      const auto it = schema.find(keyword);
      if (it == schema.end()) continue;
      const std::string child = pointer + "/" + keyword;
      if (it->is_array()) {
        for (std::size_t i = 0; i < it->size(); ++i) {
          index_ids(document, (*it)[i], child + "/" + std::to_string(i), base, depth + 1);
        }
      } else {
        index_ids(document, *it, child, base, depth + 1);
      }
    }
    for (const char* keyword : {"properties", "patternProperties", "definitions", "dependencies"}) {
      const auto it = schema.find(keyword);
      if (it == schema.end() || !it->is_object()) continue;
      for (const auto& [name, value] : it->items()) {
        index_ids(document, value, pointer + "/" + keyword + "/" + escape_pointer_token(name), base,
                  depth + 1);
      }
    }
    for (const char* keyword : {"allOf", "anyOf", "oneOf"}) {
      const auto it = schema.find(keyword);
      if (it == schema.end() || !it->is_array()) continue;
      for (std::size_t i = 0; i < it->size(); ++i) {
        index_ids(document, (*it)[i], pointer + "/" + keyword + "/" + std::to_string(i), base,
                  depth + 1);
      }
    }
  }

  const json* find(const Location& location) const {
    const auto tokens = split_pointer(location.pointer);
    if (!tokens) return nullptr;
    const json* value = &documents_[location.document].root;
    for (const auto& token : *tokens) {
      value = step(*value, token);
      if (value == nullptr) return nullptr;
    }
    return value;
  }

  // The base URI in effect at `location`: the document's URI changed by the $id of every
  // enclosing schema (the location's own $id is applied when it is compiled).
  std::string base_uri_at(const Location& location) const {
    std::string base = documents_[location.document].uri;
    const json* value = &documents_[location.document].root;
    for (const auto& token : split_pointer(location.pointer).value_or(std::vector<std::string>{})) {
      if (value->is_object() && !value->contains("$ref")) {
        const auto id = value->find("$id");
        if (id != value->end() && id->is_string() && id_names_resource(id->get<std::string>())) {
          base = strip_fragment(resolve_uri(base, id->get<std::string>()));
        }
      }
      value = step(*value, token);
      if (value == nullptr) break;
    }
    return base;
  }

  // Fetches the document at `uri`: the built-in meta-schema or whatever the loader supplies.
  std::optional<std::size_t> load_document(const std::string& uri, const std::string& ref_path,
                                           const std::string& ref_text) {
    json document;
    bool found = false;
    if (uri == kDraft7MetaSchemaUri || uri == "https://json-schema.org/draft-07/schema") {
      document = json::parse(draft7_metaschema_text());
      found = true;
    } else if (options_.loader) {
      try {
        found = options_.loader(uri, document);
      } catch (const std::exception& e) {
        fail(ref_path, "$ref '" + ref_text + "': loading '" + uri + "' failed: " + e.what());
        return std::nullopt;
      }
    }
    if (!found) {
      fail(ref_path, "$ref '" + ref_text + "' names document '" + uri +
                         "', which is not part of this schema" +
                         (options_.loader ? " and the loader does not know it"
                                          : " (no document loader is configured)"));
      return std::nullopt;
    }
    return add_document(uri, std::move(document));
  }

  std::optional<NodeId> resolve(const PendingRef& ref) {
    std::optional<Location> target;
    if (const auto it = ids_.find(ref.target); it != ids_.end()) target = it->second;
    if (!target) {
      const std::string document_uri = strip_fragment(ref.target);
      auto resource = ids_.find(document_uri);
      if (resource == ids_.end()) {
        if (!load_document(document_uri, ref.path, ref.text)) return std::nullopt;
        resource = ids_.find(document_uri);
      }
      const std::size_t hash = ref.target.find('#');
      const std::string fragment = hash == std::string::npos ? "" : ref.target.substr(hash + 1);
      const auto decoded = percent_decode(fragment);
      if (!decoded) {
        fail(ref.path, "$ref '" + ref.text + "' has a malformed percent-encoding");
        return std::nullopt;
      }
      if (decoded->empty()) {
        target = resource->second;
      } else if (decoded->front() == '/') {
        target = Location{resource->second.document, resource->second.pointer + *decoded};
      } else {
        fail(ref.path,
             "$ref '" + ref.text + "': no schema declares \"$id\": \"#" + *decoded + "\"");
        return std::nullopt;
      }
    }
    if (find(*target) == nullptr) {
      fail(ref.path,
           "$ref '" + ref.text + "' points to nothing (resolved to '" + ref.target + "')");
      return std::nullopt;
    }
    return compile_at(*target, base_uri_at(*target), 0);
  }

  // --- keyword parsing helpers ------------------------------------------------------------------

  std::optional<json> number_keyword(const json& schema, const char* keyword,
                                     const std::string& path) {
    const auto it = schema.find(keyword);
    if (it == schema.end()) return std::nullopt;
    if (!it->is_number()) {
      fail(path + "/" + keyword, "must be a number, got " + json_type_name(*it));
      return std::nullopt;
    }
    return *it;
  }

  std::optional<std::uint64_t> count_keyword(const json& schema, const char* keyword,
                                             const std::string& path) {
    const auto it = schema.find(keyword);
    if (it == schema.end()) return std::nullopt;
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    // Values built in C++ (json{{"maxLength", 3}}) are signed even when non-negative.
    if (it->is_number_integer() && it->get<std::int64_t>() >= 0) {
      return static_cast<std::uint64_t>(it->get<std::int64_t>());
    }
    if (it->is_number_float()) {
      const double value = it->get<double>();
      if (value >= 0 && std::trunc(value) == value) {
        return value >= 18446744073709551615.0 ? std::numeric_limits<std::uint64_t>::max()
                                               : static_cast<std::uint64_t>(value);
      }
    }
    fail(path + "/" + keyword, "must be a non-negative integer, got " + it->dump());
    return std::nullopt;
  }

  std::optional<std::vector<std::string>> string_array(const json& value, const std::string& path) {
    if (!value.is_array()) {
      fail(path, "must be an array of strings, got " + json_type_name(value));
      return std::nullopt;
    }
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (!value[i].is_string()) {
        fail(path + "/" + std::to_string(i), "must be a string, got " + json_type_name(value[i]));
        return std::nullopt;
      }
      if (!seen.insert(value[i].get<std::string>()).second) {
        fail(path + "/" + std::to_string(i), "lists '" + value[i].get<std::string>() + "' twice");
        return std::nullopt;
      }
      out.push_back(value[i].get<std::string>());
    }
    return out;
  }

  unsigned parse_type_name(const json& value, const std::string& path) {
    static constexpr std::pair<std::string_view, unsigned> kTypes[] = {
        {"null", kTypeNull},      {"boolean", kTypeBoolean}, {"object", kTypeObject},
        {"array", kTypeArray},    {"number", kTypeNumber},   {"string", kTypeString},
        {"integer", kTypeInteger}};
    if (!value.is_string()) {
      fail(path, "must be a type name, got " + json_type_name(value));
      return 0;
    }
    for (const auto& [name, bit] : kTypes) {
      if (name == value.get_ref<const std::string&>()) return bit;
    }
    fail(path, "unknown type '" + value.get<std::string>() +
                   "' (expected null, boolean, object, array, number, string or integer)");
    return 0;
  }

  // --- compilation ------------------------------------------------------------------------------

  NodeId compile_at(const Location& location, const std::string& base, int depth) {
    if (const auto it = compiled_.find(location); it != compiled_.end()) return it->second;
    const auto id = static_cast<NodeId>(nodes_.size());
    nodes_.emplace_back();
    compiled_.emplace(location, id);

    SchemaNode node;
    node.location = location_text(location);
    const json* found = find(location);
    if (found == nullptr) {
      fail(node.location, "points to nothing");
      return id;
    }
    if (depth > kMaxSchemaNesting) {
      fail(node.location,
           "schemas are nested more than " + std::to_string(kMaxSchemaNesting) + " levels deep");
      return id;
    }
    compile_keywords(*found, location, base, depth, node);
    nodes_[id] = std::move(node);
    return id;
  }

  NodeId child(const Location& parent, const std::string& relative_pointer, const std::string& base,
               int depth) {
    return compile_at({parent.document, parent.pointer + relative_pointer}, base, depth + 1);
  }

  // Compiles `schema[keyword]` when present; the value must be a schema.
  std::optional<NodeId> schema_keyword(const json& schema, const char* keyword,
                                       const Location& location, const std::string& base, int depth,
                                       const std::string& path) {
    const auto it = schema.find(keyword);
    if (it == schema.end()) return std::nullopt;
    if (!is_schema_value(*it)) {
      fail(path + "/" + keyword,
           "must be a schema (object or boolean), got " + json_type_name(*it));
      return std::nullopt;
    }
    return child(location, std::string("/") + keyword, base, depth);
  }

  std::vector<NodeId> schema_array_keyword(const json& schema, const char* keyword,
                                           const Location& location, const std::string& base,
                                           int depth, const std::string& path) {
    std::vector<NodeId> out;
    const auto it = schema.find(keyword);
    if (it == schema.end()) return out;
    if (!it->is_array() || it->empty()) {
      fail(path + "/" + keyword, "must be a non-empty array of schemas");
      return out;
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      const std::string suffix = std::string("/") + keyword + "/" + std::to_string(i);
      if (!is_schema_value((*it)[i])) {
        fail(path + suffix,
             "must be a schema (object or boolean), got " + json_type_name((*it)[i]));
        return out;
      }
      out.push_back(child(location, suffix, base, depth));
    }
    return out;
  }

  void compile_keywords(const json& schema, const Location& location, std::string base, int depth,
                        SchemaNode& node) {
    const std::string& path = node.location;
    if (schema.is_boolean()) {
      node.boolean = schema.get<bool>();
      return;
    }
    if (!schema.is_object()) {
      fail(path, "a schema must be an object or a boolean, got " + json_type_name(schema));
      return;
    }

    if (const auto ref = schema.find("$ref"); ref != schema.end()) {
      if (!ref->is_string()) {
        fail(path + "/$ref", "must be a string, got " + json_type_name(*ref));
        return;
      }
      // Draft 7: "All other properties in a "$ref" object MUST be ignored" - including $id.
      const std::string& text = ref->get_ref<const std::string&>();
      pending_refs_.push_back(
          {compiled_.at(location), resolve_uri(base, text), text, path + "/$ref"});
      return;
    }
    if (const auto id = schema.find("$id"); id != schema.end()) {
      if (!id->is_string()) {
        fail(path + "/$id", "must be a string, got " + json_type_name(*id));
        return;
      }
      if (id_names_resource(id->get<std::string>())) {
        base = strip_fragment(resolve_uri(base, id->get<std::string>()));
      }
    }

    compile_value_keywords(schema, path, node);
    compile_string_keywords(schema, path, node);

    // Arrays.
    if (const auto items = schema.find("items"); items != schema.end()) {
      if (items->is_array()) {
        node.has_tuple_items = true;
        for (std::size_t i = 0; i < items->size(); ++i) {
          const std::string suffix = "/items/" + std::to_string(i);
          if (!is_schema_value((*items)[i])) {
            fail(path + suffix,
                 "must be a schema (object or boolean), got " + json_type_name((*items)[i]));
            return;
          }
          node.tuple_items.push_back(child(location, suffix, base, depth));
        }
      } else {
        node.items = schema_keyword(schema, "items", location, base, depth, path);
      }
    }
    node.additional_items = schema_keyword(schema, "additionalItems", location, base, depth, path);
    node.max_items = count_keyword(schema, "maxItems", path);
    node.min_items = count_keyword(schema, "minItems", path);
    if (const auto unique = schema.find("uniqueItems"); unique != schema.end()) {
      if (!unique->is_boolean()) {
        fail(path + "/uniqueItems", "must be a boolean, got " + json_type_name(*unique));
      } else {
        node.unique_items = unique->get<bool>();
      }
    }
    node.contains = schema_keyword(schema, "contains", location, base, depth, path);

    // Objects.
    node.max_properties = count_keyword(schema, "maxProperties", path);
    node.min_properties = count_keyword(schema, "minProperties", path);
    if (const auto required = schema.find("required"); required != schema.end()) {
      if (auto names = string_array(*required, path + "/required")) node.required = *names;
    }
    if (const auto properties = schema.find("properties"); properties != schema.end()) {
      if (!properties->is_object()) {
        fail(path + "/properties", "must be an object, got " + json_type_name(*properties));
      } else {
        for (const auto& [name, value] : properties->items()) {
          const std::string suffix = "/properties/" + escape_pointer_token(name);
          if (!is_schema_value(value)) {
            fail(path + suffix,
                 "must be a schema (object or boolean), got " + json_type_name(value));
            return;
          }
          node.properties.emplace(name, child(location, suffix, base, depth));
        }
      }
    }
    if (const auto patterns = schema.find("patternProperties"); patterns != schema.end()) {
      if (!patterns->is_object()) {
        fail(path + "/patternProperties", "must be an object, got " + json_type_name(*patterns));
      } else {
        for (const auto& [source, value] : patterns->items()) {
          const std::string suffix = "/patternProperties/" + escape_pointer_token(source);
          if (!is_schema_value(value)) {
            fail(path + suffix,
                 "must be a schema (object or boolean), got " + json_type_name(value));
            return;
          }
          std::string why;
          auto regex = EcmaRegex::compile(source, why);
          if (!regex) {
            fail(path + suffix, "the property pattern '" + source + "' " + why);
            return;
          }
          node.pattern_properties.push_back(
              {std::move(*regex), child(location, suffix, base, depth)});
        }
      }
    }
    node.additional_properties =
        schema_keyword(schema, "additionalProperties", location, base, depth, path);
    if (const auto dependencies = schema.find("dependencies"); dependencies != schema.end()) {
      if (!dependencies->is_object()) {
        fail(path + "/dependencies", "must be an object, got " + json_type_name(*dependencies));
      } else {
        for (const auto& [name, value] : dependencies->items()) {
          const std::string suffix = "/dependencies/" + escape_pointer_token(name);
          PropertyDependency dependency{name, {}, std::nullopt};
          if (value.is_array()) {
            auto names = string_array(value, path + suffix);
            if (!names) return;
            dependency.required = std::move(*names);
          } else if (is_schema_value(value)) {
            dependency.schema = child(location, suffix, base, depth);
          } else {
            fail(path + suffix,
                 "must be an array of property names or a schema, got " + json_type_name(value));
            return;
          }
          node.dependencies.push_back(std::move(dependency));
        }
      }
    }
    node.property_names = schema_keyword(schema, "propertyNames", location, base, depth, path);

    // Combinators.
    node.if_schema = schema_keyword(schema, "if", location, base, depth, path);
    node.then_schema = schema_keyword(schema, "then", location, base, depth, path);
    node.else_schema = schema_keyword(schema, "else", location, base, depth, path);
    node.all_of = schema_array_keyword(schema, "allOf", location, base, depth, path);
    node.any_of = schema_array_keyword(schema, "anyOf", location, base, depth, path);
    node.one_of = schema_array_keyword(schema, "oneOf", location, base, depth, path);
    node.not_schema = schema_keyword(schema, "not", location, base, depth, path);

    // Compiled only to report mistakes early and to let "#/definitions/..." refs reuse them.
    if (const auto definitions = schema.find("definitions"); definitions != schema.end()) {
      if (!definitions->is_object()) {
        fail(path + "/definitions", "must be an object, got " + json_type_name(*definitions));
      } else {
        for (const auto& [name, value] : definitions->items()) {
          const std::string suffix = "/definitions/" + escape_pointer_token(name);
          if (!is_schema_value(value)) {
            fail(path + suffix,
                 "must be a schema (object or boolean), got " + json_type_name(value));
            return;
          }
          child(location, suffix, base, depth);
        }
      }
    }
  }

  void compile_value_keywords(const json& schema, const std::string& path, SchemaNode& node) {
    if (const auto type = schema.find("type"); type != schema.end()) {
      if (type->is_array()) {
        if (type->empty()) fail(path + "/type", "must list at least one type");
        for (std::size_t i = 0; i < type->size(); ++i) {
          const unsigned bit = parse_type_name((*type)[i], path + "/type/" + std::to_string(i));
          if ((node.types & bit) != 0) {
            fail(path + "/type/" + std::to_string(i), "lists a type twice");
          }
          node.types |= bit;
        }
      } else {
        node.types = parse_type_name(*type, path + "/type");
      }
    }
    if (const auto values = schema.find("enum"); values != schema.end()) {
      if (!values->is_array()) {
        fail(path + "/enum", "must be an array, got " + json_type_name(*values));
      } else {
        node.enum_values = *values;
      }
    }
    if (const auto value = schema.find("const"); value != schema.end()) node.const_value = *value;

    node.multiple_of = number_keyword(schema, "multipleOf", path);
    if (node.multiple_of && !(node.multiple_of->get<double>() > 0)) {
      fail(path + "/multipleOf", "must be greater than 0, got " + node.multiple_of->dump());
    }
    node.maximum = number_keyword(schema, "maximum", path);
    node.exclusive_maximum = number_keyword(schema, "exclusiveMaximum", path);
    node.minimum = number_keyword(schema, "minimum", path);
    node.exclusive_minimum = number_keyword(schema, "exclusiveMinimum", path);
  }

  void compile_string_keywords(const json& schema, const std::string& path, SchemaNode& node) {
    node.max_length = count_keyword(schema, "maxLength", path);
    node.min_length = count_keyword(schema, "minLength", path);
    if (const auto pattern = schema.find("pattern"); pattern != schema.end()) {
      if (!pattern->is_string()) {
        fail(path + "/pattern", "must be a string, got " + json_type_name(*pattern));
      } else {
        std::string why;
        node.pattern = EcmaRegex::compile(pattern->get<std::string>(), why);
        if (!node.pattern) fail(path + "/pattern", "'" + pattern->get<std::string>() + "' " + why);
      }
    }
    if (const auto format = schema.find("format"); format != schema.end()) {
      if (!format->is_string()) {
        fail(path + "/format", "must be a string, got " + json_type_name(*format));
      } else {
        node.format_name = format->get<std::string>();
        node.format = format_from_name(node.format_name);
      }
    }
    if (const auto encoding = schema.find("contentEncoding"); encoding != schema.end()) {
      if (!encoding->is_string()) {
        fail(path + "/contentEncoding", "must be a string, got " + json_type_name(*encoding));
      } else {
        node.content_base64 = encoding->get<std::string>() == "base64";
      }
    }
    if (const auto media = schema.find("contentMediaType"); media != schema.end()) {
      if (!media->is_string()) {
        fail(path + "/contentMediaType", "must be a string, got " + json_type_name(*media));
      } else {
        // Media types are case-insensitive and may carry parameters ("; charset=utf-8").
        std::string type = media->get<std::string>().substr(0, media->get<std::string>().find(';'));
        while (!type.empty() && type.back() == ' ')
          type.pop_back();
        for (char& c : type)
          c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        node.content_json = type == "application/json";
      }
    }
  }

  const CompileOptions& options_;
  std::deque<Document> documents_;  // deque: add_document must not move earlier documents
  std::map<std::string, Location> ids_;
  std::map<Location, NodeId> compiled_;
  std::vector<SchemaNode> nodes_;
  std::deque<PendingRef> pending_refs_;
  std::optional<SchemaError> error_;
};

}  // namespace

Result<std::shared_ptr<const JsonSchema::Compiled>> compile_schema(const json& schema,
                                                                   const CompileOptions& options) {
  return SchemaCompiler(options).run(schema);
}

std::string json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::object:
      return "object";
    case json::value_t::array:
      return "array";
    case json::value_t::string:
      return "string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "number";
    default:
      return "binary data";
  }
}

}  // namespace helm::schema::detail
