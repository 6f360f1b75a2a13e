// Turns a schema document (plus whatever documents its $refs name) into JsonSchema::Compiled.
#pragma once

#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "compiled_schema.hpp"

namespace helm::schema::detail {

/// Compiles `schema`; every problem is returned as a SchemaError, nothing throws.
Result<std::shared_ptr<const JsonSchema::Compiled>> compile_schema(const nlohmann::json& schema,
                                                                   const CompileOptions& options);

}  // namespace helm::schema::detail
