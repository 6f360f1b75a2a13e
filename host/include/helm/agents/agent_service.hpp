/// @brief The hub side of endpoint agents: device tokens (keyed hashes), which devices are
/// connected to this node, the durable command outbox and its delivery, enrollment rate limits,
/// and the TransportHost the plugin manager calls on behalf of the transport plugin.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "helm/core/expected.hpp"
#include "helm/plugins/transport_host.hpp"
#include "helm/storage/db_pool.hpp"

namespace pqxx {
class connection_base;
}

namespace helm::agents {

/// Token prefixes: what a leaked string is, at a glance (and for secret scanners).
inline constexpr std::string_view kEnrollmentKeyPrefix = "hek_";
inline constexpr std::string_view kDeviceTokenPrefix = "hdt_";

/// Close code for a connection whose token was revoked or whose device was deleted.
inline constexpr std::uint16_t kCloseRevoked = 4001;

struct AgentServiceOptions {
  std::string tls_cert_file;  ///< the API listener's certificate, handed to the transport
  std::string tls_key_file;
  int heartbeat_s = 30;
  std::uint64_t max_frame_bytes = 1024 * 1024;
  /// Enrollment attempts per source address: a token bucket of `enroll_burst` refilled at
  /// `enroll_per_s`. Keys are 256-bit random, so this protects the database, not the keys.
  double enroll_per_s = 5.0;
  double enroll_burst = 30.0;
  std::chrono::milliseconds sweep_interval{1000};  ///< expiry of undelivered commands
  std::chrono::seconds last_seen_interval{30};     ///< last_seen of connected devices
};

/// A command row as the outbox delivers it.
struct OutboxCommand {
  std::string id;
  std::string kind;
  std::string args_json;
  std::string deadline;  ///< RFC 3339, UTC
};

class AgentService final : public plugins::TransportHost {
 public:
  AgentService(storage::DbPool& pool, AgentServiceOptions options);
  ~AgentService() override;  ///< stop()
  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  /// Loads (creating it on the very first start) the hub's device-token key and starts the
  /// periodic sweeps. Blocks on the database: call at hub start, not on an I/O thread.
  Status start();
  /// Stops the sweeps; later transport calls are refused or ignored. Idempotent. Call after the
  /// plugin manager stopped the transport and before the database pool stops.
  void stop();

  /// Where frames to devices go; null detaches. Set before the transport starts.
  void set_link(plugins::TransportLink* link);

  // ---- plugins::TransportHost ----
  void authenticate_device(std::string token, AuthDone done) override;
  void device_connected(std::uint64_t connection_id, const std::string& device_id,
                        const std::string& hello_json) override;
  void device_frame(std::uint64_t connection_id, const std::string& device_id,
                    const std::string& frame_json) override;
  void device_disconnected(std::uint64_t connection_id, const std::string& device_id) override;
  void transport_listening(const std::string& url) override;
  std::string transport_settings() override;

  // ---- for the REST routes ----
  /// Keyed BLAKE2b-256 of a device token or enrollment key: what the database stores.
  std::string secret_hash(std::string_view token) const;
  int heartbeat_s() const { return options_.heartbeat_s; }
  /// Whether the device has a live connection on this node.
  bool is_online(const std::string& device_id) const;
  /// The transport URL with an unspecific host replaced by `request_host` (the enroll request's
  /// Host header, port removed); nullopt while no transport listens.
  std::optional<std::string> transport_url_for(std::string_view request_host) const;
  /// Takes one enrollment attempt from `address`'s bucket; when it is empty returns false and
  /// sets `retry_after_s`.
  bool admit_enrollment(const std::string& address, int& retry_after_s);
  /// Sends committed outbox commands to the device if it is connected here and marks the ones
  /// that went out `sent`. Runs on a database pool thread (it writes the state).
  /// Returns how many went out.
  size_t deliver(pqxx::connection_base& conn, const std::string& device_id,
                 const std::vector<OutboxCommand>& commands);
  /// A REST client waiting for a command to finish (GET .../commands/{id}?wait_s=N): `fire` runs
  /// once, when a result for the command arrives, at `deadline`, or at stop(), whichever comes
  /// first. Returns a ticket for cancel_wait(), or 0 (nothing kept) when too many wait already or
  /// the service stopped: answer at once then.
  std::uint64_t wait_for_command(const std::string& command_id,
                                 std::chrono::steady_clock::time_point deadline,
                                 std::function<void()> fire);
  /// Forgets a waiter that was answered another way (its command was already finished).
  void cancel_wait(const std::string& command_id, std::uint64_t ticket);
  /// How many REST clients wait for a command now.
  std::size_t command_waiters() const;
  /// Fires the waiters of a command (its result was recorded). Any thread.
  void command_finished(const std::string& command_id);
  static constexpr std::size_t kMaxCommandWaiters = 10'000;

