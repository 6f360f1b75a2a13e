/// @brief The hub's own HTTP request and response types: what route handlers see, free of Beast.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace helm::http {

struct Request {
  std::string method;  ///< upper case: GET, POST …
  std::string target;  ///< as sent: path and query
  std::string path;    ///< percent-decoding is left to the handler (secret names may hold %2F)
  std::string query;   ///< without '?'
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;
  std::string remote_address;
  bool remote_is_loopback = false;
  std::map<std::string, std::string> path_params;  ///< filled by the router from {name} segments
  std::string route;  ///< the matched route pattern, for metrics and logs

  /// First header with this (lower-case) name, or nullopt.
  std::optional<std::string_view> header(std::string_view lower_name) const;
  /// Value of a query parameter (percent-decoded), or nullopt.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  static Response json(int status, std::string body);
  static Response text(int status, std::string body,
                       std::string content_type = "text/plain; charset=utf-8");
  static Response empty(int status);
};

/// Completes a request. Call exactly once, from any thread; later calls are ignored.
using Responder = std::function<void(Response)>;

/// Decides, from a request's head alone, whether its (large) body may be read: called with
/// nullopt to go on, or with the response to give instead (the body is then not read and the
/// connection is closed). Call exactly once, from any thread.
using BodyDecision = std::function<void(std::optional<Response>)>;
using BodyGate = std::function<void(const Request& head, BodyDecision decide)>;

/// A route handler. It may answer at once or hand `respond` to other work and answer later;
/// it must not block (database work goes to the DbPool).
using Handler = std::function<void(Request& request, Responder respond)>;

/// Decodes %XX escapes; nullopt for a malformed escape. '+' is left alone unless `plus_is_space`.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space = false);

}  // namespace helm::http
