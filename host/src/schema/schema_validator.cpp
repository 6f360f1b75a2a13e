#include "schema_validator.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats.hpp"
#include "utf8.hpp"

namespace helm::schema::detail {

namespace {

using nlohmann::json;

// Messages quote schema values; past this length they are cut short.
constexpr std::size_t kMaxQuotedValueLength = 120;

std::string quote_value(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > kMaxQuotedValueLength) {
    text.resize(kMaxQuotedValueLength);
    text += "...";
  }
  return text;
}

std::string quote_values(const json& values) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ", ";
    text += quote_value(values[i]);
    if (text.size() > kMaxQuotedValueLength) {
      text += ", ... (" + std::to_string(values.size()) + " values)";
      break;
    }
  }
  return text + "]";
}

std::string plural(std::uint64_t count, std::string_view noun) {
  return std::to_string(count) + " " + std::string(noun) + (count == 1 ? "" : "s");
}

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

bool is_integer_value(const json& value) {
  if (value.is_number_integer()) return true;  // both signed and unsigned
  if (!value.is_number_float()) return false;
  const double number = value.get<double>();
  return std::isfinite(number) && std::trunc(number) == number;
}

// long double holds every int64, uint64 and double exactly on the platforms we build for (x86-64
// extended precision, AArch64 quad), so comparisons through it are exact.
long double to_long_double(const json& value) {
  switch (value.type()) {
    case json::value_t::number_integer:
      return static_cast<long double>(value.get<std::int64_t>());
    case json::value_t::number_unsigned:
      return static_cast<long double>(value.get<std::uint64_t>());
    default:
      return static_cast<long double>(value.get<double>());
  }
}

int compare_numbers(const json& a, const json& b) {
  const long double x = to_long_double(a);
  const long double y = to_long_double(b);
  return x < y ? -1 : (x > y ? 1 : 0);
}

std::uint64_t magnitude(const json& integer) {
  if (integer.is_number_unsigned()) return integer.get<std::uint64_t>();
  const std::int64_t value = integer.get<std::int64_t>();
  return value < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(value)
                   : static_cast<std::uint64_t>(value);
}

// Exact for integers; for fractions, `value / divisor` is accepted when it is within a few ulps of
// an integer, so 0.3 is a multiple of 0.1 although neither is exact in binary.
bool is_multiple_of(const json& value, const json& divisor) {
  if (value.is_number_integer() && is_integer_value(divisor) &&
      to_long_double(divisor) <= 9.2e18L) {
    const auto whole_divisor = divisor.is_number_integer()
                                   ? magnitude(divisor)
                                   : static_cast<std::uint64_t>(divisor.get<double>());
    return magnitude(value) % whole_divisor == 0;
  }
  const double quotient = value.get<double>() / divisor.get<double>();
  if (!std::isfinite(quotient)) return false;
  const double nearest = std::round(quotient);
  return std::abs(quotient - nearest) <= 8 * DBL_EPSILON * std::max(1.0, std::abs(quotient));
}

// JSON equality: numbers compare by value (1 == 1.0), objects regardless of member order.
// Iterative, because uniqueItems compares instance values of any depth.
bool json_equal(const json& left, const json& right) {
  std::vector<std::pair<const json*, const json*>> pending = {{&left, &right}};
  while (!pending.empty()) {
    const auto [a, b] = pending.back();
    pending.pop_back();
    if (a->is_number() && b->is_number()) {
      if (compare_numbers(*a, *b) != 0) return false;
      continue;
    }
    if (a->type() != b->type() || a->size() != b->size()) return false;
    if (a->is_array()) {
      for (std::size_t i = 0; i < a->size(); ++i)
        pending.emplace_back(&(*a)[i], &(*b)[i]);
    } else if (a->is_object()) {
      for (const auto& [key, value] : a->items()) {
        const auto other = b->find(key);
        if (other == b->end()) return false;
        pending.emplace_back(&value, &*other);
      }
    } else if (*a != *b) {
      return false;
    }
  }
  return true;
}

