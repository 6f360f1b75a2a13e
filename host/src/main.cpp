// helm-hub: the command-line entry point. Subcommands: serve, version, help.
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "helm/config/hub_config.hpp"
#include "helm/hub/admin.hpp"
#include "helm/hub/build_info.hpp"
#include "helm/hub/hub.hpp"
#include "helm/secrets/vault_cli.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage:
  helm-hub serve --data-dir DIR [--config FILE] [--database-url URL] [--api-listen HOST:PORT]
                 [--log-level debug|info|warn|error]
  helm-hub admin bootstrap (--data-dir DIR | --database-url URL) --org NAME --email EMAIL
                           --password-stdin
  helm-hub vault rotate-master --new-key-file FILE (--data-dir DIR | --database-url URL)
                               [--master-key-file OLD]
  helm-hub vault rotate-org-key --org ID (--data-dir DIR | --database-url URL)
  helm-hub audit verify (--data-dir DIR | --database-url URL)
  helm-hub version
  helm-hub help

serve runs the hub in the foreground. Without --database-url it starts a private PostgreSQL
inside DIR (Unix socket only). Every configuration key can also be set in the JSON config file
or through an environment variable:
)";

int usage_error(const std::string& message) {
  std::cerr << "helm-hub: " << message << "\n\n" << kUsage;
  return 2;
}

int serve_command(const std::vector<std::string>& args) {
  helm::config::CommandLineOverrides cli;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    std::string value;
    std::string name = flag;
    if (const auto eq = flag.find('='); eq != std::string::npos && flag.rfind("--", 0) == 0) {
      name = flag.substr(0, eq);
      value = flag.substr(eq + 1);
    } else if (flag.rfind("--", 0) == 0) {
      if (i + 1 >= args.size()) return usage_error(flag + " needs a value");
      value = args[++i];
    }
    if (name == "--data-dir") {
      cli.data_dir = value;
    } else if (name == "--config") {
      cli.config_file = value;
    } else if (name == "--database-url") {
      cli.database_url = value;
    } else if (name == "--api-listen") {
      cli.api_listen = value;
    } else if (name == "--log-level") {
      cli.log_level = value;
    } else {
      return usage_error("unknown option '" + flag + "'");
    }
  }
  auto cfg = helm::config::load(cli, helm::config::process_environment());
  if (!cfg) {
    std::cerr << "helm-hub: configuration error: " << cfg.error().message << "\n";
    return 2;
  }
  return helm::hub::serve(cfg.value());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("no command given");
  const std::string command = args.front();
  args.erase(args.begin());
  if (command == "serve") return serve_command(args);
  if (command == "admin") return helm::hub::admin_command(args);
  if (command == "vault") return helm::secrets::vault_command(args);
  if (command == "audit") return helm::secrets::audit_command(args);
  if (command == "version" || command == "--version") {
    std::cout << "helm-hub " << helm::hub::kVersion << " (" << helm::hub::kGitCommit << ")\n";
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::cout << kUsage;
    for (const auto& [key, env] : helm::config::known_keys()) {
      std::cout << "  " << key << std::string(key.size() < 28 ? 28 - key.size() : 1, ' ') << env
                << "\n";
    }
    return 0;
  }
  return usage_error("unknown command '" + command + "'");
}
