#include "websocket_setup.hpp"

#include <boost/beast/websocket.hpp>

#include "helm/agent/frames.hpp"

namespace helm::agent::detail {

namespace websocket = boost::beast::websocket;
namespace http = boost::beast::http;

void prepare_websocket(WsStream& ws, const std::string& device_token,
                       const std::string& user_agent) {
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::seconds(30);
  timeouts.idle_timeout = websocket::stream_base::none();  // heartbeats decide liveness
  timeouts.keep_alive_pings = false;
  ws.set_option(timeouts);
  ws.set_option(websocket::stream_base::decorator(
      [bearer = "Bearer " + device_token, user_agent](websocket::request_type& req) {
        req.set(http::field::sec_websocket_protocol, kSubprotocol);
        req.set(http::field::authorization, bearer);
        req.set(http::field::user_agent, user_agent);
      }));
  ws.read_message_max(kMaxFrameBytes);
  ws.text(true);
}

std::string describe_upgrade_failure(const boost::system::error_code& ec,
                                     const websocket::response_type& response) {
  const unsigned status = response.result_int();
  if (status == 401) {
    return "the hub refused the device token (HTTP 401): the device may have been deleted or its "
           "token replaced; enroll again if this persists";
  }
  if (status != 0 && status != 101) {
    return "the hub refused the WebSocket upgrade with HTTP " + std::to_string(status);
  }
  return "WebSocket upgrade failed: " + ec.message();
}

Status check_upgrade(const websocket::response_type& response) {
  if (response[http::field::sec_websocket_protocol] != kSubprotocol) {
    return Error{"the hub did not accept subprotocol helm.agent.v1"};
  }
  return {};
}

}  // namespace helm::agent::detail
