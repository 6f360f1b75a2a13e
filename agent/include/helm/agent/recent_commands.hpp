/// @brief Ids of recent commands and their results, persisted so no command runs twice, not even
/// across a restart.
#pragma once

#include "helm/agent/result.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace helm::agent {

class RecentCommandStore {
 public:
  static constexpr std::size_t kDefaultCapacity = 1024;
  /// Only the newest results keep their full payload; older entries keep id and status.
  static constexpr std::size_t kResultsKept = 64;

  enum class Seen { kNew, kRunning, kFinished, kForgottenResult };

  /// Loads `file` if it exists. Commands that were started but never finished (the agent
  /// stopped mid-command) become finished with status error "interrupted by agent restart".
  static Expected<RecentCommandStore> open(std::filesystem::path file,
                                           std::size_t capacity = kDefaultCapacity);

  RecentCommandStore(RecentCommandStore&& other) noexcept;

  /// Records `id` as started (persisted before the command may run) if it is new. For a known id
  /// says what state it is in; `stored_result` gets the result frame of a finished one.
  Seen begin(const std::string& id, nlohmann::json* stored_result);

  /// Stores the result frame of a started command and persists it.
  void finish(const std::string& id, const nlohmann::json& result_frame);

  /// Notes that the result frame reached a connection; undelivered results are sent again after
  /// a reconnect.
  void mark_delivered(const std::string& id);
  std::vector<nlohmann::json> undelivered_results() const;

  std::size_t size() const;
  /// Last persistence failure, empty if none (a full disk must not stop commands being acked).
  std::string last_error() const;

 private:
  struct Entry {
    std::string id;
    bool finished = false;
    bool delivered = false;
    nlohmann::json result;  // null when not finished or forgotten
  };
  RecentCommandStore(std::filesystem::path file, std::size_t capacity);
  void persist_locked();
  Entry* find_locked(const std::string& id);

  std::filesystem::path file_;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<Entry> entries_;  // oldest first
  std::string last_error_;
};

}  // namespace helm::agent
