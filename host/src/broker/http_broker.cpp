#include "helm/broker/http_broker.hpp"

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "helm/log/logger.hpp"

namespace helm::broker {
namespace {

constexpr std::size_t kMaxUrlBytes = 8 * 1024;
constexpr std::size_t kMaxRequestHeaders = 100;
constexpr std::size_t kMaxRequestHeaderBytes = 64 * 1024;
constexpr std::uint16_t kDefaultPort = 443;

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& ch : out)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 9110 token characters: what a header name may consist of.
bool is_token(std::string_view text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool has_line_break_or_nul(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// A plugin-supplied name echoed in a message: shortened, control bytes shown as '?', so a message
// (which may end up in a log) never carries a line break or a long payload.
std::string shown(std::string_view text, std::size_t limit = 64) {
  std::string out(text.substr(0, limit));
  for (auto& ch : out) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) ch = '?';
  }
  if (text.size() > limit) out += "...";
  return "'" + out + "'";
}

// A host as libcurl parsed it: a DNS name or IPv4 address in ASCII, or a bracketed IPv6 literal.
// Anything else (non-ASCII names, stray characters) is refused rather than guessed at.
bool is_plain_host(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') return true;
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || c == '.' || c == '-' || c == '_';
  });
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::string_view strip_trailing_dot(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

// At least one certificate parses out of the PEM text.
bool pem_holds_certificate(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return false;
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  const bool ok = cert != nullptr;
  X509_free(cert);
  BIO_free(bio);
  return ok;
}

std::string first_env(const char* upper_name, const char* lower_name) {
  if (const char* v = std::getenv(upper_name); v != nullptr && *v != '\0') return v;
  if (const char* v = std::getenv(lower_name); v != nullptr && *v != '\0') return v;
  return {};
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("libcurl could not be initialised");
    }
  });
}

SubmitResult refuse(helm_status status, std::string message) {
  return SubmitResult{status, 0, std::move(message)};
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using CurlUrlPtr = std::unique_ptr<CURLU, CurlUrlDeleter>;

// Reads one part of a parsed URL; nullopt when the URL has none.
std::optional<std::string> url_part(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* text = nullptr;
  if (curl_url_get(url, part, &text, flags) != CURLUE_OK || text == nullptr) return std::nullopt;
  std::string out(text);
  curl_free(text);
  return out;
}

}  // namespace

bool host_allowed(std::string_view host, std::uint16_t port,
                  const std::vector<std::string>& patterns) {
  const std::string want = lower(strip_trailing_dot(host));
  if (want.empty()) return false;
  for (const auto& raw : patterns) {
    std::string_view pattern = raw;
    std::uint16_t pattern_port = kDefaultPort;
    if (const auto colon = pattern.rfind(':'); colon != std::string_view::npos) {
      const auto parsed = parse_port(pattern.substr(colon + 1));
      if (!parsed) continue;
      pattern_port = *parsed;
      pattern = pattern.substr(0, colon);
    }
    if (pattern_port != port) continue;
    const std::string name = lower(strip_trailing_dot(pattern));
    if (name.rfind("*.", 0) == 0) {
      const std::string_view suffix = std::string_view(name).substr(1);  // ".example.com"
      if (suffix.size() < 2 || suffix.find('*') != std::string_view::npos) continue;
      if (want.size() > suffix.size() && want.ends_with(suffix)) return true;
      continue;
    }
    if (name.empty() || name.find('*') != std::string::npos) continue;
    if (name == want) return true;
  }
  return false;
}

Status validate_options(const HttpBrokerOptions& options) {
  using std::chrono::milliseconds;
  if (options.default_timeout <= milliseconds(0) || options.max_timeout <= milliseconds(0) ||
      options.connect_timeout <= milliseconds(0)) {
    return Error{"broker timeouts must be positive"};
  }
  if (options.default_timeout > options.max_timeout) {
    return Error{"the broker's default timeout must not exceed its maximum timeout"};
  }
  if (options.max_response_bytes == 0 || options.max_in_flight == 0 ||
      options.max_connections_per_host <= 0 || options.max_response_header_bytes < 1024) {
    return Error{"broker limits must be positive (response head at least 1024 bytes)"};
  }
  if (!options.proxy.empty()) {
    const std::string scheme = lower(options.proxy.substr(0, options.proxy.find("://")));
    if (options.proxy.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
      return Error{"the outbound proxy must be an http:// or https:// URL (host:port)"};
    }
    if (has_line_break_or_nul(options.proxy)) {
      return Error{"the outbound proxy URL contains a line break"};
    }
  }
  return {};
}

