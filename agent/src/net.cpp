#include "helm/agent/net.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace helm::agent {
namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace

std::string Url::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Expected<Url> parse_url(std::string_view text) {
  Url url;
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return Error{"URL " + std::string(text) + " has no scheme (expected https://host[:port])"};
  }
  url.scheme = lower(text.substr(0, scheme_end));
  std::uint16_t default_port = 0;
  if (url.scheme == "https" || url.scheme == "wss") {
    default_port = 443;
  } else if (url.scheme == "http" || url.scheme == "ws") {
    default_port = 80;
  } else {
    return Error{"URL " + std::string(text) + ": unsupported scheme " + url.scheme};
  }
  std::string_view rest = text.substr(scheme_end + 3);
  const auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  url.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (url.target.front() == '?') url.target = "/" + url.target;
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);  // credentials are read by select_proxy only
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return Error{"URL " + std::string(text) + ": bad IPv6"};
    url.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return Error{"URL " + std::string(text) + ": bad port"};
      port_text = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (url.host.empty()) return Error{"URL " + std::string(text) + " has no host"};
  url.port = default_port;
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [ptr, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      return Error{"URL " + std::string(text) + ": bad port"};
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host_in) {
  const std::string host = lower(host_in);
  std::size_t start = 0;
  while (start <= no_proxy.size()) {
    const auto comma = no_proxy.find(',', start);
    const auto end = comma == std::string_view::npos ? no_proxy.size() : comma;
    std::string entry = lower(trim(no_proxy.substr(start, end - start)));
    start = end + 1;
    if (entry.empty()) continue;
    if (entry == "*") return true;
    if (const auto colon = entry.rfind(':');
        colon != std::string::npos && entry.find(':') == colon) {
      entry = entry.substr(0, colon);  // "host:port": the port is not considered
    }
    if (entry.front() == '.') entry.erase(0, 1);
    if (host == entry) return true;
    if (host.size() > entry.size() && host.ends_with(entry) &&
        host[host.size() - entry.size() - 1] == '.') {
      return true;
    }
    if (comma == std::string_view::npos) break;
  }
  return false;
}

Expected<std::optional<ProxyConfig>> select_proxy(
    const Url& target, std::string_view explicit_proxy,
    const std::function<const char*(const char*)>& getenv) {
  std::string proxy_text(explicit_proxy);
  if (proxy_text.empty()) {
    const char* no_proxy = getenv("NO_PROXY");
    if (!no_proxy) no_proxy = getenv("no_proxy");
    if (no_proxy && no_proxy_matches(no_proxy, target.host)) return std::optional<ProxyConfig>{};
    const char* env = getenv("HTTPS_PROXY");
    if (!env || !*env) env = getenv("https_proxy");
    if (!env || !*env) return std::optional<ProxyConfig>{};
    proxy_text = env;
  }
  if (proxy_text.find("://") == std::string::npos) proxy_text = "http://" + proxy_text;
  auto url = parse_url(proxy_text);
  if (!url) return Error{"proxy: " + url.error().message};
  if (url->scheme != "http") {
    return Error{"proxy " + proxy_text + ": only http:// CONNECT proxies are supported"};
  }
  ProxyConfig proxy{url->host, url->port, ""};
  const auto scheme_end = proxy_text.find("://") + 3;
  const auto authority_end = proxy_text.find('/', scheme_end);
  const std::string authority = proxy_text.substr(scheme_end, authority_end - scheme_end);
  if (const auto at = authority.rfind('@'); at != std::string::npos) {
    proxy.authorization = "Basic " + base64(authority.substr(0, at));
  }
  return std::optional<ProxyConfig>{std::move(proxy)};
}

}  // namespace helm::agent
