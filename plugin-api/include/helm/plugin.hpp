/// @brief Header-only C++17 layer over helm/plugin_abi.h: derive from helm::sdk::Plugin, export it
/// with HELM_EXPORT_PLUGIN, and no C++ type or exception ever crosses the ABI.
///
/// A plugin in full:
///
///     class Echo final : public helm::sdk::Plugin {
///      public:
///       Echo(helm::sdk::Host host, const helm::sdk::Config& config) : Plugin(host) {}
///       void invoke(helm::sdk::Call call) override { call.complete(call.input()); }
///     };
///     HELM_EXPORT_PLUGIN(Echo, "echo")
///
/// The layer depends on nlohmann/json (3.10 or later, header-only), which the HelmPluginSDK
/// CMake package finds for you. It is compiled into the plugin, with hidden visibility, so the
/// copy the hub uses never clashes with the plugin's.
///
/// Errors: functions that can fail in ordinary ways return Result<T>. Inside the plugin's own
/// virtual functions you may also throw helm::sdk::Failure(status, message) to fail with that
/// status; any other exception becomes HELM_STATUS_INTERNAL with the exception's message. Nothing
/// is ever thrown across the ABI.
#pragma once

#include <helm/plugin_abi.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace helm::sdk {

/// The outcome of an operation; the same values as helm_status.
enum class Status : std::int32_t {
  kOk = HELM_STATUS_OK,
  kInvalidInput = HELM_STATUS_INVALID_INPUT,
  kNotFound = HELM_STATUS_NOT_FOUND,
  kUnauthorized = HELM_STATUS_UNAUTHORIZED,
  kForbidden = HELM_STATUS_FORBIDDEN,
  kConflict = HELM_STATUS_CONFLICT,
  kUpstreamUnauthorized = HELM_STATUS_UPSTREAM_UNAUTHORIZED,
  kUpstreamRateLimited = HELM_STATUS_UPSTREAM_RATE_LIMITED,
  kUpstreamUnavailable = HELM_STATUS_UPSTREAM_UNAVAILABLE,
  kUpstreamError = HELM_STATUS_UPSTREAM_ERROR,
  kTimeout = HELM_STATUS_TIMEOUT,
  kCancelled = HELM_STATUS_CANCELLED,
  kUnsupported = HELM_STATUS_UNSUPPORTED,
  kUnavailable = HELM_STATUS_UNAVAILABLE,
  kResourceExhausted = HELM_STATUS_RESOURCE_EXHAUSTED,
  kInternal = HELM_STATUS_INTERNAL,
};

/// Stable lower-case name of a status, e.g. "upstream_rate_limited".
inline const char* to_string(Status status) noexcept {
  switch (status) {
    case Status::kOk:
      return "ok";
    case Status::kInvalidInput:
      return "invalid_input";
    case Status::kNotFound:
      return "not_found";
    case Status::kUnauthorized:
      return "unauthorized";
    case Status::kForbidden:
      return "forbidden";
    case Status::kConflict:
      return "conflict";
    case Status::kUpstreamUnauthorized:
      return "upstream_unauthorized";
    case Status::kUpstreamRateLimited:
      return "upstream_rate_limited";
    case Status::kUpstreamUnavailable:
      return "upstream_unavailable";
    case Status::kUpstreamError:
      return "upstream_error";
    case Status::kTimeout:
      return "timeout";
    case Status::kCancelled:
      return "cancelled";
    case Status::kUnsupported:
      return "unsupported";
    case Status::kUnavailable:
      return "unavailable";
    case Status::kResourceExhausted:
      return "resource_exhausted";
    case Status::kInternal:
      return "internal";
  }
  return "internal";
}

/// Maps a status received over the ABI; values this SDK does not know become kInternal.
inline Status status_from_abi(helm_status status) noexcept {
  if (status < HELM_STATUS_OK || status > HELM_STATUS_INTERNAL) return Status::kInternal;
  return static_cast<Status>(status);
}

inline helm_status to_abi(Status status) noexcept {
  return static_cast<helm_status>(status);
}

/// Log severities; the same values as helm_log_level.
enum class LogLevel : std::int32_t {
  kTrace = HELM_LOG_TRACE,
  kDebug = HELM_LOG_DEBUG,
  kInfo = HELM_LOG_INFO,
  kWarn = HELM_LOG_WARN,
  kError = HELM_LOG_ERROR,
};

/// A typed failure: what went wrong, for code (status) and for a person (message).
struct Error {
  Status status = Status::kInternal;
  std::string message;
};

/// Throw from start(), configure(), invoke() or the constructor to fail with a specific status.
/// (Returning an Error works too where the function returns Result.)
class Failure : public std::runtime_error {
 public:
  Failure(Status status, const std::string& message)
      : std::runtime_error(message), status_(status == Status::kOk ? Status::kInternal : status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

/// A value or an Error. Reading value() of an error (or error() of a value) is a programming
/// error and throws std::bad_variant_access.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

/// Success with no value, or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }

  /// Precondition: !ok().
  const Error& error() const& { return error_.value(); }

 private:
  std::optional<Error> error_;
};

namespace detail {

/// A helm_error ready to pass to a host function.
inline helm_error make_abi_error() noexcept {
  helm_error error;
  std::memset(&error, 0, sizeof error);
  error.struct_size = sizeof error;
  return error;
}

/// Length of the longest prefix of `text` that fits in `capacity` bytes and does not end in the
/// middle of a UTF-8 sequence.
inline std::size_t utf8_prefix_length(std::string_view text, std::size_t capacity) noexcept {
  if (text.size() <= capacity) return text.size();
  std::size_t length = capacity;
  // Back off over continuation bytes (10xxxxxx) to the start of the cut character.
  while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xC0U) == 0x80U)
    --length;
  return length;
}

