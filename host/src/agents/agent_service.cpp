#include "helm/agents/agent_service.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <stdexcept>
#include <utility>

#include "helm/api/api.hpp"
#include "helm/log/logger.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/storage/prepared.hpp"

namespace helm::agents {
namespace {

using storage::exec_prepared;

using nlohmann::json;

constexpr const char* kTokenKeyName = "device_token_key";

// '{"a","b"}': a PostgreSQL array literal of ids already checked to be UUIDs.
std::string uuid_array(const std::vector<std::string>& ids) {
  std::string out = "{";
  for (const auto& id : ids) {
    if (out.size() > 1) out += ',';
    out += id;
  }
  return out + "}";
}

bool well_formed_token(std::string_view token) {
  if (!token.starts_with(kDeviceTokenPrefix)) return false;
  const auto body = token.substr(kDeviceTokenPrefix.size());
  if (body.size() < 43 || body.size() > 200) return false;
  return std::all_of(body.begin(), body.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::string string_or(const json& object, const char* key, size_t max_len) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  auto value = it->get<std::string>();
  if (value.size() > max_len) value.resize(max_len);
  return value;
}

// A PostgreSQL array literal of arbitrary text (each element quoted, `"` and `\` escaped).
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// A string the database takes whatever the agent sent: no NUL (PostgreSQL text cannot hold
// one) and at most `max_len` bytes, cut at a character boundary (the JSON parser already
// refused invalid UTF-8). One agent's odd hello must not fail the batch it shares with others.
std::string clean_text(const json& object, const char* key, size_t max_len) {
  std::string value = string_or(object, key, std::string::npos);
  value.erase(std::remove(value.begin(), value.end(), '\0'), value.end());
  if (value.size() > max_len) {
    size_t length = max_len;
    while (length > 0 && (static_cast<unsigned char>(value[length]) & 0xC0U) == 0x80U)
      --length;
    value.resize(length);
  }
  return value;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 0x0f];
  }
  return out;
}

void log_db_error(const char* what, const std::optional<storage::DbError>& err) {
  if (err) log::warn(what, {{"error", err->message}});
}

}  // namespace

std::string new_uuid_v7() {
  unsigned char b[16];
  randombytes_buf(b, sizeof b);
  const auto ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  for (int i = 0; i < 6; ++i)
    b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>(0x70 | (b[6] & 0x0f));
  b[8] = static_cast<unsigned char>(0x80 | (b[8] & 0x3f));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0x0f];
  }
  return out;
}

AgentService::AgentService(storage::DbPool& pool, AgentServiceOptions options)
    : pool_(pool), options_(std::move(options)) {}

AgentService::~AgentService() {
  stop();
}

// Device tokens and enrollment keys are hashed with BLAKE2b keyed by a per-hub random key kept in
// hub_meta. Why keyed: a copy of the devices table alone (a leaked backup or replica) gives no
// way to test candidate tokens against it. Why in hub_meta and not derived from the vault master
// key: every node of a scaled-out hub needs the same key, and a master-key rotation (which
// re-wraps data keys only) must not invalidate every enrolled device. Tokens are 256 random bits,
// so the key is defence in depth, not what makes guessing infeasible.
Status AgentService::start() {
  if (sodium_init() < 0) return Error{"libsodium failed to initialize"};
  unsigned char fresh[32];
  randombytes_buf(fresh, sizeof fresh);
  char fresh_hex[65];
  sodium_bin2hex(fresh_hex, sizeof fresh_hex, fresh, sizeof fresh);
  sodium_memzero(fresh, sizeof fresh);
  std::string stored_hex;
  const auto err = pool_.run([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO hub_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                   kTokenKeyName, std::string(fresh_hex));
    stored_hex = tx.exec_params1("SELECT value FROM hub_meta WHERE key = $1", kTokenKeyName)[0]
                     .as<std::string>();
    tx.commit();
  });
  sodium_memzero(fresh_hex, sizeof fresh_hex);
  if (err) return Error{"cannot load the device token key: " + err->message};
  std::string key(32, '\0');
  size_t len = 0;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(key.data()), key.size(), stored_hex.data(),
                     stored_hex.size(), nullptr, &len, nullptr) != 0 ||
      len != key.size()) {
    return Error{"hub_meta 'device_token_key' is not 64 hex digits; the database was altered"};
  }
  token_key_ = std::move(key);
  stopped_ = false;
  {
    std::lock_guard lock(sweep_mutex_);
    sweep_stopping_ = false;
  }
  if (!sweeper_.joinable()) sweeper_ = std::thread([this] { sweep_loop(); });
  return {};
}

