/// @brief Session lifecycle events for plugins: `session.started` and `session.ended` (with the
/// reason: logout, idle_timeout, absolute_timeout, revoked, account_disabled, account_deleted) on
/// the event bus, published by "hub" with the session's organization.
///
/// The sessions table is the source of truth. A sweeper thread, every `interval`:
///   1. ends sessions past their idle or absolute deadline (so an idle session ends on time, not
///      only when its token is next presented — and, at start, those that ran out while the hub
///      was down);
///   2. announces every session not yet announced as started, then every ended one not yet
///      announced as ended, into the durable outbox `session_events` (one transaction: each
///      start and end is announced exactly once, a start always before its end);
///   3. publishes undelivered outbox rows in order and marks them delivered.
/// A crash between publishing and marking delivers again after restart: at least once, so
/// subscribers must be idempotent.
///
/// Payload: {"session_id", "organization_id", "technician_id", "principal_kind": "technician",
/// "reason" (ended only), "occurred_at" (RFC 3339), "event_seq"}.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace helm::storage {
class DbPool;
}
namespace helm::broker {
class EventBus;
}

namespace helm::auth {

struct SessionEventsOptions {
  std::chrono::milliseconds interval{250};
  /// The identity idle timeout: a session unused this long is ended by the sweep.
  std::chrono::seconds idle_timeout{1800};
  /// Delivered outbox rows older than this are deleted.
  std::chrono::hours keep_delivered{24 * 7};
};

class SessionEvents {
 public:
  SessionEvents(storage::DbPool& pool, broker::EventBus& bus, SessionEventsOptions options);
  ~SessionEvents();  ///< stop()
  SessionEvents(const SessionEvents&) = delete;
  SessionEvents& operator=(const SessionEvents&) = delete;

  /// Runs one sweep now (at start, before serving), then starts the sweeper thread.
  void start();
  /// Stops the sweeper thread; idempotent.
  void stop();
  /// One sweep: end expired sessions, announce, publish. Returns the events published, or -1
  /// when the database could not be reached (retried next time). Thread-safe.
  int sweep_once();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace helm::auth