/// Fills a caller-owned helm_error, never beyond its struct_size.
inline void set_abi_error(helm_error* error, Status status, std::string_view message) noexcept {
  if (error == nullptr) return;
  if (HELM_HAS_FIELD(error, helm_error, status)) error->status = to_abi(status);
  if (HELM_HAS_FIELD(error, helm_error, message)) {
    const std::size_t length = utf8_prefix_length(message, sizeof error->message - 1);
    if (length > 0) std::memcpy(error->message, message.data(), length);
    error->message[length] = '\0';
  }
}

/// Reads an Error out of a helm_error a host function filled.
inline Error error_from_abi(helm_status status, const helm_error* error) {
  Error out{status_from_abi(status), {}};
  if (out.status == Status::kOk) out.status = Status::kInternal;
  if (error != nullptr && HELM_HAS_FIELD(error, helm_error, message)) {
    const void* end = std::memchr(error->message, '\0', sizeof error->message);
    const std::size_t length =
        end == nullptr ? sizeof error->message
                       : static_cast<std::size_t>(static_cast<const char*>(end) - error->message);
    out.message.assign(error->message, length);
  }
  if (out.message.empty()) out.message = to_string(out.status);
  return out;
}

/// Turns the exception being handled into an Error. Call only inside a catch block. `context`
/// names what was running, e.g. `operation "devices.list"`.
inline Error error_from_current_exception(std::string_view context) noexcept {
  Error out;
  try {
    try {
      throw;
    } catch (const Failure& failure) {
      out.status = failure.status();
      out.message = failure.what();
    } catch (const std::bad_alloc&) {
      out.status = Status::kResourceExhausted;
      out.message = std::string(context) + " ran out of memory";
    } catch (const std::exception& exception) {
      out.status = Status::kInternal;
      out.message = std::string(context) + " threw an exception: " + exception.what();
    } catch (...) {
      out.status = Status::kInternal;
      out.message = std::string(context) + " threw an exception that is not a std::exception";
    }
  } catch (...) {
    // Building the message itself failed (out of memory): report without one.
    out.status = Status::kResourceExhausted;
    out.message.clear();
  }
  return out;
}

inline std::string_view view(const char* data, std::size_t size) noexcept {
  return data == nullptr ? std::string_view() : std::string_view(data, size);
}

/// Parses a JSON document received over the ABI; throws Failure(kInvalidInput) naming `what`.
inline nlohmann::json parse_json(std::string_view text, std::string_view what,
                                 nlohmann::json if_empty) {
  if (text.empty()) return if_empty;
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& exception) {
    throw Failure(Status::kInvalidInput,
                  std::string(what) + " is not valid JSON: " + exception.what());
  }
}

}  // namespace detail

/// Configuration JSON (hub-wide or per organization) with typed accessors. A key is either a
/// top-level member name ("base_url") or, when it starts with '/', a JSON Pointer
/// ("/tls/ca_file"). Accessors that fail throw Failure(kInvalidInput) with a message naming the
/// key, which the boundary reports as the result of create(), configure() or the operation.
class Config {
 public:
  Config() : json_(nlohmann::json::object()) {}
  explicit Config(nlohmann::json json) : json_(std::move(json)) {}

  /// Parses configuration text; empty text is the empty object.
  static Config parse(std::string_view text) {
    return Config(detail::parse_json(text, "the configuration", nlohmann::json::object()));
  }

  const nlohmann::json& json() const noexcept { return json_; }

  bool contains(std::string_view key) const { return lookup(key) != nullptr; }

  /// The value at `key` converted to T; throws Failure(kInvalidInput) when it is missing or has
  /// the wrong type or range.
  template <typename T>
  T get(std::string_view key) const {
    const nlohmann::json* value = lookup(key);
    if (value == nullptr) {
      throw Failure(Status::kInvalidInput,
                    "configuration value \"" + std::string(key) + "\" is required");
    }
    return convert<T>(*value, key);
  }

  /// The value at `key` converted to T, or `fallback` when it is missing or null; throws
  /// Failure(kInvalidInput) when it is present with the wrong type or range.
  template <typename T>
  T get_or(std::string_view key, T fallback) const {
    const nlohmann::json* value = lookup(key);
    if (value == nullptr) return fallback;
    return convert<T>(*value, key);
  }

  /// The value at `key` converted to T, or nullopt when it is missing or null.
  template <typename T>
  std::optional<T> find(std::string_view key) const {
    const nlohmann::json* value = lookup(key);
    if (value == nullptr) return std::nullopt;
    return convert<T>(*value, key);
  }

 private:
  const nlohmann::json* lookup(std::string_view key) const {
    const nlohmann::json* value = nullptr;
    if (!key.empty() && key.front() == '/') {
      try {
        const nlohmann::json::json_pointer pointer{std::string(key)};
        if (json_.contains(pointer)) value = &json_.at(pointer);
      } catch (const nlohmann::json::exception&) {
        throw Failure(Status::kInvalidInput,
                      "\"" + std::string(key) + "\" is not a valid JSON Pointer");
      }
    } else if (json_.is_object()) {
      const auto found = json_.find(std::string(key));
      if (found != json_.end()) value = &*found;
    }
    return value == nullptr || value->is_null() ? nullptr : value;
  }

  [[noreturn]] static void wrong_type(std::string_view key, const char* expected,
                                      const nlohmann::json& value) {
    throw Failure(Status::kInvalidInput, "configuration value \"" + std::string(key) +
                                             "\" must be " + expected + ", got " +
                                             value.type_name());
  }

