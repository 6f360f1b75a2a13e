#include "test_host.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

struct helm_secret_lease {
  helm::plugins::testing::TestHost* owner;
  std::string value;
};

namespace helm::plugins::testing {
namespace {

TestHost& self(void* host_ctx) {
  return *static_cast<TestHost*>(host_ctx);
}

std::string text(const char* data, size_t size) {
  return data == nullptr ? std::string() : std::string(data, size);
}

}  // namespace

void set_error(helm_error* err, helm_status status, const std::string& message) {
  if (err == nullptr || !HELM_HAS_FIELD(err, helm_error, message)) return;
  err->status = status;
  const std::size_t length = std::min(message.size(), sizeof err->message - 1);
  std::memcpy(err->message, message.data(), length);
  err->message[length] = '\0';
}

TestHost::TestHost() {
  api_.struct_size = sizeof api_;
  api_.abi_major = HELM_PLUGIN_ABI_MAJOR;
  api_.abi_minor = HELM_PLUGIN_ABI_MINOR;
  api_.host_ctx = this;
  api_.log = &TestHost::log;
  api_.release_secret = &TestHost::release_secret;
  api_.secret_data = &TestHost::secret_data;
  api_.secret_size = &TestHost::secret_size;
  api_.release_lease = &TestHost::release_lease;
  api_.http_request = &TestHost::http_request;
  api_.publish_event = &TestHost::publish_event;
  api_.kv_get = &TestHost::kv_get;
  api_.kv_put = &TestHost::kv_put;
  api_.timer_schedule = &TestHost::timer_schedule;
  api_.timer_cancel = &TestHost::timer_cancel;
  api_.session_info = &TestHost::session_info;
}

TestHost::~TestHost() {
  join_timers();
}

const helm_session* TestHost::session() noexcept {
  static const int kSession = 0;
  return reinterpret_cast<const helm_session*>(&kSession);
}

void TestHost::join_timers() {
  std::vector<std::thread> timers;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    timers.swap(timers_);
  }
  for (std::thread& timer : timers)
    timer.join();
}

void TestHost::set_secret(const std::string& name, const std::string& value) {
  const std::lock_guard<std::mutex> lock(mutex_);
  secrets_[name] = value;
}

std::vector<std::string> TestHost::logs() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return logs_;
}

std::size_t TestHost::open_leases() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return open_leases_;
}

void TestHost::log(void* host_ctx, helm_log_level level, const char* message, size_t length) {
  TestHost& host = self(host_ctx);
  const std::lock_guard<std::mutex> lock(host.mutex_);
  host.logs_.push_back(std::to_string(level) + " " + text(message, length));
}

helm_status TestHost::release_secret(void* host_ctx, const helm_session* session, const char* name,
                                     size_t name_len, helm_secret_lease** out_lease,
                                     helm_error* err) {
  if (session != TestHost::session()) {
    set_error(err, HELM_STATUS_UNAUTHORIZED, "secrets are released only inside a session");
    return HELM_STATUS_UNAUTHORIZED;
  }
  TestHost& host = self(host_ctx);
  const std::lock_guard<std::mutex> lock(host.mutex_);
  const auto found = host.secrets_.find(text(name, name_len));
  if (found == host.secrets_.end()) {
    set_error(err, HELM_STATUS_NOT_FOUND, "no secret named " + text(name, name_len));
    return HELM_STATUS_NOT_FOUND;
  }
  *out_lease = new helm_secret_lease{&host, found->second};
  ++host.open_leases_;
  return HELM_STATUS_OK;
}

const uint8_t* TestHost::secret_data(const helm_secret_lease* lease) {
  return reinterpret_cast<const uint8_t*>(lease->value.c_str());
}

size_t TestHost::secret_size(const helm_secret_lease* lease) {
  return lease->value.size();
}

void TestHost::release_lease(helm_secret_lease* lease) {
  {
    const std::lock_guard<std::mutex> lock(lease->owner->mutex_);
    --lease->owner->open_leases_;
  }
  delete lease;
}

helm_status TestHost::http_request(void* /*host_ctx*/, const helm_session* /*session*/,
                                   const helm_http_request* /*request*/,
                                   helm_http_complete_fn /*complete*/, void* /*user*/,
                                   helm_error* err) {
  set_error(err, HELM_STATUS_FORBIDDEN, "the test host makes no outbound requests");
  return HELM_STATUS_FORBIDDEN;
}

helm_status TestHost::publish_event(void* host_ctx, const char* /*organization_id*/,
                                    size_t /*organization_id_len*/, const char* topic,
                                    size_t topic_len, const char* /*payload_json*/,
                                    size_t /*payload_len*/, helm_error* /*err*/) {
  log(host_ctx, HELM_LOG_INFO, topic, topic_len);
  return HELM_STATUS_OK;
}

helm_status TestHost::kv_get(void* host_ctx, const char* organization_id,
                             size_t organization_id_len, const char* key, size_t key_len,
                             helm_bytes_sink_fn sink, void* sink_ctx, helm_error* err) {
  TestHost& host = self(host_ctx);
  std::string value;
  {
    const std::lock_guard<std::mutex> lock(host.mutex_);
    const auto found =
        host.store_.find(text(organization_id, organization_id_len) + '\n' + text(key, key_len));
    if (found == host.store_.end()) {
      set_error(err, HELM_STATUS_NOT_FOUND, "no such key");
      return HELM_STATUS_NOT_FOUND;
    }
    value = found->second;
  }
  sink(sink_ctx, reinterpret_cast<const uint8_t*>(value.data()), value.size());
  return HELM_STATUS_OK;
}

helm_status TestHost::kv_put(void* host_ctx, const char* organization_id,
                             size_t organization_id_len, const char* key, size_t key_len,
                             const uint8_t* value, size_t value_len, helm_error* /*err*/) {
  TestHost& host = self(host_ctx);
  const std::lock_guard<std::mutex> lock(host.mutex_);
  const std::string id = text(organization_id, organization_id_len) + '\n' + text(key, key_len);
  if (value == nullptr) {
    host.store_.erase(id);
  } else {
    host.store_[id] = std::string(reinterpret_cast<const char*>(value), value_len);
  }
  return HELM_STATUS_OK;
}

helm_status TestHost::timer_schedule(void* host_ctx, uint64_t delay_ms, helm_timer_fn fn,
                                     void* user, uint64_t* out_timer_id, helm_error* /*err*/) {
  TestHost& host = self(host_ctx);
  const std::lock_guard<std::mutex> lock(host.mutex_);
  if (out_timer_id != nullptr) *out_timer_id = host.next_timer_++;
  host.timers_.emplace_back([&host, delay_ms, fn, user] {
    // The ABI forbids calling back before timer_schedule returns; it holds mutex_ until then.
    { const std::lock_guard<std::mutex> wait_for_return(host.mutex_); }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    fn(user, HELM_STATUS_OK);
  });
  return HELM_STATUS_OK;
}

void TestHost::timer_cancel(void* /*host_ctx*/, uint64_t /*timer_id*/) {}

helm_status TestHost::session_info(void* /*host_ctx*/, const helm_session* /*session*/,
                                   helm_bytes_sink_fn sink, void* sink_ctx, helm_error* /*err*/) {
  static const char kInfo[] =
      R"({"principal_kind":"technician","principal_id":"t-1","organization_id":"org-1",)"
      R"("roles":["tech"],"expires_at":"2030-01-01T00:00:00Z"})";
  sink(sink_ctx, reinterpret_cast<const uint8_t*>(kInfo), sizeof kInfo - 1);
  return HELM_STATUS_OK;
}

}  // namespace helm::plugins::testing
