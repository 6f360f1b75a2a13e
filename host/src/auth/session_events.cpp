#include "helm/auth/session_events.hpp"

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "helm/broker/event_bus.hpp"
#include "helm/log/logger.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::auth {

using nlohmann::json;

struct SessionEvents::Impl {
  storage::DbPool& pool;
  broker::EventBus& bus;
  SessionEventsOptions options;
  std::mutex sweep_mutex;  // one sweep at a time
  std::mutex mutex;        // guards stopping
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
  std::uint64_t sweeps = 0;

  Impl(storage::DbPool& p, broker::EventBus& b, SessionEventsOptions o)
      : pool(p), bus(b), options(o) {}

  struct Pending {
    std::int64_t seq;
    std::string org_id;
    std::string topic;
    std::string payload;
  };

  int sweep() {
    const std::lock_guard lock(sweep_mutex);
    std::vector<Pending> pending;
    const bool prune = sweeps++ % 2400 == 0;
    const auto failed = pool.run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      // 1. Sessions past their deadlines end now (the auth check ends them too, lazily).
      tx.exec_params(
          "UPDATE sessions SET ended_at = now(), end_reason = CASE WHEN now() >= "
          "absolute_expires_at THEN 'absolute_timeout' ELSE 'idle_timeout' END "
          "WHERE ended_at IS NULL AND (now() >= absolute_expires_at OR "
          "last_used_at <= now() - make_interval(secs => $1))",
          static_cast<double>(options.idle_timeout.count()));
      // 2. Announce starts, then ends: a start always gets the smaller sequence number.
      tx.exec(
          "WITH s AS (UPDATE sessions SET started_announced = true WHERE NOT started_announced "
          "RETURNING id, org_id, technician_id, created_at) "
          "INSERT INTO session_events (session_id, org_id, technician_id, kind, occurred_at) "
          "SELECT id, org_id, technician_id, 'started', created_at FROM s ORDER BY created_at");
      tx.exec(
          "WITH s AS (UPDATE sessions SET ended_announced = true "
          "WHERE ended_at IS NOT NULL AND NOT ended_announced "
          "RETURNING id, org_id, technician_id, ended_at, end_reason) "
          "INSERT INTO session_events (session_id, org_id, technician_id, kind, reason, "
          "occurred_at) SELECT id, org_id, technician_id, 'ended', coalesce(end_reason, "
          "'revoked'), ended_at FROM s ORDER BY ended_at");
      if (prune) {
        tx.exec_params(
            "DELETE FROM session_events WHERE delivered_at < now() - make_interval(hours => $1)",
            static_cast<int>(options.keep_delivered.count()));
      }
      // 3. What is still to deliver, in order.
      for (const auto& row :
           tx.exec("SELECT seq, session_id, org_id, technician_id, kind, reason, "
                   "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                   "FROM session_events WHERE delivered_at IS NULL ORDER BY seq LIMIT 1000")) {
        json payload = {
            {"session_id", row[1].c_str()},    {"organization_id", row[2].c_str()},
            {"technician_id", row[3].c_str()}, {"principal_kind", "technician"},
            {"occurred_at", row[6].c_str()},   {"event_seq", row[0].as<std::int64_t>()}};
        const std::string kind = row[4].c_str();
        if (kind == "ended") payload["reason"] = row[5].is_null() ? "revoked" : row[5].c_str();
        pending.push_back(
            {row[0].as<std::int64_t>(), row[2].c_str(), "session." + kind, payload.dump()});
      }
      tx.commit();
    });
    if (failed) {
      log::warn("session events: the database is unavailable; retrying",
                {{"error", failed->message}});
      return -1;
    }
    if (pending.empty()) return 0;
    std::int64_t last = 0;
    for (const auto& event : pending) {
      std::string error;
      const helm_status status =
          bus.publish(broker::kHubSource, event.org_id, event.topic, event.payload, error);
      if (status != HELM_STATUS_OK) {
        log::error("session event not published", {{"topic", event.topic}, {"error", error}});
      }
      last = event.seq;
    }
    const auto marked = pool.run([&](pqxx::connection_base& conn) {
      pqxx::work tx(conn);
      tx.exec_params(
          "UPDATE session_events SET delivered_at = now() WHERE seq <= $1 AND delivered_at IS NULL",
          last);
      tx.commit();
    });
    if (marked) {
      // Published but not marked: they go out again next time (at least once).
      log::warn("session events published but not marked delivered", {{"error", marked->message}});
    }
    return static_cast<int>(pending.size());
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      wake.wait_for(lock, options.interval, [this] { return stopping; });
      if (stopping) break;
      lock.unlock();
      try {
        sweep();
      } catch (const std::exception& e) {
        log::error("session events sweep failed", {{"error", e.what()}});
      }
      lock.lock();
    }
  }
};

SessionEvents::SessionEvents(storage::DbPool& pool, broker::EventBus& bus,
                             SessionEventsOptions options)
    : impl_(std::make_unique<Impl>(pool, bus, options)) {}

SessionEvents::~SessionEvents() {
  stop();
}

void SessionEvents::start() {
  try {
    impl_->sweep();
  } catch (const std::exception& e) {
    log::error("session events sweep failed", {{"error", e.what()}});
  }
  impl_->thread = std::thread([this] { impl_->run(); });
}

void SessionEvents::stop() {
  {
    const std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int SessionEvents::sweep_once() {
  return impl_->sweep();
}

}  // namespace helm::auth