void AgentService::stop() {
  stopped_ = true;
  {
    std::lock_guard lock(sweep_mutex_);
    sweep_stopping_ = true;
  }
  sweep_wake_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  fire_due_waiters(true);  // REST clients waiting for a command get its state as it is now
  // Queued database work refers to this object: let it finish before the owner destroys it.
  std::unique_lock lock(inflight_mutex_);
  if (!inflight_idle_.wait_for(lock, std::chrono::seconds(15), [this] { return inflight_ == 0; })) {
    log::warn("agent service stopped with database work still queued",
              {{"jobs", static_cast<std::uint64_t>(inflight_)}});
  }
  link_ = nullptr;
}

void AgentService::submit(storage::DbPool::Job job, storage::DbPool::Done done) {
  {
    std::lock_guard lock(inflight_mutex_);
    ++inflight_;
  }
  pool_.submit(std::move(job), [this, done = std::move(done)](std::optional<storage::DbError> err) {
    done(std::move(err));
    // Notified under the lock: once stop() sees zero, nothing here touches `this`.
    std::lock_guard lock(inflight_mutex_);
    if (--inflight_ == 0) inflight_idle_.notify_all();
  });
}

void AgentService::set_link(plugins::TransportLink* link) {
  link_ = link;
}

std::string AgentService::secret_hash(std::string_view token) const {
  if (token_key_.size() != crypto_generichash_KEYBYTES) {
    throw std::logic_error("AgentService::secret_hash before start()");
  }
  std::string out(32, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                     reinterpret_cast<const unsigned char*>(token_key_.data()), token_key_.size());
  return out;
}

// ---- TransportHost ----

void AgentService::authenticate_device(std::string token, AuthDone done) {
  const bool stopping = stopped_ || token_key_.empty();
  const bool well_formed = !stopping && well_formed_token(token);
  const std::string hash = well_formed ? secret_hash(token) : std::string();
  sodium_memzero(token.data(), token.size());
  if (well_formed) {
    bool start = false;
    {
      std::lock_guard lock(batch_mutex_);
      auth_queue_.push_back({hash, std::move(done)});
      start = !std::exchange(auth_running_, true);
    }
    if (start) run_auth_batch();
    return;
  }
  // Nothing to look up, but the contract still says `done` runs later on another thread: a
  // pool thread answers (or a thread of its own when the pool refuses work).
  auto returned = std::make_shared<std::atomic<bool>>(false);
  const auto caller = std::this_thread::get_id();
  submit([](pqxx::connection_base&) {},
         [stopping, done = std::move(done), returned, caller](std::optional<storage::DbError>) {
           const helm_status status = stopping ? HELM_STATUS_UNAVAILABLE : HELM_STATUS_UNAUTHORIZED;
           std::string body = stopping ? "the hub is stopping; retry later"
                                       : "unknown or revoked device token; enroll the agent again";
           if (std::this_thread::get_id() == caller && !returned->load()) {
             std::thread([done, status, body] { done(status, body); }).detach();
             return;
           }
           done(status, body);
         });
  returned->store(true);
}

