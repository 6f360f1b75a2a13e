#include "helm/plugins/manifest.hpp"

#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "helm/broker/event_bus.hpp"

namespace helm::plugins {
namespace {

bool is_valid_plugin_name(std::string_view name) {
  if (name.size() < 2 || name.size() > 63) return false;
  if (name.front() < 'a' || name.front() > 'z') return false;
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

bool is_valid_library_file_name(std::string_view name) {
  constexpr std::string_view kSuffix = ".so";
  if (name.size() <= kSuffix.size() || name.size() > 255) return false;
  if (name.substr(name.size() - kSuffix.size()) != kSuffix) return false;
  if (name.front() == '.' || name.front() == '-' || name.front() == '+') return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/// The member `key` as a non-empty string, or nullptr after recording a problem.
const std::string* string_member(const nlohmann::json& manifest, const char* key,
                                 std::vector<std::string>& problems) {
  const auto found = manifest.find(key);
  if (found == manifest.end()) {
    problems.push_back(std::string("\"") + key + "\" is required");
    return nullptr;
  }
  if (!found->is_string() || found->get_ref<const std::string&>().empty()) {
    problems.push_back(std::string("\"") + key + "\" must be a non-empty string, got " +
                       found->dump());
    return nullptr;
  }
  return &found->get_ref<const std::string&>();
}

}  // namespace

std::optional<AbiVersion> parse_abi_version(std::string_view text) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == text.size()) return std::nullopt;
  const auto parse_part = [](std::string_view part) -> std::optional<std::uint16_t> {
    if (part.size() > 1 && part.front() == '0') return std::nullopt;
    unsigned value = 0;
    const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (error != std::errc() || end != part.data() + part.size() ||
        value > std::numeric_limits<std::uint16_t>::max()) {
      return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
  };
  const auto major = parse_part(text.substr(0, dot));
  const auto minor = parse_part(text.substr(dot + 1));
  if (!major || !minor) return std::nullopt;
  return AbiVersion{*major, *minor};
}

std::string to_string(AbiVersion version) {
  return std::to_string(version.major) + "." + std::to_string(version.minor);
}

std::vector<std::string> check_manifest_basics(const nlohmann::json& manifest) {
  std::vector<std::string> problems;
  if (!manifest.is_object()) {
    problems.push_back(std::string("the manifest must be a JSON object, got ") +
                       manifest.type_name());
    return problems;
  }
  if (const std::string* name = string_member(manifest, "name", problems);
      name != nullptr && !is_valid_plugin_name(*name)) {
    problems.push_back("\"name\" must match ^[a-z][a-z0-9-]{1,62}$, got \"" + *name + "\"");
  } else if (name != nullptr && *name == broker::kHubSource) {
    // Event subscribers tell the hub's own events (session.*) by their source "hub".
    problems.push_back("\"name\" must not be \"hub\": the hub's own events come from \"hub\"");
  }
  string_member(manifest, "version", problems);
  string_member(manifest, "kind", problems);
  if (const std::string* abi = string_member(manifest, "abi", problems);
      abi != nullptr && !parse_abi_version(*abi)) {
    problems.push_back("\"abi\" must be MAJOR.MINOR such as \"1.0\", got \"" + *abi + "\"");
  }
  if (const std::string* library = string_member(manifest, "library", problems);
      library != nullptr && !is_valid_library_file_name(*library)) {
    problems.push_back(
        "\"library\" must be the file name of the shared library in the plugin "
        "directory, ending in .so, without a directory, got \"" +
        *library + "\"");
  }
  const auto operations = manifest.find("operations");
  if (operations == manifest.end()) {
    problems.emplace_back("\"operations\" is required");
  } else if (!operations->is_object()) {
    problems.push_back(std::string("\"operations\" must be an object, got ") +
                       operations->type_name());
  } else {
    for (const auto& [op, declaration] : operations->items()) {
      if (!declaration.is_object()) {
        problems.push_back("\"operations\" member \"" + op + "\" must be an object");
      }
    }
  }
  return problems;
}

}  // namespace helm::plugins
