/// @brief The local run_script policy: which interpreters may run, output cap, longest timeout.
#pragma once

#include "helm/agent/result.hpp"

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace helm::agent {

struct ScriptPolicy {
  std::vector<std::string> allowed_interpreters;  // absolute paths, compared exactly
  std::size_t output_cap_bytes = 64 * 1024;       // per stream
  int max_timeout_s = 300;

  bool allows(std::string_view interpreter) const;
};

/// Parses {"allowed_interpreters": [...], "output_cap_bytes": N, "max_timeout_s": N}; unknown
/// keys and relative interpreter paths are refused.
Expected<ScriptPolicy> parse_policy(std::string_view json_text);
Expected<ScriptPolicy> load_policy(const std::filesystem::path& file);

}  // namespace helm::agent
