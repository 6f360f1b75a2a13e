#include "helm/schema/json_schema.hpp"

#include <nlohmann/json.hpp>

#include "compiled_schema.hpp"
#include "schema_compiler.hpp"
#include "schema_validator.hpp"

namespace helm::schema {

Result<JsonSchema> JsonSchema::compile(const nlohmann::json& schema,
                                       const CompileOptions& options) {
  auto compiled = detail::compile_schema(schema, options);
  if (!compiled) return compiled.error();
  return JsonSchema(std::move(compiled).value());
}

JsonSchema::JsonSchema(std::shared_ptr<const Compiled> compiled) : compiled_(std::move(compiled)) {}

JsonSchema::~JsonSchema() = default;

std::vector<ValidationError> JsonSchema::validate(const nlohmann::json& instance) const {
  std::vector<ValidationError> errors;
  detail::validate_instance(*compiled_, instance, &errors);
  return errors;
}

bool JsonSchema::is_valid(const nlohmann::json& instance) const {
  return detail::validate_instance(*compiled_, instance, nullptr);
}

}  // namespace helm::schema
