/// @brief A helm_host_api for tests: records log lines and events, keeps an in-memory key-value
/// store, releases secrets set by the test, runs timers on its own threads, and refuses
/// outbound HTTP. Every function follows the threading and ownership rules of plugin_abi.h.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <helm/plugin_abi.h>

namespace helm::plugins::testing {

class TestHost {
 public:
  TestHost();
  TestHost(const TestHost&) = delete;
  TestHost& operator=(const TestHost&) = delete;
  /// Joins the timer threads.
  ~TestHost();

  /// The api to pass to PluginInstance::create; host_ctx points at this object.
  const helm_host_api& api() const noexcept { return api_; }

  /// The one session this host knows; secrets are released only to calls that carry it.
  static const helm_session* session() noexcept;

  void set_secret(const std::string& name, const std::string& value);
  std::vector<std::string> logs() const;
  std::size_t open_leases() const;
  /// Waits until every timer callback has returned: the host must not let a plugin be
  /// destroyed while one of its callbacks still runs on a host thread.
  void join_timers();

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
  mutable std::mutex mutex_;  // guards everything below
  std::vector<std::string> logs_;
  std::map<std::string, std::string> secrets_;
  std::map<std::string, std::string> store_;
  std::size_t open_leases_ = 0;
  std::uint64_t next_timer_ = 1;
  std::vector<std::thread> timers_;
};

/// Fills a helm_error the way a host does.
void set_error(helm_error* err, helm_status status, const std::string& message);

}  // namespace helm::plugins::testing