// One accepted request: its libcurl handles and what has arrived so far. Owned by the broker
// thread from the moment it is queued.
struct Transfer {
  std::uint64_t id = 0;
  std::uint64_t owner = 0;
  std::string host_port;  // for messages: never the path or query (they may carry keys)
  std::string method;
  std::chrono::milliseconds timeout{0};
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
  CURL* easy = nullptr;
  CurlUrlPtr url;
  curl_slist* header_list = nullptr;
  std::string body;  // kept alive for CURLOPT_POSTFIELDS
  bool custom_ca = false;
  std::size_t max_body = 0;
  std::size_t max_head = 0;
  std::size_t head_bytes = 0;
  bool over_cap = false;
  OutboundResponse response;
  Completion complete;
  char error_buffer[CURL_ERROR_SIZE] = {};

  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }

  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* self = static_cast<Transfer*>(user);
    const std::size_t n = size * count;
    if (self->response.body.size() + n > self->max_body) {
      self->over_cap = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    self->response.body.append(data, n);
    return n;
  }

  static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto* self = static_cast<Transfer*>(user);
    const std::size_t n = size * count;
    self->head_bytes += n;
    if (self->head_bytes > self->max_head) {
      self->over_cap = true;
      return 0;
    }
    std::string_view line(data, n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.remove_suffix(1);
    if (line.starts_with("HTTP/")) {
      // A new status line: an interim (1xx) response's headers are not the final ones.
      self->response.headers.clear();
      return n;
    }
    if (line.empty()) return n;
    if ((line.front() == ' ' || line.front() == '\t') && !self->response.headers.empty()) {
      auto& value = self->response.headers.back().second;  // obsolete line folding
      value += ' ';
      value += line.substr(line.find_first_not_of(" \t"));
      return n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return n;
    std::string_view value = line.substr(colon + 1);
    const auto first = value.find_first_not_of(" \t");
    value = first == std::string_view::npos ? std::string_view() : value.substr(first);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
      value.remove_suffix(1);
    self->response.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    return n;
  }
};

struct HttpBroker::Impl {
  explicit Impl(HttpBrokerOptions opts) : options(std::move(opts)) {
    if (options.proxy.empty() && options.proxy_from_environment) {
      options.proxy = first_env("HTTPS_PROXY", "https_proxy");
      if (options.no_proxy.empty()) options.no_proxy = first_env("NO_PROXY", "no_proxy");
    }
    if (auto status = validate_options(options); !status) {
      throw std::invalid_argument(status.error().message);
    }
    global_init_once();
    multi = curl_multi_init();
    if (multi == nullptr) throw std::runtime_error("libcurl could not create a multi handle");
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_connections_per_host);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    thread = std::thread([this] { run(); });
  }

  ~Impl() {
    stop();
    curl_multi_cleanup(multi);
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  SubmitResult submit(OutboundRequest request, Completion complete);
  std::unique_ptr<Transfer> prepare(OutboundRequest& request, SubmitResult& refusal);
  void run();
  void handle_done(Transfer* transfer, CURLcode code);
  void finish(std::unique_ptr<Transfer> transfer, helm_status status, std::string message);
  void cancel_where(const std::function<bool(const Transfer&)>& which);

  void stop() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    curl_multi_wakeup(multi);
    if (thread.joinable()) {
      if (thread.get_id() == std::this_thread::get_id()) {
        throw std::logic_error("HttpBroker::shutdown() called from a completion on its own thread");
      }
      thread.join();
    }
  }

  void post(std::function<void()> command) {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;  // everything was or is being cancelled already
      commands.push_back(std::move(command));
    }
    curl_multi_wakeup(multi);
  }

  HttpBrokerOptions options;
  CURLM* multi = nullptr;
  std::thread thread;

  // Guards `commands`, `stopping` and `owner_in_flight`; in_flight is atomic so in_flight() does
  // not take it.
  std::mutex mutex;
  std::deque<std::function<void()>> commands;  // run in order on the broker thread
  bool stopping = false;
  std::uint64_t next_id = 1;
  std::atomic<std::size_t> in_flight{0};
  std::map<std::uint64_t, std::size_t> owner_in_flight;  // accepted, not completed, by owner

  // Broker thread only.
  std::map<std::uint64_t, std::unique_ptr<Transfer>> active;
};