  template <typename T>
  static T convert(const nlohmann::json& value, std::string_view key) {
    if constexpr (std::is_same_v<T, nlohmann::json>) {
      return value;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) wrong_type(key, "a boolean", value);
      return value.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!value.is_number_integer()) wrong_type(key, "an integer", value);
      bool in_range = false;
      if (value.is_number_unsigned()) {
        in_range =
            value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
      } else {
        const std::int64_t number = value.get<std::int64_t>();
        if constexpr (std::is_signed_v<T>) {
          in_range = number >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                     number <= static_cast<std::int64_t>(std::numeric_limits<T>::max());
        } else {
          in_range = number >= 0 && static_cast<std::uint64_t>(number) <=
                                        static_cast<std::uint64_t>(std::numeric_limits<T>::max());
        }
      }
      if (!in_range) {
        throw Failure(Status::kInvalidInput, "configuration value \"" + std::string(key) +
                                                 "\" is out of range: " + value.dump());
      }
      return value.get<T>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) wrong_type(key, "a number", value);
      return value.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!value.is_string()) wrong_type(key, "a string", value);
      return value.get<std::string>();
    } else {
      try {
        return value.get<T>();
      } catch (const nlohmann::json::exception& exception) {
        throw Failure(Status::kInvalidInput, "configuration value \"" + std::string(key) +
                                                 "\" has the wrong shape: " + exception.what());
      }
    }
  }

  nlohmann::json json_;
};

/// A released secret. Move-only; ends the lease (the host zeroes the plaintext) when destroyed
/// or reset. The bytes live in host memory and are valid only while the lease is held and the
/// call it was released for has not completed: use them in place, do not copy them around.
class SecretLease {
 public:
  SecretLease() = default;
  SecretLease(const helm_host_api* api, helm_secret_lease* lease) noexcept
      : api_(api), lease_(lease) {}
  SecretLease(SecretLease&& other) noexcept
      : api_(other.api_), lease_(std::exchange(other.lease_, nullptr)) {}
  SecretLease& operator=(SecretLease&& other) noexcept {
    if (this != &other) {
      reset();
      api_ = other.api_;
      lease_ = std::exchange(other.lease_, nullptr);
    }
    return *this;
  }
  SecretLease(const SecretLease&) = delete;
  SecretLease& operator=(const SecretLease&) = delete;
  ~SecretLease() { reset(); }

  const std::uint8_t* data() const noexcept {
    return lease_ == nullptr ? nullptr : api_->secret_data(lease_);
  }
  std::size_t size() const noexcept { return lease_ == nullptr ? 0 : api_->secret_size(lease_); }
  /// The secret as text (for tokens and API keys).
  std::string_view view() const noexcept {
    const std::uint8_t* bytes = data();
    return bytes == nullptr ? std::string_view()
                            : std::string_view(reinterpret_cast<const char*>(bytes), size());
  }

  /// Ends the lease now.
  void reset() noexcept {
    if (lease_ != nullptr) api_->release_lease(std::exchange(lease_, nullptr));
  }

 private:
  const helm_host_api* api_ = nullptr;
  helm_secret_lease* lease_ = nullptr;
};

/// A header of an outbound request: both views must stay valid until http_request() returns.
struct HttpField {
  std::string_view name;
  std::string_view value;
};

/// An outbound HTTPS request. Everything is borrowed only until Host::http_request() returns.
struct HttpRequest {
  std::string_view method = "GET";
  std::string_view url;
  std::vector<HttpField> headers;
  std::string_view body;
  /// 0: the host's default.
  std::chrono::milliseconds timeout{0};
  /// ABI 1.2: for a request without a session (an event handler, a timer), the organization
  /// whose settings apply (its ca_pem and outbound_hosts_from_org_config hosts); empty: none.
  std::string_view organization_id;
};

/// A response as the vendor sent it (any HTTP status code).
struct HttpResponse {
  std::uint32_t status_code = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// The first header named `name` (ASCII case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const noexcept {
    for (const auto& [key, value] : headers) {
      if (key.size() != name.size()) continue;
      bool equal = true;
      for (std::size_t i = 0; i < key.size() && equal; ++i) {
        const auto lower = [](char c) {
          return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
        };
        equal = lower(key[i]) == lower(name[i]);
      }
      if (equal) return &value;
    }
    return nullptr;
  }
};

/// Called exactly once with the response or with the reason there is none (TIMEOUT,
/// CANCELLED, UPSTREAM_UNAVAILABLE, ...). Runs on a host worker thread. Exceptions it throws are
/// logged and swallowed.
using HttpCallback = std::function<void(Result<HttpResponse>)>;

/// Called exactly once: kOk when the timer fired, kCancelled when it was cancelled. Runs on a
/// host worker thread. Exceptions it throws are logged and swallowed.
using TimerCallback = std::function<void(Status)>;

/// What a transport tells the hub about one agent connection (helm_device_event_kind).
enum class DeviceEvent : std::int32_t {
  kConnected = HELM_DEVICE_CONNECTED,
  kFrame = HELM_DEVICE_FRAME,
  kDisconnected = HELM_DEVICE_DISCONNECTED,
};

/// Called exactly once with the result of a device token check, on a host worker thread:
/// kOk with the device JSON {"device_id", "organization_id", "heartbeat_s", ...}; kUnauthorized
/// (unknown, revoked or malformed token) or kUnavailable (the hub cannot check now) with a
/// message. Exceptions it throws are logged and swallowed.
using DeviceAuthCallback = std::function<void(Status, std::string)>;

