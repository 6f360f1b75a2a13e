// transport-wss: the agent transport plugin. Agents connect over WebSocket on TLS 1.3 at
// /agent/v1 (subprotocol helm.agent.v1) and speak the agent protocol's JSON frames; the hub
// checks their tokens and receives their frames through the ABI 1.1 transport functions.
#include <memory>

#include <helm/plugin.hpp>

#include "server.hpp"
#include "transport_config.hpp"

namespace helm::transport {
namespace {

class TransportWss final : public sdk::TransportPlugin {
 public:
  TransportWss(sdk::Host host, const sdk::Config& config)
      : TransportPlugin(host),
        server_(std::make_unique<Server>(host, TransportConfig::parse(config))) {}

  sdk::Result<void> start() override { return server_->start(); }
  void stop() override { server_->stop(); }

  sdk::Status device_send(std::string_view device_id, std::string_view frame_json) override {
    return server_->send(device_id, frame_json);
  }

  void device_close(std::string_view device_id, std::uint16_t code,
                    std::string_view reason) override {
    server_->close(device_id, code, reason);
  }

 private:
  std::unique_ptr<Server> server_;
};

}  // namespace
}  // namespace helm::transport

HELM_EXPORT_TRANSPORT_PLUGIN(helm::transport::TransportWss, "transport-wss")
