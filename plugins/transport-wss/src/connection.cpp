#include "connection.hpp"

#include <ctime>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "server.hpp"

namespace helm::transport {
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using nlohmann::json;

namespace {

constexpr std::string_view kPath = "/agent/v1";
constexpr std::string_view kSubprotocol = "helm.agent.v1";
constexpr std::size_t kMaxRequestHeaderBytes = 8 * 1024;
constexpr std::uint32_t kCloseTimeoutSeconds = 5;
constexpr std::size_t kMaxCloseReasonBytes = 123;  // RFC 6455: 125 bytes minus the code

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string rfc3339_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  const std::size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(text, length);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

/// Whether a Sec-WebSocket-Protocol list names ours.
bool offers_subprotocol(std::string_view list) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (trim(list.substr(0, comma)) == kSubprotocol) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

/// A close code we may send: RFC 6455 registered codes and the private 3000-4999 range.
std::uint16_t sendable_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return code;
  if (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) return code;
  return 1000;
}

std::string_view utf8_prefix(std::string_view text, std::size_t capacity) {
  if (text.size() <= capacity) return text;
  std::size_t length = capacity;
  while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xC0U) == 0x80U)
    --length;
  return text.substr(0, length);
}

/// The heartbeat as agents write it, `{"seq":N,"t":"hb"}` or `{"t":"hb","seq":N}` with N a
/// plain non-negative integer: its `hb_ack`, made without a JSON parse (most frames on a
/// transport are heartbeats). Anything else (spaces, more fields) returns false and takes the
/// general path, which answers the same.
bool fast_hb_ack(std::string_view text, std::string& ack) {
  constexpr std::string_view kSeqFirst = R"({"seq":)";
  constexpr std::string_view kSeqFirstTail = R"(,"t":"hb"})";
  constexpr std::string_view kTypeFirst = R"({"t":"hb","seq":)";
  std::string_view digits;
  if (text.starts_with(kSeqFirst) && text.ends_with(kSeqFirstTail)) {
    digits = text.substr(kSeqFirst.size(), text.size() - kSeqFirst.size() - kSeqFirstTail.size());
  } else if (text.starts_with(kTypeFirst) && text.ends_with("}")) {
    digits = text.substr(kTypeFirst.size(), text.size() - kTypeFirst.size() - 1);
  } else {
    return false;
  }
  // At most 15 digits: exactly what the general path would echo back (no float rounding).
  if (digits.empty() || digits.size() > 15 || (digits.size() > 1 && digits[0] == '0')) return false;
  for (const char c : digits)
    if (c < '0' || c > '9') return false;
  ack.reserve(24 + digits.size());
  ack = R"({"seq":)";
  ack += digits;
  ack += R"(,"t":"hb_ack"})";
  return true;
}

}  // namespace

struct Connection::Upgrade {
  boost::beast::flat_buffer buffer{kMaxRequestHeaderBytes};
  http::request_parser<http::empty_body> parser;
  http::response<http::string_body> response;
  bool subprotocol = false;
};

Connection::Connection(Server& server, Worker& worker, Socket socket, SSL* ssl, std::uint64_t id)
    : server_(server), worker_(worker), ws_(std::move(socket), ssl, &worker.clock), id_(id) {}

Connection::~Connection() = default;

void Connection::start() {
  deadline_ = worker_.clock + server_.limits().handshake_timeout_s;
  ws_.next_layer().async_handshake(
      [self = shared_from_this()](error_code ec, std::size_t) { self->on_handshake(ec); });
}

void Connection::on_handshake(error_code ec) {
  if (finished_) return;
  if (ec) {
    // TLS 1.2 clients, scanners, wrong certificates on the agent side: nothing to tell the hub.
    abort();
    return;
  }
  state_ = State::kReadingRequest;
  upgrade_ = std::make_unique<Upgrade>();
  upgrade_->parser.header_limit(kMaxRequestHeaderBytes);
  http::async_read(
      ws_.next_layer(), upgrade_->buffer, upgrade_->parser,
      [self = shared_from_this()](error_code read_ec, std::size_t) { self->on_request(read_ec); });
}

