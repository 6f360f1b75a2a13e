/// @brief Private: the WebSocket upgrade to the hub's transport, shared by the agent and the
/// load generator.
#pragma once

#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <string>

#include "helm/agent/result.hpp"
#include "tls_connect.hpp"

namespace helm::agent::detail {

using WsStream = boost::beast::websocket::stream<TlsStream>;

/// Subprotocol, bearer token, frame size limit, handshake/close timeouts, text frames.
void prepare_websocket(WsStream& ws, const std::string& device_token,
                       const std::string& user_agent);

/// Why the upgrade failed, saying what to do about a 401.
std::string describe_upgrade_failure(const boost::system::error_code& ec,
                                     const boost::beast::websocket::response_type& response);

/// The hub must have selected the helm.agent.v1 subprotocol.
Status check_upgrade(const boost::beast::websocket::response_type& response);

}  // namespace helm::agent::detail