// A hash consistent with json_equal: equal numbers convert to the same double. Below
// kMaxHashDepth levels a value only contributes its type, which keeps the hash consistent while
// bounding the recursion on deeply nested instances.
constexpr int kMaxHashDepth = 32;

std::size_t json_hash(const json& value, int depth = 0) {
  const auto mix = [](std::size_t seed, std::size_t h) {
    return seed ^ (h + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2));
  };
  if (depth > kMaxHashDepth) return static_cast<std::size_t>(value.type());
  switch (value.type()) {
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: {
      const double number = value.get<double>();
      return std::hash<double>{}(number == 0 ? 0.0 : number);
    }
    case json::value_t::string:
      return std::hash<std::string>{}(value.get_ref<const std::string&>());
    case json::value_t::array: {
      std::size_t seed = 0xA11A7;
      for (const auto& item : value)
        seed = mix(seed, json_hash(item, depth + 1));
      return seed;
    }
    case json::value_t::object: {
      std::size_t seed = 0x0B1EC7;  // members iterate in key order, so this is canonical
      for (const auto& [key, item] : value.items()) {
        seed = mix(mix(seed, std::hash<std::string>{}(key)), json_hash(item, depth + 1));
      }
      return seed;
    }
    case json::value_t::boolean:
      return value.get<bool>() ? 0xB001 : 0xB000;
    default:
      return static_cast<std::size_t>(value.type());
  }
}

std::string describe_types(unsigned types) {
  static constexpr std::pair<unsigned, std::string_view> kNames[] = {
      {kTypeObject, "an object"},   {kTypeArray, "an array"},  {kTypeString, "a string"},
      {kTypeInteger, "an integer"}, {kTypeNumber, "a number"}, {kTypeBoolean, "a boolean"},
      {kTypeNull, "null"}};
  std::vector<std::string_view> names;
  for (const auto& [bit, name] : kNames) {
    if ((types & bit) != 0) names.push_back(name);
  }
  std::string text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " or " : ", ";
    text += names[i];
  }
  return text;
}

bool matches_type(unsigned types, const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return (types & kTypeNull) != 0;
    case json::value_t::boolean:
      return (types & kTypeBoolean) != 0;
    case json::value_t::object:
      return (types & kTypeObject) != 0;
    case json::value_t::array:
      return (types & kTypeArray) != 0;
    case json::value_t::string:
      return (types & kTypeString) != 0;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return (types & kTypeNumber) != 0 || ((types & kTypeInteger) != 0 && is_integer_value(value));
    default:
      return false;
  }
}

using Errors = std::vector<ValidationError>;

// Keeps the instance path as one string that grows and shrinks as evaluation descends.
class PathGuard {
 public:
  PathGuard(std::string& path, std::string_view token) : path_(path), length_(path.size()) {
    path_ += '/';
    path_ += escape_pointer_token(token);
  }
  PathGuard(const PathGuard&) = delete;
  PathGuard& operator=(const PathGuard&) = delete;
  ~PathGuard() { path_.resize(length_); }

 private:
  std::string& path_;
  std::size_t length_;
};

class Evaluator {
 public:
  explicit Evaluator(const JsonSchema::Compiled& schema) : schema_(schema) {}

  bool run(const json& instance, Errors* errors) {
    std::string path;
    Errors collected;
    const bool valid =
        evaluate(schema_.root, instance, path, errors != nullptr ? &collected : nullptr);
    if (aborted_) {
      // Whatever else failed did so because evaluation was cut short; only this error is real.
      if (errors != nullptr) errors->push_back(abort_error_);
      return false;
    }
    if (errors != nullptr) errors->insert(errors->end(), collected.begin(), collected.end());
    return valid;
  }

 private:
  // Records a failure. Returns false so call sites can write `return report(...)`.
  static bool report(Errors* errors, const std::string& path, const SchemaNode& node,
                     std::string_view keyword, std::string message) {
    if (errors != nullptr) {
      std::string schema_path = node.location;
      if (!keyword.empty()) {
        schema_path += '/';
        schema_path += keyword;
      }
      errors->push_back({path, std::move(schema_path), std::move(message)});
    }
    return false;
  }