namespace detail {

struct HttpContext {
  const helm_host_api* api;
  HttpCallback callback;
};

struct TimerContext {
  const helm_host_api* api;
  TimerCallback callback;
};

/// A duration as the ABI's uint32_t milliseconds: negative becomes 0, too long saturates.
inline std::uint32_t milliseconds_u32(std::chrono::milliseconds duration) noexcept {
  const auto count = duration.count();
  if (count <= 0) return 0;
  constexpr auto kMax = std::numeric_limits<std::uint32_t>::max();
  return static_cast<std::uint64_t>(count) > kMax ? kMax : static_cast<std::uint32_t>(count);
}

inline void log_to_host(const helm_host_api* api, LogLevel level, std::string_view text) noexcept {
  if (api != nullptr && HELM_HAS_FIELD(api, helm_host_api, log) && api->log != nullptr) {
    api->log(api->host_ctx, static_cast<helm_log_level>(level), text.data(), text.size());
  }
}

inline void on_http_complete(void* user, helm_status status, const helm_http_response* response,
                             const helm_error* error) noexcept {
  std::unique_ptr<HttpContext> context(static_cast<HttpContext*>(user));
  if (!context) return;
  try {
    if (status == HELM_STATUS_OK && response != nullptr) {
      HttpResponse out;
      out.status_code = response->status_code;
      if (HELM_HAS_FIELD(response, helm_http_response, header_count) &&
          response->headers != nullptr) {
        for (std::size_t i = 0; i < response->header_count; ++i) {
          const helm_http_header* header = response->headers[i];
          if (header == nullptr || !HELM_HAS_FIELD(header, helm_http_header, value_len)) continue;
          out.headers.emplace_back(std::string(view(header->name, header->name_len)),
                                   std::string(view(header->value, header->value_len)));
        }
      }
      if (HELM_HAS_FIELD(response, helm_http_response, body_len) && response->body != nullptr) {
        out.body.assign(reinterpret_cast<const char*>(response->body), response->body_len);
      }
      context->callback(Result<HttpResponse>(std::move(out)));
    } else {
      context->callback(Result<HttpResponse>(error_from_abi(status, error)));
    }
  } catch (...) {
    log_to_host(context->api, LogLevel::kError,
                error_from_current_exception("an http_request callback").message);
  }
}

inline void on_timer(void* user, helm_status status) noexcept {
  std::unique_ptr<TimerContext> context(static_cast<TimerContext*>(user));
  if (!context) return;
  try {
    context->callback(status_from_abi(status));
  } catch (...) {
    log_to_host(context->api, LogLevel::kError,
                error_from_current_exception("a timer callback").message);
  }
}

struct DeviceAuthContext {
  const helm_host_api* api;
  DeviceAuthCallback callback;
};

inline void on_device_authenticated(void* user, helm_status status, const char* device_json,
                                    std::size_t device_json_len) noexcept {
  std::unique_ptr<DeviceAuthContext> context(static_cast<DeviceAuthContext*>(user));
  if (!context) return;
  try {
    context->callback(status_from_abi(status), std::string(view(device_json, device_json_len)));
  } catch (...) {
    log_to_host(context->api, LogLevel::kError,
                error_from_current_exception("a device_authenticate callback").message);
  }
}

inline void append_to_string(void* sink_ctx, const std::uint8_t* data, std::size_t size) noexcept {
  auto* target = static_cast<std::optional<std::string>*>(sink_ctx);
  try {
    target->emplace(reinterpret_cast<const char*>(data), size);
  } catch (...) {
    target->reset();  // reported as out of memory by the caller
  }
}

}  // namespace detail

/// The host's services for one plugin instance: a thin, copyable view of helm_host_api that
/// checks struct_size before using any function and turns helm_error into Error. Valid until
/// the instance is destroyed; callable from any thread.
class Host {
 public:
  explicit Host(const helm_host_api* api) noexcept : api_(api) {}

  /// The raw table, for what this layer does not wrap.
  const helm_host_api* api() const noexcept { return api_; }
  std::uint16_t abi_major() const noexcept { return api_->abi_major; }
  std::uint16_t abi_minor() const noexcept { return api_->abi_minor; }

  void log(LogLevel level, std::string_view message) const noexcept {
    detail::log_to_host(api_, level, message);
  }
  void debug(std::string_view message) const noexcept { log(LogLevel::kDebug, message); }
  void info(std::string_view message) const noexcept { log(LogLevel::kInfo, message); }
  void warn(std::string_view message) const noexcept { log(LogLevel::kWarn, message); }
  void error(std::string_view message) const noexcept { log(LogLevel::kError, message); }

