#include "transport_config.hpp"

#include <charconv>
#include <string_view>

namespace helm::transport {
namespace {

[[noreturn]] void refuse(const std::string& message) {
  throw sdk::Failure(sdk::Status::kInvalidInput, message);
}

/// "host:port", "[v6 address]:port".
void parse_listen(std::string_view text, TransportConfig& out) {
  const std::string shown = "configuration value \"listen\" (\"" + std::string(text) + "\")";
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      refuse(shown + " must be [address]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) refuse(shown + " must be host:port, e.g. 0.0.0.0:7443");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || error != std::errc() || end != port.data() + port.size() ||
      value > 65535) {
    refuse(shown + " must be host:port with a port from 0 to 65535");
  }
  out.listen_host = std::string(host);
  out.listen_port = static_cast<std::uint16_t>(value);
}

}  // namespace

TransportConfig TransportConfig::parse(const sdk::Config& config) {
  static constexpr std::string_view kKnown[] = {
      "listen",         "tls_cert_file", "tls_key_file",       "max_frame_bytes",
      "send_queue_max", "io_threads",    "handshake_timeout_s"};
  if (!config.json().is_object()) refuse("the configuration must be a JSON object");
  for (const auto& [key, value] : config.json().items()) {
    bool known = false;
    for (const auto name : kKnown)
      known = known || key == name;
    if (!known) refuse("unknown configuration key \"" + key + "\"");
  }

  TransportConfig out;
  parse_listen(config.get_or<std::string>("listen", "0.0.0.0:7443"), out);
  out.tls_cert_file = config.get_or<std::string>("tls_cert_file", "");
  out.tls_key_file = config.get_or<std::string>("tls_key_file", "");
  if (out.tls_cert_file.empty() != out.tls_key_file.empty()) {
    refuse(
        "configuration values \"tls_cert_file\" and \"tls_key_file\" go together: give both "
        "or neither (neither uses the hub's certificate)");
  }
  if (const auto bytes = config.find<std::size_t>("max_frame_bytes")) {
    if (*bytes < 1024 || *bytes > 64 * 1024 * 1024) {
      refuse("configuration value \"max_frame_bytes\" must be between 1024 and 67108864");
    }
    out.max_frame_bytes = *bytes;
  }
  if (config.contains("send_queue_max") &&
      !config.get<nlohmann::json>("send_queue_max").is_object()) {
    refuse("configuration value \"send_queue_max\" must be an object {\"frames\", \"bytes\"}");
  }
  out.send_queue_max_frames =
      config.get_or<std::size_t>("/send_queue_max/frames", out.send_queue_max_frames);
  out.send_queue_max_bytes =
      config.get_or<std::size_t>("/send_queue_max/bytes", out.send_queue_max_bytes);
  if (out.send_queue_max_frames < 1 || out.send_queue_max_bytes < 1024) {
    refuse("configuration value \"send_queue_max\" needs frames >= 1 and bytes >= 1024");
  }
  out.io_threads = config.get_or<unsigned>("io_threads", out.io_threads);
  if (out.io_threads < 1 || out.io_threads > 64) {
    refuse("configuration value \"io_threads\" must be between 1 and 64");
  }
  out.handshake_timeout_s =
      config.get_or<std::uint32_t>("handshake_timeout_s", out.handshake_timeout_s);
  if (out.handshake_timeout_s < 1 || out.handshake_timeout_s > 600) {
    refuse("configuration value \"handshake_timeout_s\" must be between 1 and 600");
  }
  return out;
}

}  // namespace helm::transport
