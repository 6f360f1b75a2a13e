#include "helm/log/logger.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace helm::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

std::string utc_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%.*s.%06ldZ", static_cast<int>(n), buf,
                static_cast<long>(micros));
  return out;
}

void write_all(const std::string& line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

std::optional<Level> parse_level(std::string_view text) {
  if (text == "debug") return Level::kDebug;
  if (text == "info") return Level::kInfo;
  if (text == "warn" || text == "warning") return Level::kWarn;
  if (text == "error") return Level::kError;
  return std::nullopt;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void set_level(Level level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}
Level level() {
  return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}
bool enabled(Level lvl) {
  return static_cast<int>(lvl) >= g_level.load(std::memory_order_relaxed);
}

void write(Level lvl, std::string_view msg, const nlohmann::json& fields) {
  if (!enabled(lvl)) return;
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["ts"] = utc_timestamp();
  line["level"] = level_name(lvl);
  line["msg"] = msg;
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) {
      if (key != "ts" && key != "level" && key != "msg") line[key] = value;
    }
  }
  // Replace invalid UTF-8 rather than throwing: a log line must never take the process down.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  write_all(text);
}

void write(Level lvl, std::string_view msg) {
  write(lvl, msg, nlohmann::json());
}

void debug(std::string_view msg, const nlohmann::json& f) {
  write(Level::kDebug, msg, f);
}
void info(std::string_view msg, const nlohmann::json& f) {
  write(Level::kInfo, msg, f);
}
void warn(std::string_view msg, const nlohmann::json& f) {
  write(Level::kWarn, msg, f);
}
void error(std::string_view msg, const nlohmann::json& f) {
  write(Level::kError, msg, f);
}
void debug(std::string_view msg) {
  write(Level::kDebug, msg);
}
void info(std::string_view msg) {
  write(Level::kInfo, msg);
}
void warn(std::string_view msg) {
  write(Level::kWarn, msg);
}
void error(std::string_view msg) {
  write(Level::kError, msg);
}

}  // namespace helm::log