void Connection::on_request(error_code ec) {
  if (finished_) return;
  if (ec) {
    abort();
    return;
  }
  const auto& request = upgrade_->parser.get();
  std::string_view target = request.target();
  target = target.substr(0, target.find('?'));
  if (target != kPath) {
    respond(404, "Not Found", "The agent endpoint is /agent/v1.");
    return;
  }
  if (!websocket::is_upgrade(request)) {
    respond(426, "Upgrade Required", "Connect with a WebSocket upgrade (RFC 6455).");
    return;
  }
  const auto protocols = request.find(http::field::sec_websocket_protocol);
  if (protocols != request.end()) {
    if (!offers_subprotocol(protocols->value())) {
      respond(400, "Bad Request", "The only WebSocket subprotocol offered here is helm.agent.v1.");
      return;
    }
    upgrade_->subprotocol = true;
  }
  std::string_view token;
  const auto authorization = request.find(http::field::authorization);
  if (authorization != request.end()) {
    const std::string_view value = trim(authorization->value());
    if (value.size() > 7 && iequals(value.substr(0, 7), "Bearer ")) token = trim(value.substr(7));
  }
  if (token.empty()) {
    respond(401, "Unauthorized",
            "Send the device token from enrollment as Authorization: Bearer <token>.");
    return;
  }
  state_ = State::kAuthenticating;
  server_.authenticate(shared_from_this(), std::string(token));
}

void Connection::on_authenticated(sdk::Status status, const std::string& device_json) {
  if (finished_ || state_ != State::kAuthenticating) return;
  if (closing_) {
    abort();
    return;
  }
  if (status == sdk::Status::kUnauthorized || status == sdk::Status::kNotFound ||
      status == sdk::Status::kForbidden) {
    respond(401, "Unauthorized",
            "The device token is unknown or revoked; enroll the agent again to get a new one.");
    return;
  }
  if (status != sdk::Status::kOk) {
    respond(503, "Service Unavailable", "The hub cannot check device tokens right now; retry.");
    return;
  }
  const json device = json::parse(device_json, nullptr, false);
  const auto id = device.is_object() ? device.find("device_id") : device.end();
  if (!device.is_object() || id == device.end() || !id->is_string() ||
      id->get_ref<const std::string&>().empty()) {
    server_.host().error("transport-wss: device_authenticate answered OK without a device_id");
    respond(503, "Service Unavailable", "The hub could not identify the device; retry.");
    return;
  }
  device_id_ = id->get<std::string>();
  heartbeat_s_ = server_.limits().heartbeat_s;
  // Signed or unsigned: a hub may build the JSON from an int.
  if (const auto beat = device.find("heartbeat_s");
      beat != device.end() && beat->is_number_integer() && beat->get<std::int64_t>() > 0 &&
      beat->get<std::int64_t>() <= 3600) {
    heartbeat_s_ = static_cast<std::uint32_t>(beat->get<std::int64_t>());
  }

  server_.register_device(shared_from_this());
  state_ = State::kUpgrading;
  ws_.read_message_max(server_.limits().max_frame_bytes);
  ws_.auto_fragment(false);
  if (upgrade_->subprotocol) {
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
      response.set(http::field::sec_websocket_protocol, kSubprotocol);
    }));
  }
  ws_.async_accept(upgrade_->parser.get(),
                   [self = shared_from_this()](error_code ec) { self->on_upgraded(ec); });
}

void Connection::respond(unsigned status, std::string_view title, std::string_view detail) {
  state_ = State::kResponding;
  auto& response = upgrade_->response;
  response.version(11);
  response.result(status);
  response.set(http::field::content_type, "application/problem+json");
  response.set(http::field::connection, "close");
  response.set(http::field::cache_control, "no-store");
  if (status == 401) response.set(http::field::www_authenticate, "Bearer");
  if (status == 503) response.set(http::field::retry_after, "5");
  response.body() =
      dump(json{{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}});
  response.keep_alive(false);
  response.prepare_payload();
  http::async_write(
      ws_.next_layer(), response, [self = shared_from_this()](error_code ec, std::size_t) {
        if (self->finished_) return;
        if (ec) {
          self->abort();
          return;
        }
        self->ws_.next_layer().shutdown_send();
        self->ws_.next_layer().async_drain_and_close([self](error_code) { self->finish(); });
      });
}

void Connection::on_upgraded(error_code ec) {
  if (finished_) return;
  if (ec) {
    abort();
    return;
  }
  upgrade_.reset();
  state_ = State::kAwaitHello;
  last_rx_ = worker_.clock;
  deadline_ = worker_.clock + server_.limits().handshake_timeout_s;
  ws_.text(true);
  read_next();
  pump();  // a close requested during the upgrade
}

void Connection::read_next() {
  ws_.async_read(rx_,
                 [self = shared_from_this()](error_code ec, std::size_t) { self->on_message(ec); });
}

