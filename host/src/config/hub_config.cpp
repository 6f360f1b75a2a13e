#include "helm/config/hub_config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "helm/log/logger.hpp"

extern char** environ;

namespace helm::config {
namespace {

using nlohmann::json;

enum class Kind { kString, kUnsigned, kBool, kListen, kLogLevel };

struct Key {
  std::string path;  // dotted
  Kind kind = Kind::kString;
  uint64_t max = std::numeric_limits<uint32_t>::max();
  std::function<void(HubConfig&, const std::string&)> set_string;
  std::function<void(HubConfig&, uint64_t)> set_unsigned;
  std::function<void(HubConfig&, bool)> set_bool;
};

std::vector<Key> build_keys() {
  std::vector<Key> keys;
  auto str = [&](std::string path, std::function<void(HubConfig&, const std::string&)> f,
                 Kind kind = Kind::kString) {
    Key k;
    k.path = std::move(path);
    k.kind = kind;
    k.set_string = std::move(f);
    keys.push_back(std::move(k));
  };
  auto u32 = [&](std::string path, std::function<void(HubConfig&, uint64_t)> f,
                 uint64_t max = std::numeric_limits<uint32_t>::max()) {
    Key k;
    k.path = std::move(path);
    k.kind = Kind::kUnsigned;
    k.max = max;
    k.set_unsigned = std::move(f);
    keys.push_back(std::move(k));
  };
  auto boolean = [&](std::string path, std::function<void(HubConfig&, bool)> f) {
    Key k;
    k.path = std::move(path);
    k.kind = Kind::kBool;
    k.set_bool = std::move(f);
    keys.push_back(std::move(k));
  };

  str("data_dir", [](HubConfig& c, const std::string& v) { c.data_dir = v; });
  str(
      "log.level", [](HubConfig& c, const std::string& v) { c.log_level = v; }, Kind::kLogLevel);
  str(
      "api.listen",
      [](HubConfig& c, const std::string& v) { c.api.listen = parse_listen_address(v).value(); },
      Kind::kListen);
  str("api.tls_cert_file", [](HubConfig& c, const std::string& v) { c.api.tls_cert_file = v; });
  str("api.tls_key_file", [](HubConfig& c, const std::string& v) { c.api.tls_key_file = v; });
  u32(
      "api.max_body_bytes", [](HubConfig& c, uint64_t v) { c.api.max_body_bytes = v; },
      uint64_t{1} << 34);
  u32(
      "api.max_header_bytes",
      [](HubConfig& c, uint64_t v) { c.api.max_header_bytes = static_cast<uint32_t>(v); },
      1u << 20);
  u32("api.header_timeout_ms",
      [](HubConfig& c, uint64_t v) { c.api.header_timeout_ms = static_cast<uint32_t>(v); });
  u32("api.body_timeout_ms",
      [](HubConfig& c, uint64_t v) { c.api.body_timeout_ms = static_cast<uint32_t>(v); });
  u32("api.idle_timeout_ms",
      [](HubConfig& c, uint64_t v) { c.api.idle_timeout_ms = static_cast<uint32_t>(v); });
  u32("api.max_connections",
      [](HubConfig& c, uint64_t v) { c.api.max_connections = static_cast<uint32_t>(v); });
  u32(
      "api.threads", [](HubConfig& c, uint64_t v) { c.api.threads = static_cast<uint32_t>(v); },
      64);
  boolean("api.metrics_allow_remote", [](HubConfig& c, bool v) { c.api.metrics_allow_remote = v; });
  str("database.url", [](HubConfig& c, const std::string& v) { c.database.url = v; });
  u32(
      "database.pool_size",
      [](HubConfig& c, uint64_t v) { c.database.pool_size = static_cast<uint32_t>(v); }, 256);
  u32(
      "database.connect_timeout_s",
      [](HubConfig& c, uint64_t v) { c.database.connect_timeout_s = static_cast<uint32_t>(v); },
      600);
  u32(
      "identity.session_idle_timeout_s",
      [](HubConfig& c, uint64_t v) {
        c.identity.session_idle_timeout_s = static_cast<uint32_t>(v);
      },
      7 * 24 * 3600);
  u32(
      "identity.session_absolute_timeout_s",
      [](HubConfig& c, uint64_t v) {
        c.identity.session_absolute_timeout_s = static_cast<uint32_t>(v);
      },
      30 * 24 * 3600);
  u32(
      "identity.password_opslimit",
      [](HubConfig& c, uint64_t v) { c.identity.password_opslimit = static_cast<uint32_t>(v); },
      64);
  u32(
      "identity.password_memlimit_kib",
      [](HubConfig& c, uint64_t v) { c.identity.password_memlimit_kib = static_cast<uint32_t>(v); },
      4u << 20);
  str("vault.master_key_file",
      [](HubConfig& c, const std::string& v) { c.vault.master_key_file = v; });
  boolean("vault.dev_master_key", [](HubConfig& c, bool v) { c.vault.dev_master_key = v; });
  u32(
      "vault.keep_versions",
      [](HubConfig& c, uint64_t v) { c.vault.keep_versions = static_cast<uint32_t>(v); }, 1000);
  str("plugins.path", [](HubConfig& c, const std::string& v) { c.plugins.path = v; });
  boolean("plugins.allow_unsigned", [](HubConfig& c, bool v) { c.plugins.allow_unsigned = v; });
  str("plugins.trusted_keys_file",
      [](HubConfig& c, const std::string& v) { c.plugins.trusted_keys_file = v; });
  str("plugins.http_proxy", [](HubConfig& c, const std::string& v) { c.plugins.http_proxy = v; });
  str("plugins.no_proxy", [](HubConfig& c, const std::string& v) { c.plugins.no_proxy = v; });
  u32(
      "plugins.op_timeout_ms",
      [](HubConfig& c, uint64_t v) { c.plugins.op_timeout_ms = static_cast<uint32_t>(v); },
      3600000);
  u32(
      "agents.heartbeat_s",
      [](HubConfig& c, uint64_t v) { c.agents.heartbeat_s = static_cast<uint32_t>(v); }, 3600);
  u32(
      "agents.enroll_rate_per_s",
      [](HubConfig& c, uint64_t v) { c.agents.enroll_rate_per_s = static_cast<double>(v); },
      1000000);
  u32(
      "agents.enroll_burst",
      [](HubConfig& c, uint64_t v) { c.agents.enroll_burst = static_cast<double>(v); }, 1000000);
  u32("shutdown_grace_ms",
      [](HubConfig& c, uint64_t v) { c.shutdown_grace_ms = static_cast<uint32_t>(v); });
  return keys;
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = build_keys();
  return k;
}

std::string env_name(const std::string& path) {
  std::string out = "HELM_";
  for (char ch : path) {
    out.push_back(ch == '.' ? '_'
                            : static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
  }
  return out;
}

// Applies one value given as text (environment, command line). Returns an error naming `origin`.
Status apply_text(HubConfig& cfg, const Key& key, const std::string& text,
                  const std::string& origin) {
  switch (key.kind) {
    case Kind::kListen: {
      auto addr = parse_listen_address(text);
      if (!addr) return Error{origin + ": " + addr.error().message};
      key.set_string(cfg, text);
      return {};
    }
    case Kind::kLogLevel:
      if (!log::parse_level(text)) {
        return Error{origin + ": log level '" + text + "' is not one of debug, info, warn, error"};
      }
      key.set_string(cfg, text);
      return {};
    case Kind::kString:
      key.set_string(cfg, text);
      return {};
    case Kind::kUnsigned: {
      uint64_t v = 0;
      const auto* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (ec != std::errc() || ptr != end || text.empty()) {
        return Error{origin + ": '" + text + "' is not a non-negative whole number"};
      }
      if (v > key.max) {
        return Error{origin + ": " + text + " is larger than the maximum " +
                     std::to_string(key.max)};
      }
      key.set_unsigned(cfg, v);
      return {};
    }
    case Kind::kBool:
      if (text == "true" || text == "1" || text == "yes") {
        key.set_bool(cfg, true);
      } else if (text == "false" || text == "0" || text == "no") {
        key.set_bool(cfg, false);
      } else {
        return Error{origin + ": '" + text + "' is not true or false"};
      }
      return {};
  }
  return {};
}

Status apply_json(HubConfig& cfg, const Key& key, const json& value, const std::string& file) {
  const std::string origin = file + ": key '" + key.path + "'";
  switch (key.kind) {
    case Kind::kString:
    case Kind::kListen:
    case Kind::kLogLevel:
      if (!value.is_string()) return Error{origin + " must be a string"};
      return apply_text(cfg, key, value.get<std::string>(), origin);
    case Kind::kUnsigned:
      if (!value.is_number_unsigned()) return Error{origin + " must be a non-negative integer"};
      return apply_text(cfg, key, std::to_string(value.get<uint64_t>()), origin);
    case Kind::kBool:
      if (!value.is_boolean()) return Error{origin + " must be true or false"};
      key.set_bool(cfg, value.get<bool>());
      return {};
  }
  return {};
}

std::string known_under(const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& k : keys()) {
    if (k.path.rfind(prefix, 0) != 0) continue;
    std::string rest = k.path.substr(prefix.size());
    rest = rest.substr(0, rest.find('.'));
    if (std::find(names.begin(), names.end(), rest) == names.end()) names.push_back(rest);
  }
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

Status walk(HubConfig& cfg, const json& obj, const std::string& prefix, const std::string& file) {
  for (const auto& [name, value] : obj.items()) {
    const std::string path = prefix + name;
    auto it =
        std::find_if(keys().begin(), keys().end(), [&](const Key& k) { return k.path == path; });
    if (it != keys().end()) {
      if (auto st = apply_json(cfg, *it, value, file); !st) return st;
      continue;
    }
    const bool is_section = std::any_of(keys().begin(), keys().end(), [&](const Key& k) {
      return k.path.rfind(path + ".", 0) == 0;
    });
    if (is_section) {
      if (!value.is_object()) return Error{file + ": '" + path + "' must be an object"};
      if (auto st = walk(cfg, value, path + ".", file); !st) return st;
      continue;
    }
    return Error{file + ": unknown configuration key '" + path + "' (known keys" +
                 (prefix.empty() ? "" : " in '" + prefix.substr(0, prefix.size() - 1) + "'") +
                 ": " + known_under(prefix) + ")"};
  }
  return {};
}

}  // namespace

Expected<ListenAddress> parse_listen_address(const std::string& text) {
  ListenAddress out;
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Error{"listen address '" + text + "' must look like [::1]:8443"};
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      return Error{"listen address '" + text + "' must look like HOST:PORT, e.g. 127.0.0.1:8443"};
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) host = "0.0.0.0";
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return Error{"listen address '" + text + "' has no valid port (0-65535)"};
  }
  out.host = host;
  out.port = static_cast<uint16_t>(value);
  return out;
}

