/// @brief A helm_host_api for transport tests: a device token table answered on its own worker
/// thread (as the hub does), a record of every device_event, the transport settings (a
/// certificate made by the test), and log lines. Follows the rules of plugin_abi.h.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <helm/plugin_abi.h>

namespace helm::transport::testing {

struct RecordedEvent {
  helm_device_event_kind kind;
  std::uint64_t connection_id;
  std::string device_id;
  std::string frame;
};

class FakeTransportHost {
 public:
  /// settings_json: what transport_settings() returns.
  explicit FakeTransportHost(std::string settings_json);
  FakeTransportHost(const FakeTransportHost&) = delete;
  FakeTransportHost& operator=(const FakeTransportHost&) = delete;
  /// Answers the pending token checks and joins the worker.
  ~FakeTransportHost();

  const helm_host_api& api() const noexcept { return api_; }

  /// token -> device_id; heartbeat_s goes into every answer. The token "unavailable" is
  /// answered with HELM_STATUS_UNAVAILABLE, every unknown one with UNAUTHORIZED.
  void add_device(const std::string& token, const std::string& device_id);
  void set_heartbeat_s(int seconds);

  std::vector<RecordedEvent> events() const;
  std::vector<RecordedEvent> events_of(const std::string& device_id) const;
  std::string listening_url() const;
  std::vector<std::string> logs() const;
  std::size_t auth_calls() const;

  /// Waits until `predicate` holds for the events recorded so far (called with the host's lock
  /// held: it must not call back into the host); false on timeout.
  bool wait_for_events(const std::function<bool(const std::vector<RecordedEvent>&)>& predicate,
                       std::chrono::milliseconds timeout);

 private:
  static void log(void* ctx, helm_log_level level, const char* message, size_t length);
  static helm_status device_authenticate(void* ctx, const char* token, size_t token_len,
                                         helm_device_auth_complete_fn complete, void* user,
                                         helm_error* err);
  static void device_event(void* ctx, helm_device_event_kind kind, uint64_t connection_id,
                           const char* device_id, size_t device_id_len, const char* frame_json,
                           size_t frame_len);
  static void transport_listening(void* ctx, const char* url, size_t url_len);
  static helm_status transport_settings(void* ctx, helm_bytes_sink_fn sink, void* sink_ctx,
                                        helm_error* err);
  void work();

  helm_host_api api_{};
  std::string settings_;
  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::map<std::string, std::string> devices_;
  int heartbeat_s_ = 30;
  std::vector<RecordedEvent> events_;
  std::vector<std::string> logs_;
  std::string url_;
  std::size_t auth_calls_ = 0;
  std::deque<std::function<void()>> jobs_;
  bool quit_ = false;
  std::thread worker_;
};

}  // namespace helm::transport::testing
