/// @brief Private: helm-loadgen, many simulated agents over real TLS WebSockets against a hub.
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>
#include <string>

#include "helm/agent/net.hpp"

namespace helm::agent::loadgen {

struct Options {
  std::string server;       // https://host:port
  std::string key;          // enrollment key with at least `agents` uses
  int agents = 0;           // with --tokens: use at most this many (0: all)
  std::string tokens_file;  // JSON lines {device_id, device_token, transport_url, heartbeat_s}
  TlsTrust trust;
  double rate = 0;         // new agents per second, 0: as fast as possible
  double duration_s = 30;  // steady phase after every agent connected or failed
  pid_t hub_pid = 0;
  std::string save_tokens;
  int heartbeat_s = 0;  // 0: what the hub says in welcome
  bool json_only = false;
  int threads = 1;
  double connect_timeout_s = 0;  // 0: 60 s + agents / rate
};

/// CPU time, in ms, of process `root` and every process under it (children, their children…),
/// including what those descendants reaped of their own exited children: with `root` the hub,
/// the hub and its embedded PostgreSQL with the backends working for it.
double process_tree_cpu_ms(pid_t root);

/// Runs the load and returns the summary printed on stdout.
nlohmann::json run(const Options& options);

}  // namespace helm::agent::loadgen
