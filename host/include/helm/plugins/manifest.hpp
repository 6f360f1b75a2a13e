/// @brief The plugin manifest as the loader sees it: the structural checks it makes itself, the
/// built-in text of plugin-api/schema/manifest.schema.json for full JSON Schema validation, and
/// ABI version parsing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace helm::plugins {

/// MAJOR.MINOR of the plugin ABI.
struct AbiVersion {
  std::uint16_t major = 0;
  std::uint16_t minor = 0;

  friend bool operator==(const AbiVersion&, const AbiVersion&) = default;
};

/// Parses "1.0"; nullopt unless it is two decimal numbers (each at most 65535) and a dot.
std::optional<AbiVersion> parse_abi_version(std::string_view text);

/// "MAJOR.MINOR".
std::string to_string(AbiVersion version);

/// The checks the loader makes before it trusts anything in a manifest: it is an object; "name"
/// matches ^[a-z][a-z0-9-]{1,62}$; "version", "kind" are non-empty strings; "abi" is MAJOR.MINOR;
/// "library" is a plain file name ending in .so (no directory, no leading dot); "operations" is
/// an object of objects. Returns one sentence per problem, each naming the member; empty when
/// none. This is not full validation: see manifest_schema_text().
std::vector<std::string> check_manifest_basics(const nlohmann::json& manifest);

/// The manifest's JSON Schema (draft 7), exactly plugin-api/schema/manifest.schema.json, built
/// into the binary. Its $refs point only at itself and the draft-07 meta-schema.
std::string_view manifest_schema_text() noexcept;

}  // namespace helm::plugins
