#include "bench_host.hpp"

#include <algorithm>
#include <cstring>

namespace helm::plugins::bench {
namespace {

helm_status refuse(helm_error* err, const char* what) {
  if (err != nullptr && HELM_HAS_FIELD(err, helm_error, message)) {
    err->status = HELM_STATUS_FORBIDDEN;
    const std::size_t length = std::min(std::strlen(what), sizeof err->message - 1);
    std::memcpy(err->message, what, length);
    err->message[length] = '\0';
  }
  return HELM_STATUS_FORBIDDEN;
}

}  // namespace

BenchHost::BenchHost() {
  api_.struct_size = sizeof api_;
  api_.abi_major = HELM_PLUGIN_ABI_MAJOR;
  api_.abi_minor = HELM_PLUGIN_ABI_MINOR;
  api_.host_ctx = this;
  api_.log = &BenchHost::log;
  api_.release_secret = &BenchHost::release_secret;
  api_.secret_data = &BenchHost::secret_data;
  api_.secret_size = &BenchHost::secret_size;
  api_.release_lease = &BenchHost::release_lease;
  api_.http_request = &BenchHost::http_request;
  api_.publish_event = &BenchHost::publish_event;
  api_.kv_get = &BenchHost::kv_get;
  api_.kv_put = &BenchHost::kv_put;
  api_.timer_schedule = &BenchHost::timer_schedule;
  api_.timer_cancel = &BenchHost::timer_cancel;
  api_.session_info = &BenchHost::session_info;
}

const helm_session* BenchHost::session() noexcept {
  static const int kSession = 0;
  return reinterpret_cast<const helm_session*>(&kSession);
}

std::vector<std::string> BenchHost::logs() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return logs_;
}

void BenchHost::log(void* host_ctx, helm_log_level level, const char* message, size_t length) {
  auto& host = *static_cast<BenchHost*>(host_ctx);
  const std::lock_guard<std::mutex> lock(host.mutex_);
  host.logs_.push_back(std::to_string(level) + " " +
                       (message == nullptr ? std::string() : std::string(message, length)));
}

helm_status BenchHost::release_secret(void* /*host_ctx*/, const helm_session* /*session*/,
                                      const char* /*name*/, size_t /*name_len*/,
                                      helm_secret_lease** /*out_lease*/, helm_error* err) {
  return refuse(err, "the bench host holds no secrets");
}

// Never called: release_secret hands out no leases.
const uint8_t* BenchHost::secret_data(const helm_secret_lease* /*lease*/) {
  return nullptr;
}
size_t BenchHost::secret_size(const helm_secret_lease* /*lease*/) {
  return 0;
}
void BenchHost::release_lease(helm_secret_lease* /*lease*/) {}

helm_status BenchHost::http_request(void* /*host_ctx*/, const helm_session* /*session*/,
                                    const helm_http_request* /*request*/,
                                    helm_http_complete_fn /*complete*/, void* /*user*/,
                                    helm_error* err) {
  return refuse(err, "the bench host makes no outbound requests");
}

helm_status BenchHost::publish_event(void* /*host_ctx*/, const char* /*organization_id*/,
                                     size_t /*organization_id_len*/, const char* /*topic*/,
                                     size_t /*topic_len*/, const char* /*payload_json*/,
                                     size_t /*payload_len*/, helm_error* /*err*/) {
  return HELM_STATUS_OK;
}

helm_status BenchHost::kv_get(void* /*host_ctx*/, const char* /*organization_id*/,
                              size_t /*organization_id_len*/, const char* /*key*/,
                              size_t /*key_len*/, helm_bytes_sink_fn /*sink*/, void* /*sink_ctx*/,
                              helm_error* err) {
  return refuse(err, "the bench host has no key-value store");
}

helm_status BenchHost::kv_put(void* /*host_ctx*/, const char* /*organization_id*/,
                              size_t /*organization_id_len*/, const char* /*key*/,
                              size_t /*key_len*/, const uint8_t* /*value*/, size_t /*value_len*/,
                              helm_error* err) {
  return refuse(err, "the bench host has no key-value store");
}

helm_status BenchHost::timer_schedule(void* /*host_ctx*/, uint64_t /*delay_ms*/,
                                      helm_timer_fn /*fn*/, void* /*user*/,
                                      uint64_t* /*out_timer_id*/, helm_error* err) {
  return refuse(err, "the bench host runs no timers");
}

void BenchHost::timer_cancel(void* /*host_ctx*/, uint64_t /*timer_id*/) {}

helm_status BenchHost::session_info(void* /*host_ctx*/, const helm_session* /*session*/,
                                    helm_bytes_sink_fn /*sink*/, void* /*sink_ctx*/,
                                    helm_error* err) {
  return refuse(err, "the bench host has no session details");
}

}  // namespace helm::plugins::bench
