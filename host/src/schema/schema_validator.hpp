// Evaluates an instance against JsonSchema::Compiled.
#pragma once

#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "compiled_schema.hpp"

namespace helm::schema::detail {

/// Validates `instance`. With `errors` null it stops at the first failure; otherwise it appends
/// every failure there. Returns whether the instance is valid.
bool validate_instance(const JsonSchema::Compiled& schema, const nlohmann::json& instance,
                       std::vector<ValidationError>* errors);

}  // namespace helm::schema::detail
