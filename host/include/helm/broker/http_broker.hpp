/// @brief The hub's brokered outbound HTTPS client for plugins: one thread drives libcurl's multi
/// interface, enforces the declared outbound hosts, TLS verification and size and time limits,
/// and completes every accepted request exactly once, so no plugin thread waits on the network.
#pragma once

#include <helm/plugin_abi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "helm/core/expected.hpp"

namespace helm::broker {

/// One finished request, for metrics and access logs. Holds no path, query, header or body
/// (they may carry vendor credentials). The views are valid during the observe() call only.
struct TransferRecord {
  /// The request's method.
  std::string_view method;
  /// The URL's host and port, "api.example.com:443".
  std::string_view host_port;
  /// The status the completion got.
  helm_status status = HELM_STATUS_OK;
  /// HTTP status code; 0 when no response arrived.
  long status_code = 0;
  /// From submit() to completion.
  std::chrono::microseconds duration{0};
  /// Response body bytes received (0 unless status is OK).
  std::size_t response_bytes = 0;
};

/// Limits and routing of one broker, fixed for its lifetime (set by the hub's configuration).
struct HttpBrokerOptions {
  /// Whole-request deadline when a request gives none (OutboundRequest::timeout == 0).
  std::chrono::milliseconds default_timeout{30'000};
  /// Upper bound for any request's deadline; longer ones are shortened to this.
  std::chrono::milliseconds max_timeout{120'000};
  /// Connecting (TCP + TLS handshake) must finish within min(this, the request's deadline).
  std::chrono::milliseconds connect_timeout{10'000};
  /// Largest response body accepted; a larger one is aborted as soon as the cap is exceeded.
  std::size_t max_response_bytes = 16u << 20;
  /// Largest total size of the response head (status line and headers).
  std::size_t max_response_header_bytes = 256u << 10;
  /// Largest request body accepted by submit().
  std::size_t max_request_body = 8u << 20;
  /// Accepted requests not completed yet; submit() refuses beyond this.
  std::size_t max_in_flight = 1024;
  /// The same per OutboundRequest::owner, so one busy plugin cannot take every slot; 0: none.
  std::size_t max_in_flight_per_owner = 256;
  /// Open connections per host:port (shared by all plugins; connections are reused).
  long max_connections_per_host = 8;
  /// "http://host:port" or "https://host:port" (may hold user:password); empty: no proxy.
  std::string proxy;
  /// Comma-separated hosts reached without the proxy (curl's NO_PROXY syntax); empty: none.
  std::string no_proxy;
  /// When true and `proxy` is empty, HTTPS_PROXY / https_proxy and NO_PROXY / no_proxy are read
  /// from the environment once, at construction. Otherwise the environment is ignored.
  bool proxy_from_environment = false;
  /// Where completions run, e.g. a worker pool's post(). Empty: on the broker thread itself, in
  /// which case completions must be quick and must not call shutdown() or destroy the broker.
  std::function<void(std::function<void()>)> dispatch;
  /// Told about every accepted request once it finished, on the broker thread, just before its
  /// completion is dispatched (e.g. to feed a latency histogram). Must be quick; empty: none.
  std::function<void(const TransferRecord&)> observe;
};

/// One outbound request as a plugin asked for it, after the host copied it out of the ABI struct.
struct OutboundRequest {
  /// "GET", "POST", "PUT", "PATCH", "DELETE" or "HEAD" (exactly, upper case).
  std::string method;
  /// Absolute https:// URL without user information.
  std::string url;
  /// Sent in order. Host, Content-Length, Connection and Transfer-Encoding are refused (the
  /// broker sets them); names must be HTTP tokens, values must not hold CR, LF or NUL.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Request body, any bytes; refused for HEAD.
  std::string body;
  /// Whole-request deadline; 0: HttpBrokerOptions::default_timeout. Capped at max_timeout.
  std::chrono::milliseconds timeout{0};
  /// The plugin's capabilities.outbound_hosts: "api.example.com", "*.example.com" (any
  /// subdomain, not the bare name), each optionally with ":port" (default 443). Matched
  /// case-insensitively against the URL's host and port.
  std::vector<std::string> allowed_hosts;
  /// Trust for an on-premises vendor: PEM certificates. When set, ONLY these are trusted for
  /// this request (the system CA bundle and CA directory are not consulted). Empty: the system
  /// store. Connections are reused only between requests with the same trust.
  std::string ca_pem;
  /// Who asked (e.g. the plugin instance id), for cancel_owner(). Not interpreted otherwise.
  std::uint64_t owner = 0;
};

/// An HTTP response as the vendor sent it. Redirects are never followed: a 3xx arrives as is.
struct OutboundResponse {
  /// HTTP status code, 100..599.
  long status_code = 0;
  /// Headers of the final response in wire order, names as sent by the server.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Body (empty for HEAD).
  std::string body;
};

/// Called exactly once per accepted request, never on submit()'s stack: on the broker thread or
/// through HttpBrokerOptions::dispatch. Being on another thread, it can in principle start while
/// submit() is still returning: set up what it needs before calling submit(). status OK (any
/// HTTP status code; response non-null), or TIMEOUT, CANCELLED, UPSTREAM_UNAVAILABLE (DNS,
/// connect, TLS incl. certificate verification, proxy, broken replies), RESOURCE_EXHAUSTED
/// (response over the cap) or INTERNAL (a broker bug) with response null and error_message
/// saying what went wrong (host:port, never the path or query). response is borrowed for the
/// call; the callee may move out of it.
using Completion =
    std::function<void(helm_status status, OutboundResponse* response, std::string error_message)>;

/// What submit() answered: accepted (status OK and an id) or refused (another status and a
/// message for the person who has to fix it; the completion will never be called).
struct SubmitResult {
  /// HELM_STATUS_OK when accepted; FORBIDDEN, INVALID_INPUT, RESOURCE_EXHAUSTED, UNAVAILABLE
  /// (after shutdown) or INTERNAL (libcurl lacks a needed feature) when refused.
  helm_status status = HELM_STATUS_OK;
  /// Non-zero id of the accepted request, for cancel(); 0 when refused.
  std::uint64_t id = 0;
  /// Why it was refused; empty when accepted. Never contains header values or bodies.
  std::string message;

  /// True when the request was accepted.
  bool ok() const { return status == HELM_STATUS_OK; }
};

/// True when `host` (as in a URL, case-insensitive, one trailing dot ignored) and `port` match
/// one of `patterns` (capabilities.outbound_hosts syntax; malformed patterns match nothing).
bool host_allowed(std::string_view host, std::uint16_t port,
                  const std::vector<std::string>& patterns);

/// Checks options before a broker is built from them: timeouts, limits and the proxy URL.
Status validate_options(const HttpBrokerOptions& options);

/// The broker. Thread-safe: every member may be called from any thread, none blocks on the
/// network (shutdown() and the destructor wait for the broker thread to finish).
class HttpBroker {
 public:
  /// Starts the broker thread. Throws std::invalid_argument when validate_options() fails
  /// (configuration is validated before the hub starts, so that is a broken invariant).
  explicit HttpBroker(HttpBrokerOptions options);
  /// shutdown(): pending requests complete with CANCELLED here, so whatever their completions
  /// use must outlive the broker (or call shutdown() before destroying it).
  ~HttpBroker();
  HttpBroker(const HttpBroker&) = delete;
  HttpBroker& operator=(const HttpBroker&) = delete;

  /// Validates `request` and queues it. Accepted: `complete` will be called exactly once, later,
  /// from another thread. Refused: the result says why and `complete` is never called.
  SubmitResult submit(OutboundRequest request, Completion complete);

  /// Ends an accepted request early: its completion gets CANCELLED unless it already completed.
  /// Unknown or finished ids are ignored.
  void cancel(std::uint64_t id);

  /// cancel() for every request submitted with this owner (a plugin instance that is stopping).
  void cancel_owner(std::uint64_t owner);

  /// Refuses new requests (UNAVAILABLE), completes every pending one with CANCELLED and joins
  /// the broker thread. No completion is started after it returns; ones already handed to
  /// `dispatch` may still be running on that pool. Idempotent. Must not be called from a
  /// completion running on the broker thread.
  void shutdown();

  /// Requests accepted and not completed yet.
  std::size_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace helm::broker
