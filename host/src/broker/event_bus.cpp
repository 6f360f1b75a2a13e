#include "helm/broker/event_bus.hpp"

#include <algorithm>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "helm/api/api.hpp"

namespace helm::broker {
namespace {

constexpr std::size_t kMaxTopicBytes = 128;
// Events one dispatched task hands to a subscriber before it re-dispatches itself, so a
// subscriber with a long queue shares the workers with the others.
constexpr int kBatchPerTask = 64;

bool is_segment_start(char c) {
  return c >= 'a' && c <= 'z';
}

bool is_segment_char(char c) {
  return is_segment_start(c) || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// ^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$ without a length limit.
bool is_dotted_name(std::string_view text) {
  bool at_segment_start = true;
  for (const char c : text) {
    if (at_segment_start) {
      if (!is_segment_start(c)) return false;
      at_segment_start = false;
    } else if (c == '.') {
      at_segment_start = true;
    } else if (!is_segment_char(c)) {
      return false;
    }
  }
  return !at_segment_start;  // also rejects "" and a trailing '.'
}

}  // namespace

namespace detail {

struct EventSubscriber {
  std::string id;
  std::vector<std::string> patterns;
  EventBus::Handler handler;
  std::deque<std::shared_ptr<const Event>> pending;
  bool active = true;      // false once unsubscribed: no handler call starts any more
  bool scheduled = false;  // a drain task has been dispatched and has not finished
  bool running = false;    // the handler is being called right now
  // unsubscribe() was called from inside the handler: drain() destroys the handler after it
  // returns. Otherwise unsubscribe() destroys it itself, so that it is gone when it returns.
  bool release_after_call = false;
  std::thread::id delivering_thread;
  SubscriberStats counters;
};

struct EventBusState {
  EventBus::Dispatch dispatch;
  EventBusOptions options;
  // Guards subscribers and every Subscriber's fields except handler, which is only called or
  // destroyed by whoever holds it exclusively (see drain() and unsubscribe()).
  std::mutex mutex;
  std::condition_variable handler_returned;
  std::unordered_map<std::string, std::shared_ptr<EventSubscriber>> subscribers;
};

}  // namespace detail

namespace {

using detail::EventSubscriber;
using StatePtr = std::shared_ptr<detail::EventBusState>;

void dispatch_drain(const StatePtr& state, const std::shared_ptr<EventSubscriber>& sub);

// Hands queued events to the subscriber's handler one at a time, without holding the lock
// during the call, until the queue is empty, the subscriber is gone or a batch is done.
void drain(const StatePtr& state, const std::shared_ptr<EventSubscriber>& sub) {
  std::unique_lock lock(state->mutex);
  for (int handed = 0;; ++handed) {
    if (!sub->active || sub->pending.empty()) {
      sub->scheduled = false;
      if (sub->release_after_call && sub->handler) {
        // Unsubscribed from inside its own handler: destroy the handler now that it returned.
        auto handler = std::move(sub->handler);
        sub->handler = nullptr;
        lock.unlock();
      }
      return;
    }
    if (handed == kBatchPerTask) {
      lock.unlock();
      dispatch_drain(state, sub);  // stays scheduled
      return;
    }
    const std::shared_ptr<const Event> event = std::move(sub->pending.front());
    sub->pending.pop_front();
    sub->running = true;
    sub->delivering_thread = std::this_thread::get_id();
    lock.unlock();
    bool threw = false;
    try {
      sub->handler(*event);
    } catch (...) {
      threw = true;  // nothing escapes onto a worker thread; counted instead
    }
    lock.lock();
    sub->running = false;
    sub->delivering_thread = {};
    ++sub->counters.delivered;
    if (threw) ++sub->counters.handler_exceptions;
    state->handler_returned.notify_all();
  }
}

void dispatch_drain(const StatePtr& state, const std::shared_ptr<EventSubscriber>& sub) {
  state->dispatch([state, sub] { drain(state, sub); });
}

}  // namespace

EventBus::EventBus(Dispatch dispatch, EventBusOptions options)
    : state_(std::make_shared<detail::EventBusState>()) {
  state_->dispatch = std::move(dispatch);
  state_->options = options;
}

EventBus::~EventBus() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [id, sub] : state_->subscribers)
      ids.push_back(id);
  }
  for (const auto& id : ids)
    unsubscribe(id);
}