std::unique_ptr<Transfer> HttpBroker::Impl::prepare(OutboundRequest& request,
                                                    SubmitResult& refusal) {
  static constexpr std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
  if (std::find(std::begin(kMethods), std::end(kMethods), request.method) == std::end(kMethods)) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "HTTP method " + shown(request.method, 16) +
                         " is not supported: use GET, POST, PUT, PATCH, DELETE or HEAD");
    return nullptr;
  }
  if (request.url.size() > kMaxUrlBytes) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the URL is longer than " + std::to_string(kMaxUrlBytes) + " bytes");
    return nullptr;
  }
  if (std::any_of(request.url.begin(), request.url.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u <= 0x20 || u == 0x7f;
      })) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the URL contains spaces or control characters: percent-encode them");
    return nullptr;
  }
  CurlUrlPtr url(curl_url());
  if (!url) throw std::bad_alloc();
  if (curl_url_set(url.get(), CURLUPART_URL, request.url.c_str(), 0) != CURLUE_OK) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the URL is not a valid absolute URL: give it as https://host[:port]/path");
    return nullptr;
  }
  const auto scheme = url_part(url.get(), CURLUPART_SCHEME);
  if (!scheme || lower(*scheme) != "https") {
    refusal = refuse(HELM_STATUS_INVALID_INPUT, "only https:// URLs may be requested (got " +
                                                    scheme.value_or("none") +
                                                    "://); plain HTTP is never brokered");
    return nullptr;
  }
  if (url_part(url.get(), CURLUPART_USER) || url_part(url.get(), CURLUPART_PASSWORD) ||
      url_part(url.get(), CURLUPART_OPTIONS)) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the URL contains user information (user:password@): send credentials in "
                     "an Authorization header instead");
    return nullptr;
  }
  const auto host = url_part(url.get(), CURLUPART_HOST);
  const auto port_text = url_part(url.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  const std::uint16_t port = port_text ? parse_port(*port_text).value_or(0) : 0;
  if (!host || host->empty() || port == 0) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT, "the URL has no usable host and port");
    return nullptr;
  }
  if (!is_plain_host(*host)) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the URL's host " + shown(*host) +
                         " is not a plain ASCII name: write internationalised names in their "
                         "xn-- (punycode) form");
    return nullptr;
  }
  const std::string host_port = *host + ":" + std::to_string(port);
  if (!host_allowed(*host, port, request.allowed_hosts)) {
    refusal = refuse(HELM_STATUS_FORBIDDEN,
                     "outbound host " + host_port +
                         " is not declared: add it to capabilities.outbound_hosts in the "
                         "plugin manifest (a port other than 443 must be given, e.g. \"" +
                         host_port + "\")");
    return nullptr;
  }

  if (request.headers.size() > kMaxRequestHeaders) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "more than " + std::to_string(kMaxRequestHeaders) + " request headers");
    return nullptr;
  }
  std::size_t header_bytes = 0;
  bool has_content_type = false;
  bool has_expect = false;
  for (const auto& [name, value] : request.headers) {
    header_bytes += name.size() + value.size() + 4;
    if (!is_token(name)) {
      refusal = refuse(HELM_STATUS_INVALID_INPUT,
                       "request header name " + shown(name) +
                           " is not a valid HTTP token (letters, digits and !#$%&'*+-.^_`|~)");
      return nullptr;
    }
    if (has_line_break_or_nul(value)) {
      refusal = refuse(HELM_STATUS_INVALID_INPUT,
                       "the value of request header " + shown(name) + " contains CR, LF or NUL");
      return nullptr;
    }
    for (const char* reserved : {"host", "content-length", "connection", "transfer-encoding"}) {
      if (iequals(name, reserved)) {
        refusal = refuse(
            HELM_STATUS_INVALID_INPUT,
            "request header " + shown(name) + " is set by the host: remove it from the request");
        return nullptr;
      }
    }
    has_content_type = has_content_type || iequals(name, "content-type");
    has_expect = has_expect || iequals(name, "expect");
  }
  if (header_bytes > kMaxRequestHeaderBytes) {
    refusal =
        refuse(HELM_STATUS_INVALID_INPUT, "the request headers are larger than " +
                                              std::to_string(kMaxRequestHeaderBytes) + " bytes");
    return nullptr;
  }
  if (request.body.size() > options.max_request_body) {
    refusal = refuse(HELM_STATUS_RESOURCE_EXHAUSTED,
                     "the request body (" + std::to_string(request.body.size()) +
                         " bytes) is larger than the host allows (" +
                         std::to_string(options.max_request_body) + " bytes)");
    return nullptr;
  }
  if (request.method == "HEAD" && !request.body.empty()) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT, "a HEAD request carries no body");
    return nullptr;
  }
  if (!request.ca_pem.empty() && !pem_holds_certificate(request.ca_pem)) {
    refusal = refuse(HELM_STATUS_INVALID_INPUT,
                     "the configured CA is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
    return nullptr;
  }

  auto t = std::make_unique<Transfer>();
  t->owner = request.owner;
  t->host_port = host_port;
  t->method = request.method;
  t->timeout = request.timeout.count() <= 0 ? options.default_timeout
                                            : std::min(request.timeout, options.max_timeout);
  t->connect_timeout = std::min(t->timeout, options.connect_timeout);
  t->custom_ca = !request.ca_pem.empty();
  t->max_body = options.max_response_bytes;
  t->max_head = options.max_response_header_bytes;
  t->body = std::move(request.body);
  t->url = std::move(url);

  for (const auto& [name, value] : request.headers) {
    // "Name;" is libcurl's spelling of a header with an empty value ("Name:" would remove it).
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    t->header_list = curl_slist_append(t->header_list, line.c_str());
    if (t->header_list == nullptr) throw std::bad_alloc();
  }
  // libcurl adds these on its own for bodies; a plugin that wants them sets them explicitly.
  if (!has_content_type) t->header_list = curl_slist_append(t->header_list, "Content-Type:");
  if (!has_expect) t->header_list = curl_slist_append(t->header_list, "Expect:");
  if (t->header_list == nullptr) throw std::bad_alloc();

  t->easy = curl_easy_init();
  if (t->easy == nullptr) throw std::bad_alloc();
  CURL* e = t->easy;
  bool ok = true;
  auto set = [&ok](CURLcode code) { ok = ok && code == CURLE_OK; };
  set(curl_easy_setopt(e, CURLOPT_CURLU, t->url.get()));
  set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L));
  set(curl_easy_setopt(e, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  if (t->custom_ca) {
    curl_blob blob{request.ca_pem.data(), request.ca_pem.size(), CURL_BLOB_COPY};
    set(curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob));
    // The blob replaces the CA bundle file but not the CA directory libcurl was built with
    // (/etc/ssl/certs on Debian): drop it so that only the configured CA is trusted.
    set(curl_easy_setopt(e, CURLOPT_CAPATH, static_cast<const char*>(nullptr)));
  }
  set(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(t->timeout.count())));
  set(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                       static_cast<long>(t->connect_timeout.count())));
  set(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L));
  // An empty proxy string also stops libcurl from reading proxy settings from the environment.
  set(curl_easy_setopt(e, CURLOPT_PROXY, options.proxy.c_str()));
  if (!options.proxy.empty()) {
    set(curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L));
    set(curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L));
    // The plugin's headers (credentials) go to the vendor only, never to the proxy.
    set(curl_easy_setopt(e, CURLOPT_HEADEROPT, CURLHEADER_SEPARATE));
    if (!options.no_proxy.empty())
      set(curl_easy_setopt(e, CURLOPT_NOPROXY, options.no_proxy.c_str()));
  }
  set(curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list));
  if (request.method != "HEAD") {
    // Fails at once on a Content-Length over the cap. Not for HEAD: its Content-Length describes
    // a body that never comes, and libcurl would refuse it all the same.
    set(curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                         static_cast<curl_off_t>(options.max_response_bytes)));
  }
  set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::on_body));
  set(curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get()));
  set(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::on_header));
  set(curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get()));
  set(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer));
  set(curl_easy_setopt(e, CURLOPT_PRIVATE, t.get()));

  if (request.method == "HEAD") {
    set(curl_easy_setopt(e, CURLOPT_NOBODY, 1L));
  } else if (request.method == "GET" && t->body.empty()) {
    set(curl_easy_setopt(e, CURLOPT_HTTPGET, 1L));
  } else if (request.method == "DELETE" && t->body.empty()) {
    set(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE"));
  } else {
    // POST mechanics carry the body (and Content-Length, 0 included); the verb is overridden.
    set(curl_easy_setopt(e, CURLOPT_POST, 1L));
    set(curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body.data()));
    set(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size())));
    if (request.method != "POST") {
      set(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, request.method.c_str()));
    }
  }
  if (!ok) {
    refusal = refuse(HELM_STATUS_INTERNAL,
                     "the host's libcurl lacks a feature the broker needs (curl 7.85 or later "
                     "with TLS); this is a host packaging problem");
    return nullptr;
  }
  return t;
}

