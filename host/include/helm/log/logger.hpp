/// @brief Structured JSON-lines logging to stderr, with a process-wide level.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace helm::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

/// Parses "debug", "info", "warn"/"warning", "error"; nullopt for anything else.
std::optional<Level> parse_level(std::string_view text);
std::string_view level_name(Level level);

void set_level(Level level);
Level level();
bool enabled(Level level);

/// Writes one JSON object per line: {"ts","level","msg", ...fields}. `fields` must be an object
/// (or null). Thread-safe; a line is written with one write(2) so lines never interleave.
void write(Level level, std::string_view msg, const nlohmann::json& fields);
void write(Level level, std::string_view msg);

void debug(std::string_view msg, const nlohmann::json& fields);
void info(std::string_view msg, const nlohmann::json& fields);
void warn(std::string_view msg, const nlohmann::json& fields);
void error(std::string_view msg, const nlohmann::json& fields);
void debug(std::string_view msg);
void info(std::string_view msg);
void warn(std::string_view msg);
void error(std::string_view msg);

}  // namespace helm::log
