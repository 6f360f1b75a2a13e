// helm-loadgen: simulate many agents over real TLS WebSockets against a hub and report what the
// hub spent on them.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "helm/agent/log.hpp"
#include "loadgen.hpp"

namespace {

constexpr const char* kUsage =
    "usage: helm-loadgen --server URL (--key KEY --agents N | --tokens FILE [--agents N])\n"
    "                    [--ca-file F | --pin SHA256] [--rate R] [--duration S] [--hub-pid PID]\n"
    "                    [--save-tokens FILE] [--heartbeat-s S] [--threads T] [--json]\n"
    "\n"
    "Enrolls N agents with an N-use key (or reuses tokens saved with --save-tokens), connects\n"
    "them at R new agents per second, keeps them up for S seconds (default 30) answering\n"
    "heartbeats and ping/inventory commands, then prints a JSON summary on stdout. With\n"
    "--hub-pid it samples the hub's RSS and CPU at start, after connecting and after the steady\n"
    "phase. --json: no progress line on stderr.\n";

bool to_number(const std::string& text, double& out) {
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return !text.empty() && end && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  using helm::agent::loadgen::Options;
  Options options;
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    if (name == "--json") {
      options.json_only = true;
      continue;
    }
    if (name == "--help" || name == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "helm-loadgen: %s needs a value\n\n%s", name.c_str(), kUsage);
      return 2;
    }
    flags[name] = argv[++i];
  }
  for (const auto& [name, value] : flags) {
    double number = 0;
    const bool numeric = to_number(value, number);
    if (name == "--server") {
      options.server = value;
    } else if (name == "--key") {
      options.key = value;
    } else if (name == "--tokens") {
      options.tokens_file = value;
    } else if (name == "--ca-file") {
      options.trust.ca_file = value;
    } else if (name == "--pin") {
      options.trust.pin = helm::agent::parse_pin(value);
      if (!options.trust.pin) {
        std::fprintf(stderr, "helm-loadgen: --pin must be a SHA-256 in hex\n");
        return 2;
      }
    } else if (name == "--save-tokens") {
      options.save_tokens = value;
    } else if (numeric && number >= 0 && name == "--agents") {
      options.agents = static_cast<int>(number);
    } else if (numeric && number >= 0 && name == "--rate") {
      options.rate = number;
    } else if (numeric && number >= 0 && name == "--duration") {
      options.duration_s = number;
    } else if (numeric && number > 0 && name == "--hub-pid") {
      options.hub_pid = static_cast<pid_t>(number);
    } else if (numeric && number >= 0 && name == "--heartbeat-s") {
      options.heartbeat_s = static_cast<int>(number);
    } else if (numeric && number >= 1 && name == "--threads") {
      options.threads = static_cast<int>(number);
    } else {
      std::fprintf(stderr, "helm-loadgen: bad option %s %s\n\n%s", name.c_str(), value.c_str(),
                   kUsage);
      return 2;
    }
  }
  if (!options.trust.ca_file.empty() && options.trust.pin) {
    std::fprintf(stderr, "helm-loadgen: give --ca-file or --pin, not both\n");
    return 2;
  }
  const bool enrolling = options.tokens_file.empty();
  if ((enrolling && (options.server.empty() || options.key.empty() || options.agents <= 0))) {
    std::fprintf(stderr, "helm-loadgen: --server with --key and --agents N, or --tokens FILE\n\n%s",
                 kUsage);
    return 2;
  }
  const auto summary = helm::agent::loadgen::run(options);
  std::printf("%s\n", summary.dump(options.json_only ? -1 : 2).c_str());
  if (summary.contains("error")) return 1;
  return summary.value("connected", 0) > 0 ? 0 : 1;
}