SubmitResult HttpBroker::Impl::submit(OutboundRequest request, Completion complete) {
  SubmitResult refusal;
  if (!complete) return refuse(HELM_STATUS_INVALID_INPUT, "no completion callback given");
  {
    std::lock_guard lock(mutex);
    if (stopping) {
      return refuse(HELM_STATUS_UNAVAILABLE,
                    "the hub is shutting down and accepts no outbound requests");
    }
  }
  auto transfer = prepare(request, refusal);
  if (!transfer) return refusal;
  transfer->complete = std::move(complete);

  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex);
    if (stopping) {
      return refuse(HELM_STATUS_UNAVAILABLE,
                    "the hub is shutting down and accepts no outbound requests");
    }
    if (in_flight.load() >= options.max_in_flight) {
      return refuse(HELM_STATUS_RESOURCE_EXHAUSTED, "too many outbound requests in flight (" +
                                                        std::to_string(options.max_in_flight) +
                                                        "): retry when some completed");
    }
    auto& owned = owner_in_flight[transfer->owner];
    if (options.max_in_flight_per_owner != 0 && owned >= options.max_in_flight_per_owner) {
      if (owned == 0) owner_in_flight.erase(transfer->owner);
      return refuse(HELM_STATUS_RESOURCE_EXHAUSTED,
                    "this plugin has too many outbound requests in flight (" +
                        std::to_string(options.max_in_flight_per_owner) +
                        "): retry when some completed");
    }
    ++owned;
    in_flight.fetch_add(1);
    id = next_id++;
    transfer->id = id;
    // The broker thread owns the transfer from here; std::function needs a copyable callable.
    auto shared = std::make_shared<std::unique_ptr<Transfer>>(std::move(transfer));
    commands.push_back([this, shared] {
      Transfer* t = shared->get();
      const CURLMcode code = curl_multi_add_handle(multi, t->easy);
      if (code != CURLM_OK) {
        return finish(
            std::move(*shared), HELM_STATUS_INTERNAL,
            std::string("the outbound request could not be started: ") + curl_multi_strerror(code));
      }
      active.emplace(t->id, std::move(*shared));
    });
  }
  curl_multi_wakeup(multi);
  return SubmitResult{HELM_STATUS_OK, id, {}};
}