helm_status EventBus::subscribe(const std::string& subscriber_id,
                                const std::vector<std::string>& patterns, Handler handler,
                                std::string& error) {
  if (subscriber_id.empty()) {
    error = "the subscriber id is empty";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (patterns.empty()) {
    error = "no topic patterns given: subscribe to at least one topic or \"prefix.*\"";
    return HELM_STATUS_INVALID_INPUT;
  }
  for (const auto& pattern : patterns) {
    if (!is_valid_pattern(pattern)) {
      error = "\"" + pattern +
              "\" is not a topic pattern: use lower-case dot-separated names such as "
              "\"device.online\", optionally ending in \".*\"";
      return HELM_STATUS_INVALID_INPUT;
    }
  }
  if (!handler) {
    error = "the event handler is empty";
    return HELM_STATUS_INVALID_INPUT;
  }
  auto sub = std::make_shared<EventSubscriber>();
  sub->id = subscriber_id;
  sub->patterns = patterns;
  sub->handler = std::move(handler);
  std::lock_guard lock(state_->mutex);
  if (!state_->subscribers.emplace(subscriber_id, std::move(sub)).second) {
    error = "\"" + subscriber_id + "\" is already subscribed: unsubscribe it first";
    return HELM_STATUS_CONFLICT;
  }
  return HELM_STATUS_OK;
}

void EventBus::unsubscribe(const std::string& subscriber_id) {
  std::unique_lock lock(state_->mutex);
  const auto it = state_->subscribers.find(subscriber_id);
  if (it == state_->subscribers.end()) return;
  const std::shared_ptr<EventSubscriber> sub = it->second;
  state_->subscribers.erase(it);
  sub->active = false;
  sub->pending.clear();
  if (sub->running && sub->delivering_thread == std::this_thread::get_id()) {
    sub->release_after_call = true;
    return;  // inside its own handler: drain() destroys the handler once this call returns
  }
  state_->handler_returned.wait(lock, [&sub] { return !sub->running; });
  auto handler = std::move(sub->handler);
  sub->handler = nullptr;
  lock.unlock();
  // `handler` is destroyed here, outside the lock, in case its captures do anything heavy.
}

helm_status EventBus::publish(std::string_view source, std::string_view organization_id,
                              std::string_view topic, std::string_view payload_json,
                              std::string& error) {
  if (source.empty()) {
    error = "the event source is empty: give the plugin name, or \"hub\"";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (!organization_id.empty() && !api::is_uuid(organization_id)) {
    error =
        "the organization id is not a UUID (lower-case, 36 characters); pass an empty id to "
        "publish hub-wide";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (!is_valid_topic(topic)) {
    error = "\"" + std::string(topic.substr(0, kMaxTopicBytes)) +
            "\" is not a topic: use at most 128 bytes of lower-case dot-separated names such as "
            "\"device.online\"";
    return HELM_STATUS_INVALID_INPUT;
  }
  if (payload_json.size() > state_->options.max_payload_bytes) {
    error = "the event payload has " + std::to_string(payload_json.size()) +
            " bytes, more than the limit of " + std::to_string(state_->options.max_payload_bytes) +
            ": publish a reference to the data instead";
    return HELM_STATUS_RESOURCE_EXHAUSTED;
  }
  if (!nlohmann::json::accept(payload_json)) {
    error = "the event payload is not a JSON document";
    return HELM_STATUS_INVALID_INPUT;
  }

  const std::size_t limit = source == kHubSource
                                ? std::max(state_->options.max_pending_hub_events,
                                           state_->options.max_pending_per_subscriber)
                                : state_->options.max_pending_per_subscriber;
  std::shared_ptr<const Event> event;
  std::vector<std::shared_ptr<EventSubscriber>> to_dispatch;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [id, sub] : state_->subscribers) {
      bool matched = false;
      for (const auto& pattern : sub->patterns) {
        if (pattern_matches(pattern, topic)) {
          matched = true;
          break;
        }
      }
      if (!matched) continue;
      if (sub->pending.size() >= limit) {
        ++sub->counters.dropped;
        continue;
      }
      if (!event) {
        event =
            std::make_shared<const Event>(Event{std::string(source), std::string(organization_id),
                                                std::string(topic), std::string(payload_json)});
      }
      sub->pending.push_back(event);
      if (!sub->scheduled) {
        sub->scheduled = true;
        to_dispatch.push_back(sub);
      }
    }
  }
  // Outside the lock: dispatch may run the task inline.
  for (const auto& sub : to_dispatch)
    dispatch_drain(state_, sub);
  return HELM_STATUS_OK;
}

std::optional<SubscriberStats> EventBus::stats(const std::string& subscriber_id) const {
  std::lock_guard lock(state_->mutex);
  const auto it = state_->subscribers.find(subscriber_id);
  if (it == state_->subscribers.end()) return std::nullopt;
  SubscriberStats stats = it->second->counters;
  stats.pending = it->second->pending.size();
  return stats;
}

bool EventBus::is_valid_topic(std::string_view topic) {
  return topic.size() <= kMaxTopicBytes && is_dotted_name(topic);
}

bool EventBus::is_valid_pattern(std::string_view pattern) {
  if (pattern.size() > kMaxTopicBytes) return false;
  if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*") {
    return is_dotted_name(pattern.substr(0, pattern.size() - 2));
  }
  return is_dotted_name(pattern);
}

bool EventBus::pattern_matches(std::string_view pattern, std::string_view topic) {
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == ".*") {
    const std::string_view prefix_with_dot = pattern.substr(0, pattern.size() - 1);  // "device."
    // Strictly below: "device." plus at least one more character.
    return topic.size() > prefix_with_dot.size() && topic.starts_with(prefix_with_dot);
  }
  return pattern == topic;
}

}  // namespace helm::broker
