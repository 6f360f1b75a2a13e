/// @brief The hub's static configuration: defaults, a JSON file (unknown keys rejected), HELM_*
/// environment overrides and command-line flags, validated before anything starts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "helm/core/expected.hpp"

namespace helm::config {

struct ListenAddress {
  std::string host = "127.0.0.1";
  uint16_t port = 8443;
};

/// Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces).
Expected<ListenAddress> parse_listen_address(const std::string& text);

struct ApiConfig {
  ListenAddress listen;
  std::string tls_cert_file;  ///< PEM; empty: a development certificate in the data dir
  std::string tls_key_file;
  uint64_t max_body_bytes = 1024 * 1024;
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t header_timeout_ms = 10'000;  ///< the whole request head must arrive within this
  uint32_t body_timeout_ms = 30'000;
  uint32_t idle_timeout_ms = 60'000;  ///< keep-alive connections idle longer are closed
  uint32_t max_connections = 4096;
  uint32_t threads = 1;
  bool metrics_allow_remote = false;  ///< /metrics only from loopback unless set
};

struct DatabaseConfig {
  std::string url;  ///< empty: embedded PostgreSQL inside the data dir
  uint32_t pool_size = 4;
  uint32_t connect_timeout_s = 3;
};

struct IdentityConfig {
  uint32_t session_idle_timeout_s = 30 * 60;
  uint32_t session_absolute_timeout_s = 12 * 60 * 60;
  uint32_t password_opslimit = 2;          ///< argon2id passes
  uint32_t password_memlimit_kib = 65536;  ///< argon2id memory; with 2 passes about 0.25 s here
};

struct VaultConfig {
  std::string master_key_file;  ///< 0600 key file; empty: HELM_MASTER_KEY, else a dev key
  bool dev_master_key = false;  ///< use DATA_DIR/master.key even when HELM_MASTER_KEY is set
  uint32_t keep_versions = 5;   ///< versions kept per secret
};

struct PluginsConfig {
  std::string path;                ///< colon-separated; empty: <binary dir>/../plugins and the
                                   ///< installed /usr/lib/helm-hub/plugins
  bool allow_unsigned = false;     ///< development only: load plugins without a signature
  std::string http_proxy;          ///< http://host:port for plugins' outbound HTTPS; empty: none
  std::string no_proxy;            ///< comma-separated hosts that bypass http_proxy
  uint32_t op_timeout_ms = 30000;  ///< deadline of an operation whose manifest names none
  std::string trusted_keys_file;   ///< publisher keys ("helm-ed25519:..."), one per line
};

struct AgentsConfig {
  uint32_t heartbeat_s = 30;       ///< told to agents at enrollment and in welcome
  double enroll_rate_per_s = 5.0;  ///< enrollments per source address, refill rate
  double enroll_burst = 30.0;      ///< ... and burst (a fleet behind one NAT needs more)
};

struct HubConfig {
  std::string data_dir;
  std::string log_level = "info";
  ApiConfig api;
  DatabaseConfig database;
  IdentityConfig identity;
  VaultConfig vault;
  PluginsConfig plugins;
  AgentsConfig agents;
  uint32_t shutdown_grace_ms = 10'000;
};

/// Command-line values; empty means "not given".
struct CommandLineOverrides {
  std::string data_dir;
  std::string config_file;
  std::string database_url;
  std::string api_listen;
  std::string log_level;
};

/// Builds the configuration: defaults < config file < environment (HELM_*) < command line.
/// `environment` is passed in (not read from the process) so tests can pin it.
Expected<HubConfig> load(const CommandLineOverrides& cli,
                         const std::map<std::string, std::string>& environment);

/// The process environment as a map, for `load`.
std::map<std::string, std::string> process_environment();

/// Every accepted key, dotted ("api.listen"), and the environment variable that overrides it.
std::vector<std::pair<std::string, std::string>> known_keys();

}  // namespace helm::config