  bool evaluate(NodeId id, const json& instance, std::string& path, Errors* errors) {
    if (aborted_) return false;
    const SchemaNode& node = schema_.nodes[id];
    if (depth_ >= schema_.max_depth) {
      aborted_ = true;
      abort_error_ = {path, node.location,
                      "validation gave up after " + std::to_string(schema_.max_depth) +
                          " nested schemas; the schema probably has a $ref cycle that never "
                          "descends into the instance"};
      return false;
    }
    ++depth_;
    const bool valid = evaluate_node(node, instance, path, errors);
    --depth_;
    return valid && !aborted_;
  }

  bool evaluate_node(const SchemaNode& node, const json& instance, std::string& path,
                     Errors* errors) {
    if (node.boolean) {
      return *node.boolean || report(errors, path, node, "", "is not allowed here (schema false)");
    }
    if (node.ref) return evaluate(*node.ref, instance, path, errors);

    bool valid = true;
    // Each check reports into `errors`; without a sink, the first failure settles the answer.
    const auto check = [&](bool passed) {
      valid = valid && passed;
      return passed || errors != nullptr;
    };
    if (!check(check_generic(node, instance, path, errors))) return false;
    if (instance.is_number() && !check(check_number(node, instance, path, errors))) return false;
    if (instance.is_string() && !check(check_string(node, instance, path, errors))) return false;
    if (instance.is_array() && !check(check_array(node, instance, path, errors))) return false;
    if (instance.is_object() && !check(check_object(node, instance, path, errors))) return false;
    if (!check(check_combinators(node, instance, path, errors))) return false;
    return valid;
  }

  bool check_generic(const SchemaNode& node, const json& instance, const std::string& path,
                     Errors* errors) {
    bool valid = true;
    if (node.types != 0 && !matches_type(node.types, instance)) {
      valid = report(errors, path, node, "type",
                     "must be " + describe_types(node.types) + ", got " + json_type_name(instance));
      if (errors == nullptr) return false;
    }
    if (node.enum_values) {
      const auto& values = *node.enum_values;
      const bool listed = std::any_of(values.begin(), values.end(), [&](const json& value) {
        return json_equal(value, instance);
      });
      if (!listed) {
        valid = report(errors, path, node, "enum", "must be one of " + quote_values(values));
        if (errors == nullptr) return false;
      }
    }
    if (node.const_value && !json_equal(*node.const_value, instance)) {
      valid = report(errors, path, node, "const", "must equal " + quote_value(*node.const_value));
    }
    return valid;
  }

  bool check_number(const SchemaNode& node, const json& instance, const std::string& path,
                    Errors* errors) {
    bool valid = true;
    const auto fail = [&](std::string_view keyword, std::string message) {
      valid = report(errors, path, node, keyword, std::move(message) + ", got " + instance.dump());
      return errors == nullptr;
    };
    if (node.multiple_of && !is_multiple_of(instance, *node.multiple_of) &&
        fail("multipleOf", "must be a multiple of " + node.multiple_of->dump())) {
      return false;
    }
    if (node.maximum && compare_numbers(instance, *node.maximum) > 0 &&
        fail("maximum", "must be at most " + node.maximum->dump())) {
      return false;
    }
    if (node.exclusive_maximum && compare_numbers(instance, *node.exclusive_maximum) >= 0 &&
        fail("exclusiveMaximum", "must be less than " + node.exclusive_maximum->dump())) {
      return false;
    }
    if (node.minimum && compare_numbers(instance, *node.minimum) < 0 &&
        fail("minimum", "must be at least " + node.minimum->dump())) {
      return false;
    }
    if (node.exclusive_minimum && compare_numbers(instance, *node.exclusive_minimum) <= 0 &&
        fail("exclusiveMinimum", "must be greater than " + node.exclusive_minimum->dump())) {
      return false;
    }
    return valid;
  }