void AgentService::run_auth_batch() {
  auto batch = std::make_shared<std::vector<PendingAuth>>();
  {
    std::lock_guard lock(batch_mutex_);
    batch->swap(auth_queue_);
  }
  // device id and organization per token hash (hex), filled by the query.
  auto found = std::make_shared<std::map<std::string, std::pair<std::string, std::string>>>();
  auto returned = std::make_shared<std::atomic<bool>>(false);
  const auto caller = std::this_thread::get_id();
  submit(
      [batch, found](pqxx::connection_base& c) {
        // '{"\\x…","\\x…"}': a bytea[] literal (a backslash inside a quoted element is
        // escaped), so that `= ANY` is an index lookup per hash.
        std::string hashes = "{";
        for (const auto& item : *batch) {
          if (hashes.size() > 1) hashes += ',';
          hashes += "\"\\\\x" + to_hex(item.hash) + "\"";
        }
        hashes += '}';
        // One statement, no BEGIN/COMMIT around it: one round trip for the whole batch.
        pqxx::nontransaction tx(c);
        const auto rows =
            exec_prepared(tx, "agents_auth",
                          "SELECT encode(token_hash, 'hex'), id::text, org_id::text FROM devices"
                          " WHERE token_hash = ANY($1::bytea[])",
                          hashes);
        for (const auto& r : rows)
          (*found)[r[0].c_str()] = {r[1].c_str(), r[2].c_str()};
      },
      [this, batch, found, returned, caller](std::optional<storage::DbError> err) {
        const int heartbeat = options_.heartbeat_s;
        auto answer = [batch, found, heartbeat, failed = err.has_value()] {
          for (auto& item : *batch) {
            helm_status status = HELM_STATUS_OK;
            std::string body;
            const auto hit = failed ? found->end() : found->find(to_hex(item.hash));
            if (failed) {
              status = HELM_STATUS_UNAVAILABLE;
              body = "the hub cannot check device tokens right now; retry later";
            } else if (hit == found->end()) {
              status = HELM_STATUS_UNAUTHORIZED;
              body = "unknown or revoked device token; enroll the agent again";
            } else {
              body = json{{"device_id", hit->second.first},
                          {"organization_id", hit->second.second},
                          {"heartbeat_s", heartbeat}}
                         .dump();
            }
            item.done(status, body);
          }
        };
        if (std::this_thread::get_id() == caller && !returned->load()) {
          // The pool refused the work (stopping, queue full) and called back at once.
          std::thread(answer).detach();
        } else {
          answer();
        }
        bool again = false;
        {
          std::lock_guard lock(batch_mutex_);
          again = !auth_queue_.empty();
          if (!again) auth_running_ = false;
        }
        if (again) run_auth_batch();
      });
  returned->store(true);
}

void AgentService::device_connected(std::uint64_t connection_id, const std::string& device_id,
                                    const std::string& hello_json) {
  if (stopped_ || !api::is_uuid(device_id)) return;
  {
    std::lock_guard lock(state_mutex_);
    connections_[device_id] = connection_id;
  }
  const auto hello = json::parse(hello_json, nullptr, false);
  PendingHello pending{connection_id, device_id, {}, {}, {}};
  if (hello.is_object()) {
    pending.hostname = clean_text(hello, "hostname", 255);
    pending.os = clean_text(hello, "os", 100);
    pending.agent_version = clean_text(hello, "agent_version", 64);
  }
  bool start = false;
  {
    std::lock_guard lock(batch_mutex_);
    hello_queue_.push_back(std::move(pending));
    start = !std::exchange(hello_running_, true);
  }
  if (start) run_hello_batch();
}

void AgentService::run_hello_batch() {
  auto batch = std::make_shared<std::vector<PendingHello>>();
  {
    std::lock_guard lock(batch_mutex_);
    batch->swap(hello_queue_);
  }
  submit([this, batch](pqxx::connection_base& c) { connect_batch(c, *batch); },
         [this](std::optional<storage::DbError> err) {
           log_db_error("device connect not recorded", err);
           bool again = false;
           {
             std::lock_guard lock(batch_mutex_);
             again = !hello_queue_.empty();
             if (!again) hello_running_ = false;
           }
           if (again) run_hello_batch();
         });
}