  /// Releases a secret of the session's organization (blocks on the vault; see ABI).
  Result<SecretLease> release_secret(const helm_session* session, std::string_view name) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, release_lease)) return unsupported("release_secret");
    helm_secret_lease* lease = nullptr;
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->release_secret(api_->host_ctx, session, name.data(), name.size(), &lease, &error);
    if (status != HELM_STATUS_OK || lease == nullptr) return detail::error_from_abi(status, &error);
    return SecretLease(api_, lease);
  }

  /// Starts an outbound HTTPS request; `on_done` runs exactly once if this returns ok, never
  /// otherwise. `session` may be null for requests not made on behalf of a call.
  Result<void> http_request(const helm_session* session, const HttpRequest& request,
                            HttpCallback on_done) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, http_request)) return unsupported("http_request");
    std::vector<helm_http_header> fields(request.headers.size());
    std::vector<const helm_http_header*> pointers(request.headers.size());
    for (std::size_t i = 0; i < request.headers.size(); ++i) {
      fields[i].struct_size = sizeof(helm_http_header);
      fields[i].name = request.headers[i].name.data();
      fields[i].name_len = request.headers[i].name.size();
      fields[i].value = request.headers[i].value.data();
      fields[i].value_len = request.headers[i].value.size();
      pointers[i] = &fields[i];
    }
    helm_http_request raw{};
    raw.struct_size = sizeof raw;
    raw.timeout_ms = detail::milliseconds_u32(request.timeout);
    raw.method = request.method.data();
    raw.method_len = request.method.size();
    raw.url = request.url.data();
    raw.url_len = request.url.size();
    raw.headers = pointers.data();
    raw.header_count = pointers.size();
    raw.body = reinterpret_cast<const std::uint8_t*>(request.body.data());
    raw.body_len = request.body.size();
    raw.organization_id = request.organization_id.data();
    raw.organization_id_len = request.organization_id.size();

    auto* context = new detail::HttpContext{api_, std::move(on_done)};
    helm_error error = detail::make_abi_error();
    const helm_status status = api_->http_request(api_->host_ctx, session, &raw,
                                                  &detail::on_http_complete, context, &error);
    if (status != HELM_STATUS_OK) {
      delete context;  // refused: the callback will never run
      return detail::error_from_abi(status, &error);
    }
    return {};
  }

  /// Publishes an event (topic declared in capabilities.events.publish); an empty
  /// organization_id publishes hub-wide.
  Result<void> publish_event(std::string_view organization_id, std::string_view topic,
                             const nlohmann::json& payload) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, publish_event)) return unsupported("publish_event");
    std::string text;
    try {
      text = payload.dump();
    } catch (const nlohmann::json::exception& exception) {
      return Error{Status::kInvalidInput,
                   std::string("event payload is not valid JSON text: ") + exception.what()};
    }
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->publish_event(api_->host_ctx, organization_id.data(), organization_id.size(),
                            topic.data(), topic.size(), text.data(), text.size(), &error);
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    return {};
  }

  /// Reads a key of the plugin's private store (blocks); nullopt when it is absent.
  Result<std::optional<std::string>> kv_get(std::string_view organization_id,
                                            std::string_view key) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, kv_get)) return unsupported("kv_get");
    std::optional<std::string> value;
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->kv_get(api_->host_ctx, organization_id.data(), organization_id.size(), key.data(),
                     key.size(), &detail::append_to_string, &value, &error);
    if (status == HELM_STATUS_NOT_FOUND) return std::optional<std::string>();
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    if (!value) return Error{Status::kResourceExhausted, "out of memory reading a stored value"};
    return value;
  }

  /// Stores a key of the plugin's private store (blocks).
  Result<void> kv_put(std::string_view organization_id, std::string_view key,
                      std::string_view value) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, kv_put)) return unsupported("kv_put");
    static const std::uint8_t kEmpty = 0;
    const auto* bytes =
        value.empty() ? &kEmpty : reinterpret_cast<const std::uint8_t*>(value.data());
    return put(organization_id, key, bytes, value.size());
  }

  /// Deletes a key of the plugin's private store (blocks).
  Result<void> kv_erase(std::string_view organization_id, std::string_view key) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, kv_put)) return unsupported("kv_put");
    return put(organization_id, key, nullptr, 0);
  }

  /// Runs `callback` after `delay` on a host worker thread; returns the timer id.
  Result<std::uint64_t> schedule(std::chrono::milliseconds delay, TimerCallback callback) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, timer_cancel)) return unsupported("timer_schedule");
    auto* context = new detail::TimerContext{api_, std::move(callback)};
    std::uint64_t id = 0;
    helm_error error = detail::make_abi_error();
    const auto milliseconds = delay.count() < 0 ? 0 : static_cast<std::uint64_t>(delay.count());
    const helm_status status =
        api_->timer_schedule(api_->host_ctx, milliseconds, &detail::on_timer, context, &id, &error);
    if (status != HELM_STATUS_OK) {
      delete context;  // refused: the callback will never run
      return detail::error_from_abi(status, &error);
    }
    return id;
  }

  void cancel_timer(std::uint64_t id) const noexcept {
    if (HELM_HAS_FIELD(api_, helm_host_api, timer_cancel)) api_->timer_cancel(api_->host_ctx, id);
  }

  /// Who the session is: {"principal_kind", "principal_id", "organization_id", "roles",
  /// "expires_at", ...}.
  Result<nlohmann::json> session_info(const helm_session* session) const {
    if (!HELM_HAS_FIELD(api_, helm_host_api, session_info)) return unsupported("session_info");
    std::optional<std::string> text;
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->session_info(api_->host_ctx, session, &detail::append_to_string, &text, &error);
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    if (!text) return Error{Status::kResourceExhausted, "out of memory reading session info"};
    try {
      return nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception& exception) {
      return Error{Status::kInternal,
                   std::string("the host sent session info that is not JSON: ") + exception.what()};
    }
  }

  // ---- Audit (ABI 1.2) ----

  /// Whether this hub offers audit() (ABI 1.2 or later).
  bool offers_audit() const noexcept {
    return HELM_HAS_FIELD(api_, helm_host_api, audit) && api_->audit != nullptr;
  }

  /// Appends "plugin.<name>.<action>" to the hub's audit log: `session` the act belongs to (or
  /// nullptr: the plugin acted on its own), `organization_id` it concerns (empty: the session's),
  /// `detail_json` a small JSON object of non-secret context (or empty). Does not block.
  Result<void> audit(const helm_session* session, std::string_view organization_id,
                     std::string_view action, std::string_view detail_json = {}) const {
    if (!offers_audit()) return unsupported("audit");
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->audit(api_->host_ctx, session, organization_id.data(), organization_id.size(),
                    action.data(), action.size(), detail_json.data(), detail_json.size(), &error);
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    return {};
  }

  // ---- Agent transport (ABI 1.1; offered only to plugins declaring capabilities.transport) ----

  /// Whether this hub offers the four transport functions (ABI 1.1 or later).
  bool offers_transport() const noexcept {
    return HELM_HAS_FIELD(api_, helm_host_api, transport_settings) &&
           api_->device_authenticate != nullptr && api_->device_event != nullptr &&
           api_->transport_listening != nullptr && api_->transport_settings != nullptr;
  }

  /// Checks an agent's bearer token; `on_done` runs exactly once, later, on a host worker thread,
  /// if this returns ok, and never otherwise. Does not block.
  Result<void> authenticate_device(std::string_view token, DeviceAuthCallback on_done) const {
    if (!offers_transport()) return unsupported("device_authenticate");
    auto* context = new detail::DeviceAuthContext{api_, std::move(on_done)};
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->device_authenticate(api_->host_ctx, token.data(), token.size(),
                                  &detail::on_device_authenticated, context, &error);
    if (status != HELM_STATUS_OK) {
      delete context;  // refused: the callback will never run
      return detail::error_from_abi(status, &error);
    }
    return {};
  }

  /// Tells the hub about one connection (frame_json empty for kDisconnected). Calls for one
  /// connection_id must be made in order, one at a time. Returns false when the hub lacks it.
  bool device_event(DeviceEvent kind, std::uint64_t connection_id, std::string_view device_id,
                    std::string_view frame_json) const noexcept {
    if (!offers_transport()) return false;
    api_->device_event(api_->host_ctx, static_cast<helm_device_event_kind>(kind), connection_id,
                       device_id.data(), device_id.size(), frame_json.data(), frame_json.size());
    return true;
  }

  /// Tells the hub the agents' transport URL, e.g. "wss://0.0.0.0:7443/agent/v1".
  bool transport_listening(std::string_view url) const noexcept {
    if (!offers_transport()) return false;
    api_->transport_listening(api_->host_ctx, url.data(), url.size());
    return true;
  }

  /// The hub's facts for a transport: {"tls_cert_file", "tls_key_file", "heartbeat_s",
  /// "max_frame_bytes"} (further keys may appear). Does not block.
  Result<nlohmann::json> transport_settings() const {
    if (!offers_transport()) return unsupported("transport_settings");
    std::optional<std::string> text;
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->transport_settings(api_->host_ctx, &detail::append_to_string, &text, &error);
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    if (!text) return Error{Status::kResourceExhausted, "out of memory reading transport settings"};
    try {
      return nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception& exception) {
      return Error{Status::kInternal, std::string("the host sent transport settings that are "
                                                  "not JSON: ") +
                                          exception.what()};
    }
  }

 private:
  static Error unsupported(const char* function) {
    return Error{Status::kUnsupported,
                 std::string("this hub does not offer ") + function + " (its ABI is older)"};
  }

  Result<void> put(std::string_view organization_id, std::string_view key,
                   const std::uint8_t* value, std::size_t size) const {
    helm_error error = detail::make_abi_error();
    const helm_status status =
        api_->kv_put(api_->host_ctx, organization_id.data(), organization_id.size(), key.data(),
                     key.size(), value, size, &error);
    if (status != HELM_STATUS_OK) return detail::error_from_abi(status, &error);
    return {};
  }

  const helm_host_api* api_;
};