void HttpBroker::Impl::finish(std::unique_ptr<Transfer> transfer, helm_status status,
                              std::string message) {
  if (options.observe) {
    TransferRecord record;
    record.method = transfer->method;
    record.host_port = transfer->host_port;
    record.status = status;
    record.status_code = status == HELM_STATUS_OK ? transfer->response.status_code : 0;
    record.duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - transfer->submitted);
    record.response_bytes = status == HELM_STATUS_OK ? transfer->response.body.size() : 0;
    try {
      options.observe(record);
    } catch (const std::exception& e) {
      log::error("outbound request observer threw", {{"error", e.what()}});
    }
  }
  std::shared_ptr<OutboundResponse> response;
  if (status == HELM_STATUS_OK) {
    response = std::make_shared<OutboundResponse>(std::move(transfer->response));
  }
  Completion complete = std::move(transfer->complete);
  const std::uint64_t id = transfer->id;
  const std::uint64_t owner = transfer->owner;
  transfer.reset();  // frees the easy handle (after it left the multi) before the plugin runs
  {
    std::lock_guard lock(mutex);
    if (auto it = owner_in_flight.find(owner); it != owner_in_flight.end() && --it->second == 0) {
      owner_in_flight.erase(it);
    }
  }
  in_flight.fetch_sub(1);

  auto task = [complete = std::move(complete), response, status, message = std::move(message),
               id]() {
    try {
      complete(status, response.get(), message);
    } catch (const std::exception& e) {
      log::error("outbound request completion threw", {{"id", id}, {"error", e.what()}});
    } catch (...) {
      log::error("outbound request completion threw", {{"id", id}});
    }
  };
  if (!options.dispatch) return task();
  try {
    options.dispatch(task);
  } catch (const std::exception& e) {
    log::error("outbound request completion could not be dispatched; running it inline",
               {{"id", id}, {"error", e.what()}});
    task();
  }
}