void AgentService::connect_batch(pqxx::connection_base& conn,
                                 const std::vector<PendingHello>& batch) {
  std::vector<std::string> ids, hostnames, oses, versions;
  for (const auto& hello : batch) {
    ids.push_back(hello.device_id);
    hostnames.push_back(hello.hostname);
    oses.push_back(hello.os);
    versions.push_back(hello.agent_version);
  }
  // The hellos' facts, the expiry of these devices' overdue commands and the fetch of the rest
  // are one statement (atomic on its own, one round trip per batch; `= ANY($1)` keeps every
  // part an index lookup). The SELECT sees the rows
  // as they were before the CTEs ran, hence its own deadline test. A device twice in the batch
  // (a quick reconnect) is updated once, with one of its hellos.
  pqxx::result rows;
  {
    pqxx::nontransaction tx(conn);
    rows = exec_prepared(
        tx, "agents_hello",
        "WITH hello AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])"
        "   AS h(id, hostname, os, agent_version)),"
        " seen AS (UPDATE devices d SET last_seen = now(),"
        "   hostname = coalesce(nullif(h.hostname, ''), d.hostname),"
        "   os = coalesce(nullif(h.os, ''), d.os),"
        "   agent_version = coalesce(nullif(h.agent_version, ''), d.agent_version)"
        "   FROM hello h WHERE d.id = ANY($1::uuid[]) AND d.id = h.id),"
        " expired AS (UPDATE device_commands SET state = 'expired', finished_at = now()"
        "   WHERE device_id = ANY($1::uuid[]) AND state IN ('queued', 'sent')"
        "   AND deadline <= now())"
        " SELECT device_id::text, id::text, kind, args::text, to_char(deadline AT TIME ZONE"
        " 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM device_commands"
        " WHERE device_id = ANY($1::uuid[]) AND state IN ('queued', 'sent')"
        " AND deadline > now() ORDER BY device_id, seq",
        uuid_array(ids), text_array(hostnames), text_array(oses), text_array(versions));
  }
  if (rows.empty()) return;
  std::map<std::string, std::vector<OutboxCommand>, std::less<>> pending;
  for (const auto& r : rows) {
    pending[r[0].c_str()].push_back({r[1].c_str(), r[2].c_str(), r[3].c_str(), r[4].c_str()});
  }
  std::vector<std::string> sent;
  for (const auto& [device_id, commands] : pending) {
    // Only to the connection that said one of these hellos and is still the device's live one.
    bool current = false;
    {
      std::lock_guard lock(state_mutex_);
      const auto it = connections_.find(device_id);
      if (it != connections_.end()) {
        current = std::any_of(batch.begin(), batch.end(), [&](const PendingHello& hello) {
          return hello.device_id == device_id && hello.connection_id == it->second;
        });
      }
    }
    if (!current) continue;
    send_commands(device_id, commands, sent);
  }
  mark_sent(conn, sent);
}

size_t AgentService::deliver(pqxx::connection_base& conn, const std::string& device_id,
                             const std::vector<OutboxCommand>& commands) {
  if (commands.empty() || !is_online(device_id)) return 0;
  std::vector<std::string> sent;
  send_commands(device_id, commands, sent);
  mark_sent(conn, sent);
  return sent.size();
}

void AgentService::send_commands(const std::string& device_id,
                                 const std::vector<OutboxCommand>& commands,
                                 std::vector<std::string>& sent) {
  auto* transport = link();
  if (transport == nullptr) return;
  for (const auto& command : commands) {
    const auto status = transport->send_to_device(device_id, command_frame(command));
    if (status != HELM_STATUS_OK) break;  // no connection or a full queue: the rest waits too
    sent.push_back(command.id);
  }
}

void AgentService::mark_sent(pqxx::connection_base& conn, const std::vector<std::string>& sent) {
  if (sent.empty()) return;
  // Only forward: an ack that overtook this update has already moved the state past 'sent'.
  pqxx::nontransaction tx(conn);
  exec_prepared(
      tx, "agents_mark_sent",
      "UPDATE device_commands SET state = 'sent', sent_at = now(), send_count = send_count + 1"
      " WHERE id = ANY($1::uuid[]) AND state IN ('queued', 'sent')",
      uuid_array(sent));
}