void Connection::on_message(error_code ec) {
  if (finished_) return;
  if (ec) {
    // A close handshake finished, the peer went away, or the frame was too big (Beast has
    // already sent 1009 and torn the connection down).
    finish();
    return;
  }
  last_rx_ = worker_.clock;
  try {
    const auto data = rx_.data();
    handle_frame(std::string_view(static_cast<const char*>(data.data()), data.size()),
                 ws_.got_text());
  } catch (const std::exception& exception) {
    server_.host().error(std::string("transport-wss: handling a frame failed: ") +
                         exception.what());
  }
  rx_.clear();
  rx_.shrink_to_fit();
  if (!finished_) read_next();
}

void Connection::handle_frame(std::string_view text, bool is_text) {
  if (is_text && state_ == State::kOpen && !closing_) {
    std::string ack;
    if (fast_hb_ack(text, ack)) {
      enqueue_local(std::move(ack), false);
      return;
    }
  }
  const json frame = is_text ? json::parse(text, nullptr, false) : json(json::value_t::discarded);
  const std::string* type = nullptr;
  if (frame.is_object()) {
    const auto found = frame.find("t");
    if (found != frame.end() && found->is_string()) type = &found->get_ref<const std::string&>();
  }

  if (state_ == State::kAwaitHello) {
    if (type != nullptr && *type == "hello") {
      on_hello(text);
    } else {
      begin_close(1008, "the first frame must be hello", true);
    }
    return;
  }
  if (closing_) return;

  json ref = nullptr;
  if (frame.is_object()) {
    const auto id = frame.find("id");
    if (id != frame.end() && id->is_string()) {
      ref = *id;
    } else if (type != nullptr) {
      ref = *type;
    }
  }
  if (!frame.is_object()) {
    send_error("bad_frame", "a frame must be one JSON object in a UTF-8 text frame", ref);
  } else if (type == nullptr) {
    send_error("bad_frame", "the frame has no string field \"t\"", ref);
  } else if (*type == "hb") {
    json ack{{"t", "hb_ack"}};
    if (const auto seq = frame.find("seq"); seq != frame.end()) ack["seq"] = *seq;
    enqueue_local(dump(ack), false);
  } else if (*type == "ack" || *type == "result" || *type == "event") {
    server_.host().device_event(sdk::DeviceEvent::kFrame, id_, device_id_, text);
  } else if (*type == "hello") {
    send_error("unexpected_hello", "hello is only valid as the first frame", ref);
  } else if (*type == "error") {
    // The agent refused one of our frames; the hub learns of it through the missing ack.
    server_.host().warn("transport-wss: device " + device_id_ +
                        " refused a frame: " + std::string(utf8_prefix(text, 512)));
  } else {
    send_error("unknown_type", "unknown frame type \"" + *type + "\"", ref);
  }
}

void Connection::on_hello(std::string_view text) {
  state_ = State::kOpen;
  connected_ = true;
  server_.host().device_event(sdk::DeviceEvent::kConnected, id_, device_id_, text);
  enqueue_local(dump(json{{"t", "welcome"},
                          {"device_id", device_id_},
                          {"heartbeat_s", heartbeat_s_},
                          {"server_time", rfc3339_now()}}),
                true);
}

void Connection::send_error(std::string_view code, std::string_view message, const json& ref) {
  enqueue_local(dump(json{{"t", "error"}, {"code", code}, {"message", message}, {"ref", ref}}),
                false);
}

void Connection::enqueue_local(std::string frame, bool front) {
  if (finished_) return;
  const auto& limits = server_.limits();
  const std::size_t frames = queued_frames_.fetch_add(1) + 1;
  const std::size_t bytes = queued_bytes_.fetch_add(frame.size()) + frame.size();
  if (frames > limits.send_queue_max_frames || bytes > limits.send_queue_max_bytes) {
    unaccount(frame.size());
    server_.host().warn("transport-wss: closing the connection of device " + device_id_ +
                        ": its send queue is full (the agent does not read)");
    abort();
    return;
  }
  if (front) {
    queue_.insert(queue_.begin() + static_cast<std::ptrdiff_t>(head_ + (writing_ ? 1 : 0)),
                  std::move(frame));
  } else {
    queue_.push_back(std::move(frame));
  }
  pump();
}

