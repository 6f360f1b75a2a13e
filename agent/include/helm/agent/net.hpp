/// @brief Where and how the agent connects: URLs, HTTP CONNECT proxy selection and TLS trust.
#pragma once

#include "helm/agent/pin.hpp"
#include "helm/agent/result.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace helm::agent {

struct Url {
  std::string scheme;  // https, wss, http
  std::string host;    // without IPv6 brackets
  std::uint16_t port = 0;
  std::string target = "/";  // path and query

  /// host:port as written in a Host header or CONNECT request (brackets for IPv6).
  std::string authority() const;
};

Expected<Url> parse_url(std::string_view text);

struct ProxyConfig {
  std::string host;
  std::uint16_t port = 0;
  std::string authorization;  // "Basic ..." when the proxy URL had user:password, else empty
};

/// True when `host` is excluded by a NO_PROXY list: "*", exact names, or suffixes (".corp" and
/// "corp" both match "a.corp").
bool no_proxy_matches(std::string_view no_proxy, std::string_view host);

/// `explicit_proxy` (--proxy) wins; else HTTPS_PROXY / https_proxy from `getenv` unless NO_PROXY
/// / no_proxy excludes the host. nullopt: connect directly.
Expected<std::optional<ProxyConfig>> select_proxy(
    const Url& target, std::string_view explicit_proxy,
    const std::function<const char*(const char*)>& getenv);

/// How the hub is verified. With a pin only the leaf certificate's DER hash counts; with a CA
/// file, the chain and host name; with neither, the system trust store and host name.
struct TlsTrust {
  std::optional<CertPin> pin;
  std::string ca_file;
};

}  // namespace helm::agent
