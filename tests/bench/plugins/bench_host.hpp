/// @brief A minimal helm_host_api for the plugin benchmarks: keeps log lines, and refuses
/// everything else (secrets, HTTP, key-value store, timers) with FORBIDDEN. example-echo's
/// "echo" needs none of it, so nothing host-side is measured beyond the call itself.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include <helm/plugin_abi.h>

namespace helm::plugins::bench {

class BenchHost {
 public:
  BenchHost();
  BenchHost(const BenchHost&) = delete;
  BenchHost& operator=(const BenchHost&) = delete;

  /// The api to pass to PluginInstance::create (or the plugin's create()); host_ctx is this.
  const helm_host_api& api() const noexcept { return api_; }
  /// A session pointer the calls carry (nothing checks it).
  static const helm_session* session() noexcept;
  std::vector<std::string> logs() const;

 private:
  static void log(void* host_ctx, helm_log_level level, const char* message, size_t length);
  static helm_status release_secret(void* host_ctx, const helm_session* session, const char* name,
                                    size_t name_len, helm_secret_lease** out_lease,
                                    helm_error* err);
  static const uint8_t* secret_data(const helm_secret_lease* lease);
  static size_t secret_size(const helm_secret_lease* lease);
  static void release_lease(helm_secret_lease* lease);
  static helm_status http_request(void* host_ctx, const helm_session* session,
                                  const helm_http_request* request, helm_http_complete_fn complete,
                                  void* user, helm_error* err);
  static helm_status publish_event(void* host_ctx, const char* organization_id,
                                   size_t organization_id_len, const char* topic, size_t topic_len,
                                   const char* payload_json, size_t payload_len, helm_error* err);
  static helm_status kv_get(void* host_ctx, const char* organization_id, size_t organization_id_len,
                            const char* key, size_t key_len, helm_bytes_sink_fn sink,
                            void* sink_ctx, helm_error* err);
  static helm_status kv_put(void* host_ctx, const char* organization_id, size_t organization_id_len,
                            const char* key, size_t key_len, const uint8_t* value, size_t value_len,
                            helm_error* err);
  static helm_status timer_schedule(void* host_ctx, uint64_t delay_ms, helm_timer_fn fn, void* user,
                                    uint64_t* out_timer_id, helm_error* err);
  static void timer_cancel(void* host_ctx, uint64_t timer_id);
  static helm_status session_info(void* host_ctx, const helm_session* session,
                                  helm_bytes_sink_fn sink, void* sink_ctx, helm_error* err);

  helm_host_api api_{};
  mutable std::mutex mutex_;  // guards logs_
  std::vector<std::string> logs_;
};

}  // namespace helm::plugins::bench
