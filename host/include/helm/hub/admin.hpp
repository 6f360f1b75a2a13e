/// @brief `helm-hub admin …` commands, which work whether or not a hub runs on the data dir.
#pragma once

#include <string>
#include <vector>

namespace helm::hub {

/// Runs `helm-hub admin <args>`; returns the process exit code.
int admin_command(const std::vector<std::string>& args);

}  // namespace helm::hub
