/// @brief JSON-lines logging to stderr for the agent and the load generator.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

namespace helm::agent::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);

/// One line {"ts","level","msg",...fields}, written with a single write(2) so threads never
/// interleave. `fields` must be an object or null.
void write(Level level, std::string_view msg, const nlohmann::json& fields = nullptr);
inline void debug(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kDebug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kInfo, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kWarn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kError, m, f);
}

/// Serializes JSON for the wire or a file; invalid UTF-8 (from script output) is replaced
/// instead of throwing.
std::string dump(const nlohmann::json& value);

}  // namespace helm::agent::log
