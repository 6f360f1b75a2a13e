// helm-agent: enroll this machine with a Helm hub, then keep it connected and answer commands.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "helm/agent/agent.hpp"
#include "helm/agent/enroll.hpp"
#include "helm/agent/log.hpp"
#include "helm/agent/state.hpp"
#include "helm/agent/system_info.hpp"

namespace {

using namespace helm::agent;

constexpr const char* kUsage =
    "usage:\n"
    "  helm-agent enroll --server URL --key KEY [--ca-file F | --pin SHA256] [--state-dir DIR]\n"
    "                    [--proxy http://host:port]\n"
    "  helm-agent run [--state-dir DIR] [--policy F] [--proxy http://host:port]\n"
    "  helm-agent version\n"
    "\n"
    "--key may be omitted when HELM_ENROLLMENT_KEY is set (keeps it out of the process list).\n"
    "--pin is the SHA-256 of the hub certificate's DER encoding, in hex (colons and case are\n"
    "ignored). Without --ca-file or --pin the system trust store verifies the hub.\n"
    "--state-dir defaults to /var/lib/helm-agent. HTTPS_PROXY/https_proxy and NO_PROXY are\n"
    "honoured when --proxy is not given. --log-level debug|info|warn|error.\n";

// --flag value pairs after the subcommand; nullopt-like empty map entry on error.
bool parse_flags(int argc, char** argv, const std::vector<std::string>& allowed,
                 std::map<std::string, std::string>& flags) {
  for (int i = 2; i < argc; ++i) {
    std::string name = argv[i];
    std::string value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "helm-agent: %s needs a value\n\n%s", name.c_str(), kUsage);
      return false;
    }
    bool known = name == "--log-level";
    for (const auto& a : allowed)
      known = known || name == a;
    if (!known) {
      std::fprintf(stderr, "helm-agent: unknown option %s\n\n%s", name.c_str(), kUsage);
      return false;
    }
    flags[name] = value;
  }
  if (flags.count("--log-level")) {
    const auto& level = flags["--log-level"];
    if (level == "debug") {
      log::set_level(log::Level::kDebug);
    } else if (level == "info") {
      log::set_level(log::Level::kInfo);
    } else if (level == "warn") {
      log::set_level(log::Level::kWarn);
    } else if (level == "error") {
      log::set_level(log::Level::kError);
    } else {
      std::fprintf(stderr, "helm-agent: --log-level must be debug, info, warn or error\n");
      return false;
    }
  }
  return true;
}

int enroll_command(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  if (!parse_flags(argc, argv,
                   {"--server", "--key", "--ca-file", "--pin", "--state-dir", "--proxy"}, flags)) {
    return 2;
  }
  std::string key = flags["--key"];
  if (key.empty()) {
    if (const char* env = std::getenv("HELM_ENROLLMENT_KEY")) key = env;
  }
  if (flags["--server"].empty() || key.empty()) {
    std::fprintf(stderr, "helm-agent enroll: --server and --key are required\n\n%s", kUsage);
    return 2;
  }
  if (!flags["--ca-file"].empty() && !flags["--pin"].empty()) {
    std::fprintf(stderr, "helm-agent enroll: give --ca-file or --pin, not both\n");
    return 2;
  }
  EnrollRequest request;
  request.server = flags["--server"];
  while (!request.server.empty() && request.server.back() == '/')
    request.server.pop_back();
  request.enrollment_key = key;
  if (!flags["--pin"].empty()) {
    request.trust.pin = parse_pin(flags["--pin"]);
    if (!request.trust.pin) {
      std::fprintf(stderr,
                   "helm-agent enroll: --pin must be a SHA-256 in hex (64 digits, colons "
                   "allowed)\n");
      return 2;
    }
  }
  if (!flags["--ca-file"].empty()) {
    request.trust.ca_file = std::filesystem::absolute(flags["--ca-file"]).string();
  }
  const std::filesystem::path state_dir =
      flags["--state-dir"].empty() ? std::string(kDefaultStateDir) : flags["--state-dir"];
  if (auto made = ensure_state_dir(state_dir); !made) {
    log::error(made.error().message);
    return 2;
  }
  auto server = parse_url(request.server);
  if (!server) {
    log::error(server.error().message);
    return 2;
  }
  auto proxy =
      select_proxy(server.value(), flags["--proxy"], [](const char* n) { return std::getenv(n); });
  if (!proxy) {
    log::error(proxy.error().message);
    return 2;
  }
  request.proxy = proxy.value();
  auto id = machine_id(state_dir);
  if (!id) {
    log::error(id.error().message);
    return 2;
  }
  request.machine_id = id.value();
  request.host = host_identity();
  auto outcome = enroll(request);
  if (auto* failure = std::get_if<EnrollFailure>(&outcome)) {
    log::error("enrollment failed",
               {{"error", failure->message}, {"http_status", failure->http_status}});
    return 1;
  }
  auto& state = std::get<AgentState>(outcome);
  if (auto saved = save_state(state_dir, state); !saved) {
    log::error("enrolled, but the state file could not be written",
               {{"error", saved.error().message}});
    return 1;
  }
  log::info("enrolled", {{"device_id", state.device_id},
                         {"transport_url", state.transport_url},
                         {"state_file", state_file_path(state_dir).string()}});
  return 0;
}

int run_command(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  if (!parse_flags(argc, argv, {"--state-dir", "--policy", "--proxy"}, flags)) return 2;
  RunOptions options;
  options.state_dir =
      flags["--state-dir"].empty() ? std::string(kDefaultStateDir) : flags["--state-dir"];
  options.policy_file = flags["--policy"];
  options.proxy = flags["--proxy"];
  return run_agent(options);
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "enroll") return enroll_command(argc, argv);
  if (command == "run") return run_command(argc, argv);
  if (command == "version" || command == "--version") {
    std::printf("helm-agent %s\n", kAgentVersion);
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fputs(kUsage, stderr);
  return 2;
}
