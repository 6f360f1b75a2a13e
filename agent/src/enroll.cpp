#include "helm/agent/enroll.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "enroll_async.hpp"
#include "helm/agent/log.hpp"
#include "tls_connect.hpp"

namespace helm::agent {
namespace {

namespace http = boost::beast::http;
namespace asio = boost::asio;
namespace beast = boost::beast;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string problem_text(const std::string& body) {
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_object()) {
    std::string text = doc.value("title", std::string());
    const std::string detail = doc.value("detail", std::string());
    if (!detail.empty()) text += (text.empty() ? "" : ": ") + detail;
    if (!text.empty()) return text;
  }
  return body.substr(0, 200);
}

}  // namespace

namespace detail {

asio::awaitable<std::variant<AgentState, EnrollFailure>> enroll_async(const EnrollRequest& request,
                                                                      asio::ssl::context& ctx) {
  auto server = parse_url(request.server);
  if (!server) co_return EnrollFailure{0, 0, server.error().message};
  if (server->scheme != "https") {
    co_return EnrollFailure{0, 0, "the hub URL must start with https://"};
  }
  detail::TlsStream stream(co_await asio::this_coro::executor, ctx);
  // The hub is verified here, before the enrollment key leaves this machine.
  if (auto connected = co_await detail::connect_tls(stream, *server, request.proxy, request.trust,
                                                    request.timeout);
      !connected) {
    co_return EnrollFailure{0, 0, connected.error().message};
  }
  const nlohmann::json body = {{"enrollment_key", request.enrollment_key},
                               {"hostname", request.host.hostname},
                               {"os", request.host.os},
                               {"os_version", request.host.os_version},
                               {"arch", request.host.arch},
                               {"machine_id", request.machine_id},
                               {"agent_version", kAgentVersion}};
  std::string base = server->target;
  while (!base.empty() && base.back() == '/')
    base.pop_back();
  http::request<http::string_body> req{http::verb::post, base + "/api/v1/agent/enroll", 11};
  req.set(http::field::host, server->authority());
  req.set(http::field::user_agent, std::string("helm-agent/") + kAgentVersion);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json");
  req.body() = log::dump(body);
  req.prepare_payload();
  stream.next_layer().expires_after(request.timeout);
  auto [write_ec, written] = co_await http::async_write(stream, req, kTuple);
  if (write_ec) co_return EnrollFailure{0, 0, "sending the request failed: " + write_ec.message()};
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, kTuple);
  if (read_ec) co_return EnrollFailure{0, 0, "reading the answer failed: " + read_ec.message()};
  auto& res = parser.get();
  stream.next_layer().close();
  const int status = res.result_int();
  if (status != 201 && status != 200) {
    EnrollFailure failure{status, 0, ""};
    if (status == 429) {
      failure.retry_after_s = std::atoi(std::string(res[http::field::retry_after]).c_str());
    }
    const std::string why = problem_text(res.body());
    switch (status) {
      case 401:
        failure.message =
            "the hub refused the enrollment key (unknown, used up, expired or "
            "revoked): ask for a new key";
        break;
      case 429:
        failure.message = "the hub says this address enrolls too fast; retry after " +
                          std::to_string(failure.retry_after_s) + " s";
        break;
      default:
        failure.message =
            "the hub answered HTTP " + std::to_string(status) + (why.empty() ? "" : ": " + why);
    }
    co_return failure;
  }
  const auto doc = nlohmann::json::parse(res.body(), nullptr, false);
  if (!doc.is_object() || !doc.contains("device_token") || !doc["device_token"].is_string() ||
      !doc.contains("device_id") || !doc["device_id"].is_string()) {
    co_return EnrollFailure{status, 0, "the hub's answer lacks device_id or device_token"};
  }
  AgentState state;
  state.server = request.server;
  state.device_id = doc["device_id"].get<std::string>();
  state.device_token = doc["device_token"].get<std::string>();
  state.transport_url = doc.value("transport_url", std::string());
  if (state.transport_url.empty()) {
    state.transport_url = "wss://" + server->authority() + "/agent/v1";
  }
  if (doc.contains("heartbeat_s") && doc["heartbeat_s"].is_number_integer()) {
    state.heartbeat_s = doc["heartbeat_s"].get<int>();
  }
  if (request.trust.pin) state.ca_pin = format_pin(*request.trust.pin);
  state.ca_file = request.trust.ca_file;
  co_return state;
}

}  // namespace detail

std::variant<AgentState, EnrollFailure> enroll(const EnrollRequest& request) {
  auto ctx = detail::make_client_context(request.trust);
  if (!ctx) return EnrollFailure{0, 0, ctx.error().message};
  asio::io_context ioc;
  std::variant<AgentState, EnrollFailure> outcome = EnrollFailure{0, 0, "enrollment did not run"};
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        try {
          outcome = co_await detail::enroll_async(request, *ctx.value());
        } catch (const std::exception& e) {
          outcome = EnrollFailure{0, 0, e.what()};
        }
      },
      asio::detached);
  ioc.run();
  return outcome;
}

}  // namespace helm::agent
