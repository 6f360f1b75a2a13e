/// @brief `helm-hub vault …` (master-key and data-key rotation) and `helm-hub audit verify`,
/// which work whether or not a hub runs on the data dir.
#pragma once

#include <string>
#include <vector>

namespace helm::secrets {

/// Runs `helm-hub vault <args>`; returns the process exit code.
int vault_command(const std::vector<std::string>& args);

/// Runs `helm-hub audit <args>`; returns the process exit code (1 when the chain is broken).
int audit_command(const std::vector<std::string>& args);

}  // namespace helm::secrets
