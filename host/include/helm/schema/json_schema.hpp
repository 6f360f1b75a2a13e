/// @brief JSON Schema draft 7 validation of nlohmann::json values: compile a schema once, then
/// validate any number of instances against it and get every failure as a path plus a message.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace helm::schema {

/// One way an instance fails its schema.
struct ValidationError {
  /// JSON Pointer to the offending value in the instance, e.g. "/config/base_url"; "" is the whole
  /// instance. For a missing required property it points at where the property should be.
  std::string instance_path;
  /// JSON Pointer to the failing keyword in the schema, e.g. "/properties/config/required". When
  /// the keyword lives in another document reached through $ref, it is "<document uri>#<pointer>".
  std::string schema_path;
  /// What is wrong, for a person: "must be a string, got number", "is required".
  std::string message;

  friend bool operator==(const ValidationError&, const ValidationError&) = default;
};

/// Why a schema could not be compiled.
struct SchemaError {
  /// JSON Pointer to the offending part of the schema ("<document uri>#<pointer>" in a document
  /// other than the root one).
  std::string schema_path;
  /// A complete sentence that names the path, e.g.
  /// "invalid schema at /properties/port/minimum: must be a number, got string".
  std::string message;
};

/// A compiled value or the SchemaError that prevented it. Misuse (value() on an error or error()
/// on a value) is a programming error and throws std::bad_variant_access.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(SchemaError error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const SchemaError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, SchemaError> state_;
};

/// Supplies a schema document that a $ref names by absolute URI (given without fragment, e.g.
/// "https://helm.example/schemas/common.json"). Fill `document` and return true, or return false
/// if the URI is unknown. Called only during JsonSchema::compile, on the compiling thread.
using SchemaDocumentLoader = std::function<bool(const std::string& uri, nlohmann::json& document)>;

/// Knobs for JsonSchema::compile; the defaults suit configuration files.
struct CompileOptions {
  /// Base URI of the root schema when it declares no absolute "$id"; relative $refs and $ids
  /// resolve against it. Empty means the root document is only reachable by "#..." references.
  std::string base_uri;
  /// Resolves $refs to other documents. The draft-07 meta-schema is built in; anything else
  /// without a loader is a compile error.
  SchemaDocumentLoader loader;
  /// Whether `format` is asserted (draft 7 makes this optional). Unknown formats always pass.
  bool assert_formats = true;
  /// Whether contentEncoding "base64" and contentMediaType "application/json" are asserted.
  bool assert_content = true;
  /// How many schemas may be nested in one evaluation before validation gives up with an error.
  /// Guards against $ref cycles that never consume input, such as {"$ref": "#"}, and against
  /// instances nested deeply enough to exhaust the stack.
  std::size_t max_depth = 256;
  /// Strings longer than this many code points fail `pattern` and `patternProperties` with an
  /// error instead of being matched: std::regex recurses once per character and would otherwise
  /// overflow the stack on large inputs.
  std::size_t max_pattern_subject_length = 4096;
};

/// A compiled draft 7 schema. Immutable once compiled: copies share state and may validate
/// concurrently from any thread. A moved-from JsonSchema may only be assigned to or destroyed.
class JsonSchema {
 public:
  /// Compiles `schema`, resolving every $ref up front. Fails (without throwing) on a malformed
  /// schema, a $ref that does not resolve, or a `pattern` the regex engine cannot run.
  static Result<JsonSchema> compile(const nlohmann::json& schema,
                                    const CompileOptions& options = {});

  JsonSchema(const JsonSchema&) = default;
  JsonSchema(JsonSchema&&) noexcept = default;
  JsonSchema& operator=(const JsonSchema&) = default;
  JsonSchema& operator=(JsonSchema&&) noexcept = default;
  ~JsonSchema();

  /// Every failure of `instance`, in schema order; empty when it is valid.
  std::vector<ValidationError> validate(const nlohmann::json& instance) const;

  /// Whether `instance` is valid; stops at the first failure.
  bool is_valid(const nlohmann::json& instance) const;

  /// Opaque compiled form; defined in the implementation.
  struct Compiled;

 private:
  explicit JsonSchema(std::shared_ptr<const Compiled> compiled);

  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace helm::schema