  bool check_string(const SchemaNode& node, const json& instance, const std::string& path,
                    Errors* errors) {
    const auto& text = instance.get_ref<const std::string&>();
    bool valid = true;
    const auto fail = [&](std::string_view keyword, std::string message) {
      valid = report(errors, path, node, keyword, std::move(message));
      return errors == nullptr;
    };
    if (node.max_length || node.min_length) {
      const std::uint64_t length = count_code_points(text);
      if (node.max_length && length > *node.max_length &&
          fail("maxLength", "must be at most " + plural(*node.max_length, "character") +
                                " long, got " + std::to_string(length))) {
        return false;
      }
      if (node.min_length && length < *node.min_length &&
          fail("minLength", "must be at least " + plural(*node.min_length, "character") +
                                " long, got " + std::to_string(length))) {
        return false;
      }
    }
    if (node.pattern) {
      std::string why;
      if (!matches_pattern(*node.pattern, text, why) && fail("pattern", why)) return false;
    }
    if (node.format && schema_.assert_formats && !matches_format(*node.format, text) &&
        fail("format", "must be a valid " + node.format_name)) {
      return false;
    }
    if (schema_.assert_content && (node.content_base64 || node.content_json)) {
      std::optional<std::string> decoded;
      if (node.content_base64) {
        decoded = decode_base64(text);
        if (!decoded && fail("contentEncoding", "must be base64-encoded")) return false;
      }
      if (node.content_json && (!node.content_base64 || decoded) &&
          !is_json_document(decoded ? *decoded : text) &&
          fail("contentMediaType", "must contain a JSON document")) {
        return false;
      }
    }
    return valid;
  }

  bool matches_pattern(const EcmaRegex& pattern, const std::string& text, std::string& why) const {
    const std::size_t length = count_code_points(text);
    if (length > schema_.max_pattern_subject_length) {
      why = "is too long to check against the pattern '" + pattern.source() + "' (" +
            std::to_string(length) + " characters, the limit is " +
            std::to_string(schema_.max_pattern_subject_length) + ")";
      return false;
    }
    if (pattern.search(text)) return true;
    why = "must match the pattern '" + pattern.source() + "'";
    return false;
  }

  bool check_array(const SchemaNode& node, const json& instance, std::string& path,
                   Errors* errors) {
    bool valid = true;
    const auto fail = [&](std::string_view keyword, std::string message) {
      valid = report(errors, path, node, keyword, std::move(message));
      return errors == nullptr;
    };
    const auto sub = [&](NodeId id, std::size_t index) {
      const PathGuard guard(path, std::to_string(index));
      const bool passed = evaluate(id, instance[index], path, errors);
      valid = valid && passed;
      return passed || (errors != nullptr && !aborted_);
    };
    const std::size_t size = instance.size();
    if (node.max_items && size > *node.max_items &&
        fail("maxItems", "must have at most " + plural(*node.max_items, "item") + ", got " +
                             std::to_string(size))) {
      return false;
    }
    if (node.min_items && size < *node.min_items &&
        fail("minItems", "must have at least " + plural(*node.min_items, "item") + ", got " +
                             std::to_string(size))) {
      return false;
    }
    if (node.unique_items && size > 1) {
      std::unordered_multimap<std::size_t, std::size_t> seen;
      seen.reserve(size);
      for (std::size_t i = 0; i < size; ++i) {
        const std::size_t hash = json_hash(instance[i]);
        const auto [first, last] = seen.equal_range(hash);
        const auto duplicate = std::find_if(first, last, [&](const auto& entry) {
          return json_equal(instance[entry.second], instance[i]);
        });
        if (duplicate != last) {
          if (fail("uniqueItems", "must not contain duplicates, but items " +
                                      std::to_string(duplicate->second) + " and " +
                                      std::to_string(i) + " are equal")) {
            return false;
          }
          break;
        }
        seen.emplace(hash, i);
      }
    }
    if (node.items) {
      for (std::size_t i = 0; i < size; ++i) {
        if (!sub(*node.items, i)) return false;
      }
    } else if (node.has_tuple_items) {
      const std::size_t tuple = node.tuple_items.size();
      for (std::size_t i = 0; i < size && i < tuple; ++i) {
        if (!sub(node.tuple_items[i], i)) return false;
      }
      if (node.additional_items && size > tuple) {
        const SchemaNode& additional = schema_.nodes[*node.additional_items];
        if (additional.boolean && !*additional.boolean) {
          const PathGuard guard(path, std::to_string(tuple));
          if (fail("additionalItems", "is not allowed: the array may have at most " +
                                          plural(tuple, "item") + ", got " +
                                          std::to_string(size))) {
            return false;
          }
        } else {
          for (std::size_t i = tuple; i < size; ++i) {
            if (!sub(*node.additional_items, i)) return false;
          }
        }
      }
    }
    if (node.contains) {
      bool found = false;
      for (std::size_t i = 0; i < size && !found; ++i) {
        std::string item_path = path + "/" + std::to_string(i);
        found = evaluate(*node.contains, instance[i], item_path, nullptr);
        if (aborted_) return false;
      }
      if (!found && fail("contains",
                         "must contain at least one item that matches the "
                         "'contains' schema")) {
        return false;
      }
    }
    return valid;
  }