namespace detail {

/// What a Call refers to; shared by every copy of the Call and, while invoke() runs, by the
/// boundary. Completes the call with INTERNAL when the last reference goes without a result.
class CallState {
 public:
  explicit CallState(const helm_call& call)
      : complete_(call.complete),
        context_(call.call_ctx),
        id_(call.call_id),
        op_(view(call.op, call.op_len)),
        session_(call.session),
        organization_id_(view(call.organization_id, call.organization_id_len)),
        timeout_(call.timeout_ms) {
    input_ = parse_json(view(call.input_json, call.input_len), "the operation input", nullptr);
    org_config_ = Config(parse_json(view(call.org_config_json, call.org_config_len),
                                    "the organization configuration", nlohmann::json::object()));
  }
  CallState(const CallState&) = delete;
  CallState& operator=(const CallState&) = delete;
  ~CallState() {
    finish(Status::kInternal, "dropped: the plugin released the call without completing it");
  }

  /// Completes the call unless it already was; returns whether this call did it.
  bool finish(Status status, std::string_view output) noexcept {
    if (done_.exchange(true, std::memory_order_acq_rel)) return false;
    complete_(context_, to_abi(status), output.data(), output.size());
    return true;
  }
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

  std::uint64_t id() const noexcept { return id_; }
  const std::string& op() const noexcept { return op_; }
  const nlohmann::json& input() const noexcept { return input_; }
  const helm_session* session() const noexcept { return session_; }
  const std::string& organization_id() const noexcept { return organization_id_; }
  const Config& org_config() const noexcept { return org_config_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

 private:
  std::atomic<bool> done_{false};
  helm_call_complete_fn complete_;
  void* context_;
  std::uint64_t id_;
  std::string op_;
  nlohmann::json input_;
  const helm_session* session_;
  std::string organization_id_;
  Config org_config_;
  std::chrono::milliseconds timeout_;
};

}  // namespace detail

/// One invocation of an operation, completed exactly once. Copies refer to the same call (so a
/// Call can be captured by std::function callbacks); the first complete() or fail() wins and
/// later ones return false. When the last copy is destroyed without a result, the call
/// completes with kInternal "dropped". Thread-safe: complete from any thread.
///
/// session() is valid until the call is completed: finish every host request made on its
/// behalf (and end every SecretLease) before completing. A moved-from Call is empty: complete()
/// and fail() return false, completed() is true, and the other accessors must not be used.
class Call {
 public:
  explicit Call(std::shared_ptr<detail::CallState> state) noexcept : state_(std::move(state)) {}

  std::uint64_t id() const noexcept { return state_->id(); }
  const std::string& op() const noexcept { return state_->op(); }
  /// The input, already validated by the host against the operation's input_schema.
  const nlohmann::json& input() const noexcept { return state_->input(); }
  const helm_session* session() const noexcept { return state_->session(); }
  const std::string& organization_id() const noexcept { return state_->organization_id(); }
  /// The organization's settings for this plugin (valid against org_config_schema).
  const Config& org_config() const noexcept { return state_->org_config(); }
  /// The operation's deadline, counted from the start of invoke().
  std::chrono::milliseconds timeout() const noexcept { return state_->timeout(); }

  /// Completes with a result. Returns false if the call was already completed.
  bool complete(const nlohmann::json& output) noexcept {
    if (!state_) return false;
    std::string text;
    try {
      text = output.dump();
    } catch (...) {
      return state_->finish(
          Status::kInternal,
          detail::error_from_current_exception("serializing the operation result").message);
    }
    return state_->finish(Status::kOk, text);
  }

  /// Completes with an error (a status other than kOk; kOk is reported as kInternal). Returns
  /// false if the call was already completed. The message must not contain secrets.
  bool fail(Status status, std::string_view message) noexcept {
    if (!state_) return false;
    return state_->finish(status == Status::kOk ? Status::kInternal : status, message);
  }
  bool fail(const Error& error) noexcept { return fail(error.status, error.message); }