std::string AgentService::command_frame(const OutboxCommand& command) {
  auto args = json::parse(command.args_json, nullptr, false);
  if (args.is_discarded()) args = json::object();
  return json{{"t", "cmd"},
              {"id", command.id},
              {"kind", command.kind},
              {"args", std::move(args)},
              {"deadline", command.deadline}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

void AgentService::device_frame(std::uint64_t /*connection_id*/, const std::string& device_id,
                                const std::string& frame_json) {
  if (stopped_ || !api::is_uuid(device_id)) return;
  auto frame = std::make_shared<json>(json::parse(frame_json, nullptr, false));
  if (!frame->is_object()) {
    log::debug("device frame is not a JSON object; ignored", {{"device_id", device_id}});
    return;
  }
  submit(
      [this, device_id, frame](pqxx::connection_base& c) { handle_frame(c, device_id, *frame); },
      [](std::optional<storage::DbError> err) { log_db_error("device frame not recorded", err); });
}

void AgentService::handle_frame(pqxx::connection_base& conn, const std::string& device_id,
                                const json& frame) {
  const std::string type = string_or(frame, "t", 32);
  // Each frame is one statement: one round trip, which is most of a command's way back to the
  // REST API. Frames do not touch the device's row (last_seen of a connected device is kept by
  // the hello, the periodic touch and the disconnect): a write there would wait behind the
  // periodic touch's row locks and cost a row version per frame.
  pqxx::nontransaction tx(conn);
  if (type == "ack" || type == "result") {
    const std::string id = string_or(frame, "id", 64);
    if (!api::is_uuid(id)) return;  // an ack for an unknown id is ignored (agent protocol §4)
    if (type == "ack") {
      exec_prepared(tx, "agents_ack",
                    "UPDATE device_commands SET state = 'acked', acked_at = now()"
                    " WHERE id = $1 AND device_id = $2 AND state IN ('queued', 'sent')",
                    id, device_id);
    } else {
      json result = {{"status", string_or(frame, "status", 16)},
                     {"exit_code", nullptr},
                     {"stdout", string_or(frame, "stdout", 1 << 20)},
                     {"stderr", string_or(frame, "stderr", 1 << 20)},
                     {"data", frame.value("data", json(nullptr))}};
      if (auto it = frame.find("exit_code"); it != frame.end() && it->is_number_integer()) {
        result["exit_code"] = *it;
      }
      // A result for an expired command is kept too: the agent did run it.
      exec_prepared(tx, "agents_result",
                    "UPDATE device_commands SET state = 'done', finished_at = now(),"
                    " result = $3::jsonb, acked_at = coalesce(acked_at, now())"
                    " WHERE id = $1 AND device_id = $2 AND state <> 'done'",
                    id, device_id, result.dump(-1, ' ', false, json::error_handler_t::replace));
      command_finished(id);
    }
  } else if (type == "event") {
    const auto data = frame.value("data", json(nullptr));
    if (string_or(frame, "kind", 64) == "inventory" && data.is_object()) {
      exec_prepared(tx, "agents_inventory",
                    "UPDATE devices SET facts = $2::jsonb, last_seen = now(),"
                    " hostname = coalesce(nullif($3, ''), hostname),"
                    " agent_version = coalesce(nullif($4, ''), agent_version) WHERE id = $1",
                    device_id, data.dump(-1, ' ', false, json::error_handler_t::replace),
                    string_or(data, "hostname", 255), string_or(data, "agent_version", 64));
    }
  }
}

void AgentService::device_disconnected(std::uint64_t connection_id, const std::string& device_id) {
  {
    std::lock_guard lock(state_mutex_);
    auto it = connections_.find(device_id);
    // A newer connection of the same device may have said hello before this one went away.
    if (it != connections_.end() && it->second == connection_id) connections_.erase(it);
  }
  if (stopped_ || !api::is_uuid(device_id)) return;
  submit(
      [device_id](pqxx::connection_base& c) {
        pqxx::nontransaction tx(c);
        exec_prepared(tx, "agents_seen", "UPDATE devices SET last_seen = now() WHERE id = $1",
                      device_id);
      },
      [](std::optional<storage::DbError> err) {
        log_db_error("device disconnect not recorded", err);
      });
}

void AgentService::transport_listening(const std::string& url) {
  log::info("agent transport listening", {{"url", url}});
  std::lock_guard lock(state_mutex_);
  transport_url_ = url;
}

std::string AgentService::transport_settings() {
  return json{{"tls_cert_file", options_.tls_cert_file},
              {"tls_key_file", options_.tls_key_file},
              {"heartbeat_s", options_.heartbeat_s},
              {"max_frame_bytes", options_.max_frame_bytes}}
      .dump();
}

// ---- for the routes ----

bool AgentService::is_online(const std::string& device_id) const {
  std::lock_guard lock(state_mutex_);
  return connections_.count(device_id) != 0;
}

std::optional<std::string> AgentService::transport_url_for(std::string_view request_host) const {
  std::string url;
  {
    std::lock_guard lock(state_mutex_);
    url = transport_url_;
  }
  if (url.empty()) return std::nullopt;
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const size_t host_begin = scheme_end + 3;
  size_t host_end = host_begin;
  if (host_begin < url.size() && url[host_begin] == '[') {
    host_end = url.find(']', host_begin);
    host_end = host_end == std::string::npos ? url.size() : host_end + 1;
  } else {
    host_end = url.find_first_of(":/", host_begin);
    if (host_end == std::string::npos) host_end = url.size();
  }
  const std::string host = url.substr(host_begin, host_end - host_begin);
  if (host != "0.0.0.0" && host != "[::]" && host != "[0:0:0:0:0:0:0:0]" && !host.empty()) {
    return url;
  }
  // The name the agent used to reach the hub, without its port.
  std::string name;
  if (request_host.starts_with('[')) {
    const auto close = request_host.find(']');
    if (close != std::string_view::npos) name = request_host.substr(0, close + 1);
  } else {
    const auto colon = request_host.find(':');
    name = request_host.substr(0, colon);
  }
  const bool sane =
      !name.empty() && name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
               c == ':' || c == '[' || c == ']';
      });
  if (!sane) name = "localhost";
  return url.substr(0, host_begin) + name + url.substr(host_end);
}