  bool check_object(const SchemaNode& node, const json& instance, std::string& path,
                    Errors* errors) {
    bool valid = true;
    const auto fail = [&](std::string_view keyword, std::string message) {
      valid = report(errors, path, node, keyword, std::move(message));
      return errors == nullptr;
    };
    const auto fail_at = [&](std::string_view token, std::string_view keyword,
                             std::string message) {
      const PathGuard guard(path, token);
      return fail(keyword, std::move(message));
    };
    // Evaluates `id` against the member `key`; false means "stop now".
    const auto sub = [&](NodeId id, const std::string& key, const json& value) {
      const PathGuard guard(path, key);
      const bool passed = evaluate(id, value, path, errors);
      valid = valid && passed;
      return passed || (errors != nullptr && !aborted_);
    };

    const std::size_t size = instance.size();
    if (node.max_properties && size > *node.max_properties &&
        fail("maxProperties", "must have at most " + plural(*node.max_properties, "property") +
                                  ", got " + std::to_string(size))) {
      return false;
    }
    if (node.min_properties && size < *node.min_properties &&
        fail("minProperties", "must have at least " + plural(*node.min_properties, "property") +
                                  ", got " + std::to_string(size))) {
      return false;
    }
    for (const auto& name : node.required) {
      if (!instance.contains(name) && fail_at(name, "required", "is required")) return false;
    }
    for (const auto& dependency : node.dependencies) {
      if (!instance.contains(dependency.property)) continue;
      for (const auto& name : dependency.required) {
        if (!instance.contains(name) &&
            fail_at(name, "dependencies",
                    "is required when '" + dependency.property + "' is present")) {
          return false;
        }
      }
      if (dependency.schema) {
        const bool passed = evaluate(*dependency.schema, instance, path, errors);
        valid = valid && passed;
        if (!passed && (errors == nullptr || aborted_)) return false;
      }
    }

    for (const auto& [key, value] : instance.items()) {
      bool described = false;
      if (const auto property = node.properties.find(key); property != node.properties.end()) {
        described = true;
        if (!sub(property->second, key, value)) return false;
      }
      for (const auto& pattern_property : node.pattern_properties) {
        std::string why;
        if (matches_pattern(pattern_property.pattern, key, why)) {
          described = true;
          if (!sub(pattern_property.schema, key, value)) return false;
        } else if (count_code_points(key) > schema_.max_pattern_subject_length &&
                   fail_at(key, "patternProperties", "property name " + why)) {
          return false;
        }
      }
      if (!described && node.additional_properties) {
        const SchemaNode& additional = schema_.nodes[*node.additional_properties];
        if (additional.boolean && !*additional.boolean) {
          if (fail_at(key, "additionalProperties",
                      "additional property '" + key + "' is not allowed")) {
            return false;
          }
        } else if (!sub(*node.additional_properties, key, value)) {
          return false;
        }
      }
      if (node.property_names) {
        const PathGuard guard(path, key);
        Errors name_errors;
        const json name(key);
        const bool passed =
            evaluate(*node.property_names, name, path, errors != nullptr ? &name_errors : nullptr);
        if (aborted_) return false;
        if (!passed) {
          valid = false;
          if (errors == nullptr) return false;
          for (auto& error : name_errors) {
            error.message = "property name '" + key + "' " + error.message;
            errors->push_back(std::move(error));
          }
        }
      }
    }
    return valid;
  }