void HttpBroker::Impl::handle_done(Transfer* transfer, CURLcode code) {
  curl_multi_remove_handle(multi, transfer->easy);
  auto node = active.extract(transfer->id);
  if (node.empty()) return;  // not ours any more (cannot happen: removed only here and on cancel)
  std::unique_ptr<Transfer> t = std::move(node.mapped());
  const std::string where = t->method + " " + t->host_port;
  const std::string detail =
      t->error_buffer[0] != '\0' ? t->error_buffer : curl_easy_strerror(code);

  if (code == CURLE_OK) {
    long status_code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status_code);
    t->response.status_code = status_code;
    return finish(std::move(t), HELM_STATUS_OK, {});
  }
  if (t->over_cap || code == CURLE_FILESIZE_EXCEEDED) {
    return finish(std::move(t), HELM_STATUS_RESOURCE_EXHAUSTED,
                  where + ": the response is larger than the host allows (" +
                      std::to_string(options.max_response_bytes) +
                      " bytes of body); ask the vendor for smaller pages");
  }
  if (code == CURLE_OPERATION_TIMEDOUT) {
    curl_off_t connected_us = 0;
    curl_easy_getinfo(t->easy, CURLINFO_APPCONNECT_TIME_T, &connected_us);
    if (connected_us == 0 && t->connect_timeout < t->timeout) {
      return finish(std::move(t), HELM_STATUS_UPSTREAM_UNAVAILABLE,
                    where + ": could not connect within " +
                        std::to_string(t->connect_timeout.count()) + " ms (" + detail + ")");
    }
    return finish(
        std::move(t), HELM_STATUS_TIMEOUT,
        where + ": no complete response within " + std::to_string(t->timeout.count()) + " ms");
  }
  if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
      code == CURLE_SSL_ISSUER_ERROR) {
    return finish(std::move(t), HELM_STATUS_UPSTREAM_UNAVAILABLE,
                  where + ": TLS certificate verification failed (" + detail + "); " +
                      (t->custom_ca ? "the server's certificate is not issued by the configured "
                                      "CA or does not name this host"
                                    : "if the vendor uses a private CA, configure the "
                                      "organization's CA certificate"));
  }
  if (code == CURLE_OUT_OF_MEMORY) {
    return finish(std::move(t), HELM_STATUS_RESOURCE_EXHAUSTED, where + ": out of memory");
  }
  if (code == CURLE_WRITE_ERROR || code == CURLE_ABORTED_BY_CALLBACK) {
    return finish(std::move(t), HELM_STATUS_INTERNAL, where + ": " + detail);
  }
  // DNS, connect, TLS handshake, proxy, a reset connection or a malformed reply.
  return finish(std::move(t), HELM_STATUS_UPSTREAM_UNAVAILABLE,
                where + ": the vendor could not be reached or answered unusably (" + detail + ")");
}

void HttpBroker::Impl::cancel_where(const std::function<bool(const Transfer&)>& which) {
  for (auto it = active.begin(); it != active.end();) {
    if (!which(*it->second)) {
      ++it;
      continue;
    }
    std::unique_ptr<Transfer> t = std::move(it->second);
    it = active.erase(it);
    curl_multi_remove_handle(multi, t->easy);
    const std::string where = t->method + " " + t->host_port;
    finish(std::move(t), HELM_STATUS_CANCELLED, where + ": cancelled before it completed");
  }
}

void HttpBroker::Impl::run() {
  for (;;) {
    std::deque<std::function<void()>> batch;
    bool stop_now = false;
    {
      std::lock_guard lock(mutex);
      batch.swap(commands);
      stop_now = stopping;
    }
    for (auto& command : batch)
      command();
    if (stop_now) {
      // submit() checks `stopping` under the lock it queues with, so every accepted request is
      // in `active` now; commands queued later can only be cancels, with nothing left to act on.
      cancel_where([](const Transfer&) { return true; });
      return;
    }

    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      if (t != nullptr) handle_done(t, msg->data.result);
    }
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
}

HttpBroker::HttpBroker(HttpBrokerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpBroker::~HttpBroker() = default;

SubmitResult HttpBroker::submit(OutboundRequest request, Completion complete) {
  return impl_->submit(std::move(request), std::move(complete));
}

void HttpBroker::cancel(std::uint64_t id) {
  impl_->post([impl = impl_.get(), id] {
    impl->cancel_where([id](const Transfer& t) { return t.id == id; });
  });
}

void HttpBroker::cancel_owner(std::uint64_t owner) {
  impl_->post([impl = impl_.get(), owner] {
    impl->cancel_where([owner](const Transfer& t) { return t.owner == owner; });
  });
}

void HttpBroker::shutdown() {
  impl_->stop();
}

std::size_t HttpBroker::in_flight() const {
  return impl_->in_flight.load();
}

}  // namespace helm::broker
