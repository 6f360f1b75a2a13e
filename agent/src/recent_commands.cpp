#include "helm/agent/recent_commands.hpp"

#include <fstream>
#include <sstream>

#include "helm/agent/frames.hpp"
#include "helm/agent/log.hpp"
#include "helm/agent/state.hpp"

namespace helm::agent {

RecentCommandStore::RecentCommandStore(std::filesystem::path file, std::size_t capacity)
    : file_(std::move(file)), capacity_(capacity) {}

RecentCommandStore::RecentCommandStore(RecentCommandStore&& other) noexcept
    : capacity_(other.capacity_) {
  std::lock_guard lock(other.mutex_);
  file_ = std::move(other.file_);
  entries_ = std::move(other.entries_);
  last_error_ = std::move(other.last_error_);
}

Expected<RecentCommandStore> RecentCommandStore::open(std::filesystem::path file,
                                                      std::size_t capacity) {
  RecentCommandStore store(std::move(file), capacity);
  std::ifstream in(store.file_);
  if (!in) return store;  // first start
  std::ostringstream text;
  text << in.rdbuf();
  const auto doc = nlohmann::json::parse(text.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("commands") ||
      !doc["commands"].is_array()) {
    return Error{"command store " + store.file_.string() +
                 " is damaged; move it away to start with an empty one (commands the hub "
                 "resends may then run again)"};
  }
  bool interrupted = false;
  for (const auto& item : doc["commands"]) {
    if (!item.is_object() || !item.contains("id") || !item["id"].is_string()) continue;
    Entry entry;
    entry.id = item["id"].get<std::string>();
    entry.finished = item.value("finished", false);
    entry.delivered = item.value("delivered", false);
    if (item.contains("result")) entry.result = item["result"];
    if (!entry.finished) {
      entry.finished = true;
      entry.delivered = false;
      entry.result = make_result(entry.id, "error", -1, "", "interrupted by agent restart",
                                 nlohmann::json::object());
      interrupted = true;
      log::warn("command was interrupted by an agent restart; it will not run again",
                {{"command_id", entry.id}});
    }
    store.entries_.push_back(std::move(entry));
  }
  while (store.entries_.size() > store.capacity_)
    store.entries_.pop_front();
  if (interrupted) {
    std::lock_guard lock(store.mutex_);
    store.persist_locked();
    if (!store.last_error_.empty()) return Error{store.last_error_};
  }
  return store;
}

RecentCommandStore::Entry* RecentCommandStore::find_locked(const std::string& id) {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (it->id == id) return &*it;
  }
  return nullptr;
}

RecentCommandStore::Seen RecentCommandStore::begin(const std::string& id,
                                                   nlohmann::json* stored_result) {
  std::lock_guard lock(mutex_);
  if (Entry* entry = find_locked(id)) {
    if (!entry->finished) return Seen::kRunning;
    if (entry->result.is_null()) return Seen::kForgottenResult;
    if (stored_result) *stored_result = entry->result;
    return Seen::kFinished;
  }
  entries_.push_back(Entry{id, false, false, nullptr});
  while (entries_.size() > capacity_)
    entries_.pop_front();
  persist_locked();
  return Seen::kNew;
}

void RecentCommandStore::finish(const std::string& id, const nlohmann::json& result_frame) {
  std::lock_guard lock(mutex_);
  Entry* entry = find_locked(id);
  if (!entry) {
    entries_.push_back(Entry{id, false, false, nullptr});
    entry = &entries_.back();
  }
  entry->finished = true;
  entry->result = result_frame;
  // Keep the file small: only the newest results keep their payload.
  std::size_t kept = 0;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (!it->finished || it->result.is_null()) continue;
    if (++kept > kResultsKept && it->delivered) it->result = nullptr;
  }
  while (entries_.size() > capacity_)
    entries_.pop_front();
  persist_locked();
}

void RecentCommandStore::mark_delivered(const std::string& id) {
  std::lock_guard lock(mutex_);
  // Not persisted on its own (this runs on the I/O thread): after a restart a result may be
  // sent once more, which the hub ignores.
  if (Entry* entry = find_locked(id)) entry->delivered = true;
}

std::vector<nlohmann::json> RecentCommandStore::undelivered_results() const {
  std::lock_guard lock(mutex_);
  std::vector<nlohmann::json> out;
  for (const auto& entry : entries_) {
    if (entry.finished && !entry.delivered && !entry.result.is_null()) out.push_back(entry.result);
  }
  return out;
}

std::size_t RecentCommandStore::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::string RecentCommandStore::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

void RecentCommandStore::persist_locked() {
  nlohmann::json commands = nlohmann::json::array();
  for (const auto& entry : entries_) {
    nlohmann::json item = {
        {"id", entry.id}, {"finished", entry.finished}, {"delivered", entry.delivered}};
    if (!entry.result.is_null()) item["result"] = entry.result;
    commands.push_back(std::move(item));
  }
  const nlohmann::json doc = {{"version", 1}, {"commands", std::move(commands)}};
  if (auto saved = write_file_atomic(file_, log::dump(doc), 0600); !saved) {
    last_error_ = saved.error().message;
    log::error("cannot persist the recent command store", {{"error", last_error_}});
  } else {
    last_error_.clear();
  }
}

}  // namespace helm::agent