  /// Closes the device's live connection (4001) and forgets it: token replaced or device deleted.
  void revoke_connection(const std::string& device_id, const std::string& reason);

  /// The `cmd` frame of a command.
  static std::string command_frame(const OutboxCommand& command);

 private:
  /// pool_.submit, counted, so stop() can wait for queued work that refers to this object.
  void submit(storage::DbPool::Job job, storage::DbPool::Done done);
  void sweep_loop();
  void expire_overdue();
  void touch_connected();
  void handle_frame(pqxx::connection_base& conn, const std::string& device_id,
                    const nlohmann::json& frame);
  /// Token checks and hellos are batched: one statement answers every request that arrived
  /// while the previous batch was in the database (a reconnect storm costs a query per batch,
  /// not per agent; a lone agent waits for nothing). One batch of each kind runs at a time.
  struct PendingAuth {
    std::string hash;
    AuthDone done;
  };
  struct PendingHello {
    std::uint64_t connection_id = 0;
    std::string device_id;
    std::string hostname;
    std::string os;
    std::string agent_version;
  };
  void run_auth_batch();
  void run_hello_batch();
  void connect_batch(pqxx::connection_base& conn, const std::vector<PendingHello>& batch);
  /// Hands commands to the transport in order, stopping at the first it refuses; appends the
  /// ids that went out to `sent`.
  void send_commands(const std::string& device_id, const std::vector<OutboxCommand>& commands,
                     std::vector<std::string>& sent);
  /// Marks commands `sent` (one statement).
  static void mark_sent(pqxx::connection_base& conn, const std::vector<std::string>& sent);
  plugins::TransportLink* link() const { return link_.load(); }

  storage::DbPool& pool_;
  AgentServiceOptions options_;
  std::string token_key_;  ///< 32 bytes, set by start()
  std::atomic<plugins::TransportLink*> link_{nullptr};
  std::atomic<bool> stopped_{false};

  /// Guards connections_, transport_url_ and buckets_.
  mutable std::mutex state_mutex_;
  std::map<std::string, std::uint64_t, std::less<>> connections_;  ///< device id -> live conn
  std::string transport_url_;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Bucket, std::less<>> buckets_;

  std::mutex batch_mutex_;  ///< guards the two queues and flags below
  std::vector<PendingAuth> auth_queue_;
  bool auth_running_ = false;
  std::vector<PendingHello> hello_queue_;
  bool hello_running_ = false;

  struct CommandWaiter {
    std::uint64_t ticket = 0;
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> fire;
  };
  void fire_due_waiters(bool all);
  mutable std::mutex waiters_mutex_;
  std::uint64_t next_ticket_ = 1;                                   ///< guarded by waiters_mutex_
  std::multimap<std::string, CommandWaiter, std::less<>> waiters_;  ///< by command id

  std::mutex inflight_mutex_;
  std::condition_variable inflight_idle_;
  size_t inflight_ = 0;

  std::mutex sweep_mutex_;
  std::condition_variable sweep_wake_;
  bool sweep_stopping_ = false;
  std::atomic<bool> expiry_in_flight_{false};
  std::thread sweeper_;
};

/// A time-ordered UUID (version 7), so ids sort in creation order.
std::string new_uuid_v7();

}  // namespace helm::agents