bool AgentService::admit_enrollment(const std::string& address, int& retry_after_s) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(state_mutex_);
  if (buckets_.size() > 10'000) {
    // Forget addresses whose buckets have refilled: they behave like new ones anyway.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      const double secs = std::chrono::duration<double>(now - it->second.at).count();
      it = it->second.tokens + secs * options_.enroll_per_s >= options_.enroll_burst
               ? buckets_.erase(it)
               : std::next(it);
    }
  }
  auto [it, fresh] = buckets_.try_emplace(address, Bucket{options_.enroll_burst, now});
  auto& bucket = it->second;
  if (!fresh) {
    const double secs = std::chrono::duration<double>(now - bucket.at).count();
    bucket.tokens = std::min(options_.enroll_burst, bucket.tokens + secs * options_.enroll_per_s);
    bucket.at = now;
  }
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return true;
  }
  retry_after_s =
      std::max(1, static_cast<int>(std::ceil((1.0 - bucket.tokens) / options_.enroll_per_s)));
  return false;
}

void AgentService::revoke_connection(const std::string& device_id, const std::string& reason) {
  {
    std::lock_guard lock(state_mutex_);
    connections_.erase(device_id);
  }
  if (auto* transport = link()) transport->close_device(device_id, kCloseRevoked, reason);
}

// ---- periodic work ----

void AgentService::sweep_loop() {
  auto next_touch = std::chrono::steady_clock::now() + options_.last_seen_interval;
  std::unique_lock lock(sweep_mutex_);
  while (!sweep_stopping_) {
    sweep_wake_.wait_for(lock, options_.sweep_interval, [this] { return sweep_stopping_; });
    if (sweep_stopping_) break;
    lock.unlock();
    expire_overdue();
    fire_due_waiters(false);
    if (std::chrono::steady_clock::now() >= next_touch) {
      next_touch = std::chrono::steady_clock::now() + options_.last_seen_interval;
      touch_connected();
    }
    lock.lock();
  }
}