  // First error of a failed branch, for the summary of anyOf / oneOf.
  static std::string branch_summary(const std::string& keyword, std::size_t index,
                                    const Errors& branch_errors, const std::string& path) {
    std::string text = keyword + "/" + std::to_string(index) + ": ";
    if (branch_errors.empty()) return text + "does not match";
    const ValidationError& first = branch_errors.front();
    if (first.instance_path != path) text += first.instance_path.substr(path.size()) + " ";
    return text + first.message;
  }

  bool check_combinators(const SchemaNode& node, const json& instance, std::string& path,
                         Errors* errors) {
    bool valid = true;
    for (const NodeId id : node.all_of) {
      const bool passed = evaluate(id, instance, path, errors);
      valid = valid && passed;
      if (!passed && (errors == nullptr || aborted_)) return false;
    }

    if (!node.any_of.empty()) {
      std::string details;
      bool matched = false;
      for (std::size_t i = 0; i < node.any_of.size() && !matched; ++i) {
        Errors branch_errors;
        matched =
            evaluate(node.any_of[i], instance, path, errors != nullptr ? &branch_errors : nullptr);
        if (aborted_) return false;
        if (!matched && errors != nullptr) {
          details += (i > 0 ? "; " : "") + branch_summary("anyOf", i, branch_errors, path);
        }
      }
      if (!matched) {
        valid = report(errors, path, node, "anyOf",
                       "must match at least one schema in anyOf (" + details + ")");
        if (errors == nullptr) return false;
      }
    }

    if (!node.one_of.empty()) {
      std::vector<std::size_t> matches;
      std::string details;
      for (std::size_t i = 0; i < node.one_of.size() && matches.size() < 2; ++i) {
        Errors branch_errors;
        if (evaluate(node.one_of[i], instance, path,
                     errors != nullptr ? &branch_errors : nullptr)) {
          matches.push_back(i);
        } else if (errors != nullptr) {
          details +=
              (details.empty() ? "" : "; ") + branch_summary("oneOf", i, branch_errors, path);
        }
        if (aborted_) return false;
      }
      if (matches.empty()) {
        valid =
            report(errors, path, node, "oneOf",
                   "must match exactly one schema in oneOf, but matches none (" + details + ")");
      } else if (matches.size() > 1) {
        valid = report(errors, path, node, "oneOf",
                       "must match exactly one schema in oneOf, but matches oneOf/" +
                           std::to_string(matches[0]) + " and oneOf/" + std::to_string(matches[1]));
      }
      if (!valid && errors == nullptr) return false;
    }

    if (node.not_schema) {
      const bool matched = evaluate(*node.not_schema, instance, path, nullptr);
      if (aborted_) return false;
      if (matched) {
        valid = report(errors, path, node, "not", "must not match the schema in 'not'");
        if (errors == nullptr) return false;
      }
    }

    if (node.if_schema) {
      const bool condition = evaluate(*node.if_schema, instance, path, nullptr);
      if (aborted_) return false;
      const std::optional<NodeId> branch = condition ? node.then_schema : node.else_schema;
      if (branch && !evaluate(*branch, instance, path, errors)) valid = false;
    }
    return valid;
  }

  const JsonSchema::Compiled& schema_;
  std::size_t depth_ = 0;
  bool aborted_ = false;
  ValidationError abort_error_;
};

}  // namespace

bool validate_instance(const JsonSchema::Compiled& schema, const json& instance, Errors* errors) {
  return Evaluator(schema).run(instance, errors);
}

}  // namespace helm::schema::detail
