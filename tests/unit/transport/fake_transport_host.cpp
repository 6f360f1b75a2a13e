#include "fake_transport_host.hpp"

#include <cstring>
#include <utility>

namespace helm::transport::testing {
namespace {

FakeTransportHost& self(void* ctx) {
  return *static_cast<FakeTransportHost*>(ctx);
}

// The 1.0 services a transport does not use.
helm_status refuse_secret(void*, const helm_session*, const char*, size_t, helm_secret_lease**,
                          helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
const uint8_t* no_data(const helm_secret_lease*) {
  return nullptr;
}
size_t no_size(const helm_secret_lease*) {
  return 0;
}
void no_release(helm_secret_lease*) {}
helm_status refuse_http(void*, const helm_session*, const helm_http_request*, helm_http_complete_fn,
                        void*, helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
helm_status refuse_publish(void*, const char*, size_t, const char*, size_t, const char*, size_t,
                           helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
helm_status refuse_kv_get(void*, const char*, size_t, const char*, size_t, helm_bytes_sink_fn,
                          void*, helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
helm_status refuse_kv_put(void*, const char*, size_t, const char*, size_t, const uint8_t*, size_t,
                          helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
helm_status refuse_timer(void*, uint64_t, helm_timer_fn, void*, uint64_t*, helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}
void no_cancel(void*, uint64_t) {}
helm_status refuse_session(void*, const helm_session*, helm_bytes_sink_fn, void*, helm_error*) {
  return HELM_STATUS_UNSUPPORTED;
}

}  // namespace

FakeTransportHost::FakeTransportHost(std::string settings_json)
    : settings_(std::move(settings_json)) {
  api_.struct_size = sizeof api_;
  api_.abi_major = HELM_PLUGIN_ABI_MAJOR;
  api_.abi_minor = HELM_PLUGIN_ABI_MINOR;
  api_.host_ctx = this;
  api_.log = &log;
  api_.release_secret = &refuse_secret;
  api_.secret_data = &no_data;
  api_.secret_size = &no_size;
  api_.release_lease = &no_release;
  api_.http_request = &refuse_http;
  api_.publish_event = &refuse_publish;
  api_.kv_get = &refuse_kv_get;
  api_.kv_put = &refuse_kv_put;
  api_.timer_schedule = &refuse_timer;
  api_.timer_cancel = &no_cancel;
  api_.session_info = &refuse_session;
  api_.device_authenticate = &device_authenticate;
  api_.device_event = &device_event;
  api_.transport_listening = &transport_listening;
  api_.transport_settings = &transport_settings;
  worker_ = std::thread([this] { work(); });
}

FakeTransportHost::~FakeTransportHost() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void FakeTransportHost::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return quit_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // quit, with every check answered
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void FakeTransportHost::add_device(const std::string& token, const std::string& device_id) {
  std::lock_guard lock(mutex_);
  devices_[token] = device_id;
}

void FakeTransportHost::set_heartbeat_s(int seconds) {
  std::lock_guard lock(mutex_);
  heartbeat_s_ = seconds;
}

std::vector<RecordedEvent> FakeTransportHost::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::vector<RecordedEvent> FakeTransportHost::events_of(const std::string& device_id) const {
  std::lock_guard lock(mutex_);
  std::vector<RecordedEvent> out;
  for (const auto& event : events_) {
    if (event.device_id == device_id) out.push_back(event);
  }
  return out;
}

std::string FakeTransportHost::listening_url() const {
  std::lock_guard lock(mutex_);
  return url_;
}

std::vector<std::string> FakeTransportHost::logs() const {
  std::lock_guard lock(mutex_);
  return logs_;
}

std::size_t FakeTransportHost::auth_calls() const {
  std::lock_guard lock(mutex_);
  return auth_calls_;
}

bool FakeTransportHost::wait_for_events(
    const std::function<bool(const std::vector<RecordedEvent>&)>& predicate,
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return predicate(events_); });
}

void FakeTransportHost::log(void* ctx, helm_log_level /*level*/, const char* message,
                            size_t length) {
  auto& host = self(ctx);
  std::lock_guard lock(host.mutex_);
  host.logs_.emplace_back(message, length);
}

helm_status FakeTransportHost::device_authenticate(void* ctx, const char* token, size_t token_len,
                                                   helm_device_auth_complete_fn complete,
                                                   void* user, helm_error* /*err*/) {
  auto& host = self(ctx);
  const std::string presented(token, token_len);
  {
    std::lock_guard lock(host.mutex_);
    ++host.auth_calls_;
    host.jobs_.push_back([&host, presented, complete, user] {
      helm_status status = HELM_STATUS_UNAUTHORIZED;
      std::string answer = "unknown or revoked device token";
      {
        std::lock_guard inner(host.mutex_);
        const auto found = host.devices_.find(presented);
        if (presented == "unavailable") {
          status = HELM_STATUS_UNAVAILABLE;
          answer = "database down";
        } else if (found != host.devices_.end()) {
          status = HELM_STATUS_OK;
          answer = "{\"device_id\":\"" + found->second +
                   "\",\"organization_id\":\"org-1\",\"heartbeat_s\":" +
                   std::to_string(host.heartbeat_s_) + "}";
        }
      }
      complete(user, status, answer.c_str(), answer.size());
    });
  }
  host.changed_.notify_all();
  return HELM_STATUS_OK;
}

void FakeTransportHost::device_event(void* ctx, helm_device_event_kind kind, uint64_t connection_id,
                                     const char* device_id, size_t device_id_len,
                                     const char* frame_json, size_t frame_len) {
  auto& host = self(ctx);
  {
    std::lock_guard lock(host.mutex_);
    host.events_.push_back(
        RecordedEvent{kind, connection_id, std::string(device_id, device_id_len),
                      frame_json == nullptr ? std::string() : std::string(frame_json, frame_len)});
  }
  host.changed_.notify_all();
}

void FakeTransportHost::transport_listening(void* ctx, const char* url, size_t url_len) {
  auto& host = self(ctx);
  {
    std::lock_guard lock(host.mutex_);
    host.url_.assign(url, url_len);
  }
  host.changed_.notify_all();
}

helm_status FakeTransportHost::transport_settings(void* ctx, helm_bytes_sink_fn sink,
                                                  void* sink_ctx, helm_error* /*err*/) {
  auto& host = self(ctx);
  sink(sink_ctx, reinterpret_cast<const uint8_t*>(host.settings_.data()), host.settings_.size());
  return HELM_STATUS_OK;
}

}  // namespace helm::transport::testing