  bool completed() const noexcept { return !state_ || state_->done(); }

 private:
  std::shared_ptr<detail::CallState> state_;
};

/// An event on a topic the plugin subscribed to.
struct Event {
  std::string topic;
  /// Empty for a hub-wide event.
  std::string organization_id;
  /// The publishing plugin's name, or "hub".
  std::string source;
  nlohmann::json payload;
};

/// Base class of a plugin instance. The derived class's constructor, taking
/// (helm::sdk::Host, const helm::sdk::Config&), is create(): it receives the hub-wide
/// configuration (valid against config_schema) and may throw Failure to refuse it. The
/// destructor is destroy(): it must join every thread the plugin started.
///
/// Threads (see helm/plugin_abi.h): the constructor, start(), stop() and the destructor run one
/// at a time; invoke(), cancel() and on_event() run concurrently with each other and with
/// configure(), on several host worker threads.
class Plugin {
 public:
  explicit Plugin(Host host) noexcept : host_(host) {}
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;
  virtual ~Plugin() = default;

  /// Begin serving (open listeners, start threads). An Error fails the start.
  virtual Result<void> start() { return {}; }

  /// Stop serving: no new work arrives after this; cancel or finish outstanding calls (each
  /// must still be completed; releasing the last copy of a Call completes it as dropped) and
  /// stop timers. The host destroys the instance only after every call has completed.
  virtual void stop() {}

  /// Apply a new hub-wide configuration at run time, or refuse it (the old one stays). The
  /// default refuses, so every change takes a restart.
  virtual Result<void> configure(const Config& /*config*/) {
    return Error{Status::kUnsupported,
                 "this plugin applies configuration changes only when it is restarted"};
  }

  /// Run an operation; complete `call` exactly once (now or later, from any thread). Unknown
  /// operations should fail with kUnsupported. Do not block for long.
  virtual void invoke(Call call) = 0;

  /// Best-effort request to abandon a call; the call must still be completed.
  virtual void cancel(std::uint64_t /*call_id*/) {}

  /// An event on a subscribed topic. Do not block for long.
  virtual void on_event(const Event& /*event*/) {}

  const Host& host() const noexcept { return host_; }

 private:
  Host host_;
};

/// Base class of an agent transport plugin (ABI 1.1, manifest "capabilities": {"transport": true}),
/// exported with HELM_EXPORT_TRANSPORT_PLUGIN. It terminates the agents' connections and talks
/// to the hub through Host::authenticate_device, device_event, transport_listening and
/// transport_settings; the hub reaches devices through the two functions below. A transport
/// offers no operations: the default invoke() fails every call with kUnsupported.
class TransportPlugin : public Plugin {
 public:
  using Plugin::Plugin;

  /// Queues one text frame (a JSON object) on the device's live connection: kOk when queued,
  /// kNotFound when the device has none, kResourceExhausted when that connection's send queue
  /// is full (the plugin then closes it). Runs on host worker threads, concurrently with
  /// everything else; must not block.
  virtual Status device_send(std::string_view device_id, std::string_view frame_json) = 0;

  /// Closes the device's live connection, if any, with WebSocket close code `code` (4001: token
  /// revoked or device deleted) and `reason`. Host worker threads; must not block.
  virtual void device_close(std::string_view device_id, std::uint16_t code,
                            std::string_view reason) = 0;

  void invoke(Call call) override {
    call.fail(Status::kUnsupported, "a transport plugin offers no operations");
  }
};

namespace detail {

/// The C functions of a plugin table, each catching everything at the boundary.
template <typename T>
struct Adapter {
  static Plugin* self(helm_plugin_instance* instance) noexcept {
    return reinterpret_cast<Plugin*>(instance);
  }

  static helm_status report(helm_error* error, const Error& failure) noexcept {
    set_abi_error(error, failure.status, failure.message);
    return to_abi(failure.status);
  }

  static helm_status create(const helm_host_api* host, const char* config_json,
                            std::size_t config_len, helm_plugin_instance** out_instance,
                            helm_error* error) noexcept {
    if (host == nullptr || out_instance == nullptr) {
      set_abi_error(error, Status::kInvalidInput, "create() needs a host api and out_instance");
      return HELM_STATUS_INVALID_INPUT;
    }
    try {
      const Config config = Config::parse(view(config_json, config_len));
      std::unique_ptr<Plugin> plugin = std::make_unique<T>(Host(host), config);
      *out_instance = reinterpret_cast<helm_plugin_instance*>(plugin.release());
      return HELM_STATUS_OK;
    } catch (...) {
      return report(error, error_from_current_exception("creating the plugin"));
    }
  }

  static helm_status start(helm_plugin_instance* instance, helm_error* error) noexcept {
    try {
      const Result<void> result = self(instance)->start();
      if (!result) return report(error, result.error());
      return HELM_STATUS_OK;
    } catch (...) {
      return report(error, error_from_current_exception("starting the plugin"));
    }
  }

  static void stop(helm_plugin_instance* instance) noexcept {
    try {
      self(instance)->stop();
    } catch (...) {
      self(instance)->host().error(error_from_current_exception("stopping the plugin").message);
    }
  }

  static void destroy(helm_plugin_instance* instance) noexcept {
    Plugin* plugin = self(instance);
    const Host host = plugin->host();
    try {
      delete plugin;
    } catch (...) {
      host.error(error_from_current_exception("destroying the plugin").message);
    }
  }

  static helm_status configure(helm_plugin_instance* instance, const char* config_json,
                               std::size_t config_len, helm_error* error) noexcept {
    try {
      const Config config = Config::parse(view(config_json, config_len));
      const Result<void> result = self(instance)->configure(config);
      if (!result) return report(error, result.error());
      return HELM_STATUS_OK;
    } catch (...) {
      return report(error, error_from_current_exception("configuring the plugin"));
    }
  }