sdk::Status Connection::send_from_host(std::string frame) {
  const auto& limits = server_.limits();
  const std::size_t size = frame.size();
  const std::size_t frames = queued_frames_.fetch_add(1) + 1;
  const std::size_t bytes = queued_bytes_.fetch_add(size) + size;
  if (frames > limits.send_queue_max_frames || bytes > limits.send_queue_max_bytes) {
    unaccount(size);
    net::post(worker_.io, [self = shared_from_this()] {
      if (self->finished_) return;
      self->server_.host().warn("transport-wss: closing the connection of device " +
                                self->device_id_ +
                                ": its send queue is full (the agent does not read)");
      self->abort();
    });
    return sdk::Status::kResourceExhausted;
  }
  net::post(worker_.io, [self = shared_from_this(), frame = std::move(frame)]() mutable {
    self->push_from_host(std::move(frame));
  });
  return sdk::Status::kOk;
}

void Connection::push_from_host(std::string frame) {
  if (finished_ || closing_) {
    unaccount(frame.size());
    return;
  }
  queue_.push_back(std::move(frame));
  pump();
}

void Connection::close_from_host(std::uint16_t code, std::string reason) {
  net::post(worker_.io, [self = shared_from_this(), code, reason = std::move(reason)] {
    self->begin_close(code, reason, true);
  });
}

void Connection::begin_close(std::uint16_t code, std::string_view reason, bool drop_queue) {
  if (finished_ || closing_) return;
  closing_ = true;
  close_code_ = sendable_close_code(code);
  close_reason_ = std::string(utf8_prefix(reason, kMaxCloseReasonBytes));
  deadline_ = worker_.clock + kCloseTimeoutSeconds;
  server_.unregister_device(*this);
  if (state_ < State::kUpgrading) {
    abort();
    return;
  }
  if (drop_queue) drop_unsent();
  pump();
}

void Connection::drop_unsent() {
  const std::size_t keep = head_ + (writing_ ? 1 : 0);
  for (std::size_t i = keep; i < queue_.size(); ++i)
    unaccount(queue_[i].size());
  queue_.resize(keep);
}

void Connection::unaccount(std::size_t bytes) noexcept {
  queued_frames_.fetch_sub(1);
  queued_bytes_.fetch_sub(bytes);
}

void Connection::pump() {
  if (writing_ || finished_ || state_ < State::kAwaitHello) return;
  if (closing_) {
    if (state_ != State::kOpen) drop_unsent();  // nothing goes out before the welcome
    if (head_ == queue_.size()) {
      // Everything queued is flushed first (stop() drains); a dropped queue is empty here.
      if (close_started_) return;
      close_started_ = true;
      ws_.async_close(
          websocket::close_reason(static_cast<websocket::close_code>(close_code_), close_reason_),
          [self = shared_from_this()](error_code ec) {
            // On success the pending read sees the peer's close and finishes.
            if (ec) self->abort();
          });
      return;
    }
  }
  if (state_ != State::kOpen || head_ == queue_.size()) return;
  writing_ = true;
  ws_.async_write(
      net::buffer(queue_[head_]),
      [self = shared_from_this()](error_code ec, std::size_t) { self->on_written(ec); });
}

void Connection::on_written(error_code ec) {
  writing_ = false;
  if (head_ < queue_.size()) {
    unaccount(queue_[head_].size());
    std::string().swap(queue_[head_]);
    ++head_;
  }
  if (head_ == queue_.size()) {
    queue_.clear();
    head_ = 0;
    if (queue_.capacity() > 16) queue_.shrink_to_fit();
  }
  if (finished_) return;
  if (ec) {
    abort();
    return;
  }
  pump();
}

void Connection::abort() {
  if (finished_) return;
  ws_.next_layer().close();
  finish();
}

void Connection::sweep(std::uint32_t now) {
  if (finished_) return;
  const std::uint32_t teardown = ws_.next_layer().teardown_started();
  if (teardown != 0 && now - teardown >= kCloseTimeoutSeconds) {
    abort();
    return;
  }
  if (closing_ || state_ != State::kOpen) {
    if (now >= deadline_) abort();
    return;
  }
  if (now - last_rx_ >= 3 * heartbeat_s_) {
    begin_close(1000, "no frame for three heartbeat intervals", true);
  }
}

void Connection::finish() {
  if (finished_) return;
  const auto self = shared_from_this();  // the worker may hold the last reference
  finished_ = true;
  state_ = State::kFinished;
  ws_.next_layer().close();
  server_.unregister_device(*this);
  if (connected_) server_.host().device_event(sdk::DeviceEvent::kDisconnected, id_, device_id_, {});
  server_.connection_finished(*this);
}

}  // namespace helm::transport