void AgentService::expire_overdue() {
  // One sweep at a time: a slow database must not collect a backlog of identical updates.
  if (expiry_in_flight_.exchange(true)) return;
  auto expired = std::make_shared<std::vector<std::string>>();
  submit(
      [expired](pqxx::connection_base& c) {
        pqxx::nontransaction tx(c);
        const auto rows = exec_prepared(
            tx, "agents_expire",
            "UPDATE device_commands SET state = 'expired', finished_at = now()"
            " WHERE state IN ('queued', 'sent') AND deadline <= now() RETURNING id::text");
        for (const auto& r : rows)
          expired->push_back(r[0].c_str());
      },
      [this, expired](std::optional<storage::DbError> err) {
        expiry_in_flight_ = false;
        if (err && err->kind == storage::DbErrorKind::kQuery) {
          log::warn("command expiry sweep failed", {{"error", err->message}});
        }
        for (const auto& id : *expired)
          command_finished(id);  // REST clients waiting for it
      });
}

// Also finds connected devices whose row is gone (deleted with their client or site, which
// closes nothing by itself): their token no longer exists, so their connection must not either.
void AgentService::touch_connected() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(state_mutex_);
    for (const auto& [id, connection] : connections_)
      ids.push_back(id);
  }
  if (ids.empty()) return;
  auto gone = std::make_shared<std::vector<std::string>>();
  submit(
      [ids = std::move(ids), gone](pqxx::connection_base& c) {
        // In chunks, each its own statement: one statement over every connected device would
        // hold all their row locks (and a big WAL burst) at once, stalling the hellos and
        // inventory updates that arrive meanwhile.
        constexpr std::size_t kChunk = 500;
        std::set<std::string, std::less<>> present;
        for (std::size_t from = 0; from < ids.size(); from += kChunk) {
          const std::vector<std::string> chunk(
              ids.begin() + static_cast<std::ptrdiff_t>(from),
              ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), from + kChunk)));
          pqxx::nontransaction tx(c);
          const auto rows = exec_prepared(
              tx, "agents_touch",
              "UPDATE devices SET last_seen = now() WHERE id = ANY($1::uuid[]) RETURNING id::text",
              uuid_array(chunk));
          for (const auto& r : rows)
            present.insert(r[0].c_str());
        }
        for (const auto& id : ids)
          if (!present.count(id)) gone->push_back(id);
      },
      [this, gone](std::optional<storage::DbError> err) {
        if (err) {
          if (err->kind == storage::DbErrorKind::kQuery) {
            log::warn("last_seen of connected devices not updated", {{"error", err->message}});
          }
          return;
        }
        for (const auto& id : *gone)
          revoke_connection(id, "device deleted");
      });
}

// ---- REST clients waiting for a command ----

std::uint64_t AgentService::wait_for_command(const std::string& command_id,
                                             std::chrono::steady_clock::time_point deadline,
                                             std::function<void()> fire) {
  std::lock_guard lock(waiters_mutex_);
  if (stopped_ || waiters_.size() >= kMaxCommandWaiters) return 0;
  const std::uint64_t ticket = next_ticket_++;
  waiters_.emplace(command_id, CommandWaiter{ticket, deadline, std::move(fire)});
  return ticket;
}

void AgentService::cancel_wait(const std::string& command_id, std::uint64_t ticket) {
  std::lock_guard lock(waiters_mutex_);
  auto [first, last] = waiters_.equal_range(command_id);
  for (auto it = first; it != last; ++it) {
    if (it->second.ticket == ticket) {
      waiters_.erase(it);
      return;
    }
  }
}

std::size_t AgentService::command_waiters() const {
  std::lock_guard lock(waiters_mutex_);
  return waiters_.size();
}

void AgentService::command_finished(const std::string& command_id) {
  std::vector<std::function<void()>> due;
  {
    std::lock_guard lock(waiters_mutex_);
    auto [first, last] = waiters_.equal_range(command_id);
    for (auto it = first; it != last; ++it)
      due.push_back(std::move(it->second.fire));
    waiters_.erase(first, last);
  }
  for (auto& fire : due)
    fire();
}

void AgentService::fire_due_waiters(bool all) {
  std::vector<std::function<void()>> due;
  {
    std::lock_guard lock(waiters_mutex_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (all || it->second.deadline <= now) {
        due.push_back(std::move(it->second.fire));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& fire : due)
    fire();
}

}  // namespace helm::agents