  static void invoke(helm_plugin_instance* instance, const helm_call* call) noexcept {
    if (call == nullptr || call->complete == nullptr) return;  // nothing can be reported
    std::shared_ptr<CallState> state;
    try {
      state = std::make_shared<CallState>(*call);
    } catch (...) {
      const Error failure = error_from_current_exception("reading the call");
      call->complete(call->call_ctx, to_abi(failure.status), failure.message.data(),
                     failure.message.size());
      return;
    }
    try {
      self(instance)->invoke(Call(state));
    } catch (...) {
      // The boundary still holds `state`, so the exception's message (not "dropped") is what
      // the host sees, unless the plugin completed the call before throwing.
      std::string context = "operation";
      try {
        context += " \"" + state->op() + "\"";
      } catch (...) {
        // Keep the shorter context.
      }
      const Error failure = error_from_current_exception(context);
      if (!state->finish(failure.status, failure.message)) {
        self(instance)->host().warn(failure.message);
      }
    }
  }

  static void cancel(helm_plugin_instance* instance, std::uint64_t call_id) noexcept {
    try {
      self(instance)->cancel(call_id);
    } catch (...) {
      self(instance)->host().error(error_from_current_exception("cancelling a call").message);
    }
  }

  static void on_event(helm_plugin_instance* instance, const helm_event* event) noexcept {
    if (event == nullptr) return;
    try {
      Event out;
      out.topic = view(event->topic, event->topic_len);
      out.organization_id = view(event->organization_id, event->organization_id_len);
      out.source = view(event->source, event->source_len);
      out.payload =
          parse_json(view(event->payload_json, event->payload_len), "the event payload", nullptr);
      self(instance)->on_event(out);
    } catch (...) {
      self(instance)->host().error(error_from_current_exception("handling an event").message);
    }
  }
};

/// The entry table for plugin class T, as a constant.
template <typename T>
constexpr helm_plugin_v1 plugin_table(const char* name) noexcept {
  static_assert(std::is_base_of_v<Plugin, T>, "HELM_EXPORT_PLUGIN needs a helm::sdk::Plugin");
  static_assert(std::is_constructible_v<T, Host, const Config&>,
                "a plugin class needs a constructor (helm::sdk::Host, const helm::sdk::Config&)");
  helm_plugin_v1 table{};
  table.abi_major = HELM_PLUGIN_ABI_MAJOR;
  table.abi_minor = HELM_PLUGIN_ABI_MINOR;
  table.struct_size = sizeof(helm_plugin_v1);
  table.name = name;
  table.create = &Adapter<T>::create;
  table.start = &Adapter<T>::start;
  table.stop = &Adapter<T>::stop;
  table.destroy = &Adapter<T>::destroy;
  table.configure = &Adapter<T>::configure;
  table.invoke = &Adapter<T>::invoke;
  table.cancel = &Adapter<T>::cancel;
  table.on_event = &Adapter<T>::on_event;
  return table;
}

/// The two ABI 1.1 transport functions for a TransportPlugin class T.
template <typename T>
struct TransportAdapter {
  static TransportPlugin* self(helm_plugin_instance* instance) noexcept {
    // create() stored the instance as a Plugin*; T derives from TransportPlugin.
    return static_cast<TransportPlugin*>(reinterpret_cast<Plugin*>(instance));
  }

  static helm_status device_send(helm_plugin_instance* instance, const char* device_id,
                                 std::size_t device_id_len, const char* frame_json,
                                 std::size_t frame_len) noexcept {
    try {
      return to_abi(
          self(instance)->device_send(view(device_id, device_id_len), view(frame_json, frame_len)));
    } catch (...) {
      const Error failure = error_from_current_exception("device_send");
      self(instance)->host().error(failure.message);
      return to_abi(failure.status);
    }
  }

  static void device_close(helm_plugin_instance* instance, const char* device_id,
                           std::size_t device_id_len, std::uint16_t code, const char* reason,
                           std::size_t reason_len) noexcept {
    try {
      self(instance)->device_close(view(device_id, device_id_len), code, view(reason, reason_len));
    } catch (...) {
      self(instance)->host().error(error_from_current_exception("device_close").message);
    }
  }
};

/// The entry table for transport plugin class T, as a constant.
template <typename T>
constexpr helm_plugin_v1 transport_plugin_table(const char* name) noexcept {
  static_assert(std::is_base_of_v<TransportPlugin, T>,
                "HELM_EXPORT_TRANSPORT_PLUGIN needs a helm::sdk::TransportPlugin");
  helm_plugin_v1 table = plugin_table<T>(name);
  table.device_send = &TransportAdapter<T>::device_send;
  table.device_close = &TransportAdapter<T>::device_close;
  return table;
}

}  // namespace detail
}  // namespace helm::sdk

/// Defines the plugin's exported helm_plugin_entry for ClassName (a helm::sdk::Plugin) under the
/// manifest name `plugin_name` (a string literal). Use once per library, at global scope.
#define HELM_EXPORT_PLUGIN(ClassName, plugin_name)                              \
  extern "C" HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry(void) { \
    static constexpr helm_plugin_v1 kHelmPluginTable =                          \
        ::helm::sdk::detail::plugin_table<ClassName>(plugin_name);              \
    return &kHelmPluginTable;                                                   \
  }

/// Like HELM_EXPORT_PLUGIN for a helm::sdk::TransportPlugin: also fills the ABI 1.1
/// device_send and device_close functions. The manifest must declare
/// "capabilities": {"transport": true} and "abi": "1.1" or later.
#define HELM_EXPORT_TRANSPORT_PLUGIN(ClassName, plugin_name)                    \
  extern "C" HELM_PLUGIN_EXPORT const helm_plugin_v1* helm_plugin_entry(void) { \
    static constexpr helm_plugin_v1 kHelmPluginTable =                          \
        ::helm::sdk::detail::transport_plugin_table<ClassName>(plugin_name);    \
    return &kHelmPluginTable;                                                   \
  }