std::vector<std::pair<std::string, std::string>> known_keys() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& k : keys())
    out.emplace_back(k.path, env_name(k.path));
  return out;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

Expected<HubConfig> load(const CommandLineOverrides& cli,
                         const std::map<std::string, std::string>& environment) {
  HubConfig cfg;
  std::string file = cli.config_file;
  if (file.empty()) {
    if (auto it = environment.find("HELM_CONFIG"); it != environment.end()) file = it->second;
  }
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return Error{"cannot read config file '" + file + "'"};
    std::stringstream buf;
    buf << in.rdbuf();
    json doc = json::parse(buf.str(), nullptr, false);
    if (doc.is_discarded()) return Error{file + ": not valid JSON"};
    if (!doc.is_object()) return Error{file + ": the configuration must be a JSON object"};
    if (auto st = walk(cfg, doc, "", file); !st) return st.error();
  }
  for (const auto& key : keys()) {
    const auto name = env_name(key.path);
    if (auto it = environment.find(name); it != environment.end()) {
      if (auto st = apply_text(cfg, key, it->second, "environment variable " + name); !st) {
        return st.error();
      }
    }
  }
  auto by_path = [](const std::string& path) -> const Key& {
    return *std::find_if(keys().begin(), keys().end(),
                         [&](const Key& k) { return k.path == path; });
  };
  const std::pair<const std::string*, const char*> flags[] = {
      {&cli.data_dir, "data_dir"},
      {&cli.database_url, "database.url"},
      {&cli.api_listen, "api.listen"},
      {&cli.log_level, "log.level"},
  };
  for (const auto& [value, path] : flags) {
    if (value->empty()) continue;
    std::string flag = std::string("--") + path;
    std::replace(flag.begin(), flag.end(), '.', '-');
    std::replace(flag.begin(), flag.end(), '_', '-');
    if (auto st = apply_text(cfg, by_path(path), *value, flag); !st) {
      return st.error();
    }
  }
  if (cfg.data_dir.empty()) {
    return Error{"no data directory: pass --data-dir DIR (or set HELM_DATA_DIR)"};
  }
  if (cfg.api.tls_cert_file.empty() != cfg.api.tls_key_file.empty()) {
    return Error{"api.tls_cert_file and api.tls_key_file must be given together"};
  }
  if (cfg.database.pool_size == 0) return Error{"database.pool_size must be at least 1"};
  if (cfg.api.threads == 0) return Error{"api.threads must be at least 1"};
  if (cfg.identity.password_opslimit < 1 || cfg.identity.password_memlimit_kib < 8) {
    return Error{
        "identity.password_opslimit must be at least 1 and password_memlimit_kib at least 8"};
  }
  if (cfg.vault.keep_versions < 1) return Error{"vault.keep_versions must be at least 1"};
  if (cfg.identity.session_idle_timeout_s < 1 || cfg.identity.session_absolute_timeout_s < 1) {
    return Error{"identity session timeouts must be at least 1 second"};
  }
  return cfg;
}

}  // namespace helm::config
