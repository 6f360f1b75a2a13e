#include "helm/agent/policy.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace helm::agent {

bool ScriptPolicy::allows(std::string_view interpreter) const {
  return std::find(allowed_interpreters.begin(), allowed_interpreters.end(), interpreter) !=
         allowed_interpreters.end();
}

Expected<ScriptPolicy> parse_policy(std::string_view json_text) {
  const auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error{"policy is not a JSON object"};
  }
  ScriptPolicy policy;
  for (const auto& [key, value] : doc.items()) {
    if (key == "allowed_interpreters") {
      if (!value.is_array()) return Error{"policy: allowed_interpreters must be an array"};
      for (const auto& item : value) {
        if (!item.is_string() || item.get<std::string>().empty() ||
            item.get<std::string>().front() != '/') {
          return Error{"policy: every allowed interpreter must be an absolute path, got " +
                       item.dump()};
        }
        policy.allowed_interpreters.push_back(item.get<std::string>());
      }
    } else if (key == "output_cap_bytes") {
      if (!value.is_number_integer() || value.get<long long>() <= 0 ||
          value.get<long long>() > 16LL * 1024 * 1024) {
        return Error{"policy: output_cap_bytes must be an integer from 1 to 16777216"};
      }
      policy.output_cap_bytes = value.get<std::size_t>();
    } else if (key == "max_timeout_s") {
      if (!value.is_number_integer() || value.get<long long>() <= 0 ||
          value.get<long long>() > 86400) {
        return Error{"policy: max_timeout_s must be an integer from 1 to 86400"};
      }
      policy.max_timeout_s = value.get<int>();
    } else {
      return Error{"policy: unknown key \"" + key +
                   "\" (allowed: allowed_interpreters, output_cap_bytes, max_timeout_s)"};
    }
  }
  return policy;
}

Expected<ScriptPolicy> load_policy(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error{"cannot read policy file " + file.string()};
  std::ostringstream text;
  text << in.rdbuf();
  auto policy = parse_policy(text.str());
  if (!policy) return Error{file.string() + ": " + policy.error().message};
  return policy;
}

}  // namespace helm::agent
