/// @brief Private: TLS 1.3 client connections to the hub (direct or through an HTTP CONNECT
/// proxy), verified before the caller may send anything.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <memory>
#include <optional>

#include "helm/agent/net.hpp"
#include "helm/agent/result.hpp"

namespace helm::agent::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using TlsStream = asio::ssl::stream<beast::tcp_stream>;

/// A TLS 1.3-only client context trusting `trust` (CA file, or the system store; a pin is
/// checked per connection).
Expected<std::shared_ptr<asio::ssl::context>> make_client_context(const TlsTrust& trust);

/// Connects `stream` to `target` (through `proxy` if set) and completes a verified handshake.
/// `timeout` bounds the whole exchange; the stream's expiry is cleared on success.
asio::awaitable<Status> connect_tls(TlsStream& stream, const Url& target,
                                    const std::optional<ProxyConfig>& proxy, const TlsTrust& trust,
                                    std::chrono::seconds timeout);

}  // namespace helm::agent::detail
