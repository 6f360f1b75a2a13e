// The event bus: topic and pattern rules, who receives what, unsubscribe guarantees, bounded
// queues under a stuck subscriber, and exactly-once delivery under concurrent publishers.
#include "helm/broker/event_bus.hpp"

#include <gtest/gtest.h>

#include "test_workers.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace helm::broker {
namespace {

using namespace std::chrono_literals;

constexpr const char* kOrgX = "0b8f7c1e-1111-4a2b-9c3d-000000000001";
constexpr const char* kOrgY = "0b8f7c1e-2222-4a2b-9c3d-000000000002";

using test::Workers;

// Collects the events one subscriber received.
class Inbox {
 public:
  EventBus::Handler handler() {
    return [this](const Event& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  // Waits until `count` events arrived (or 10 s passed); returns what arrived.
  std::vector<Event> wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, 10s, [&] { return events_.size() >= count; });
    return events_;
  }
  std::vector<Event> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Event> events_;
};

// Blocks every call until released.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  bool wait_until_waiting(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  int waiting_ = 0;
};

std::function<void(std::function<void()>)> inline_dispatch() {
  return [](std::function<void()> task) { task(); };
}

helm_status publish(EventBus& bus, std::string_view topic, std::string_view org = "",
                    std::string_view payload = "{}", std::string_view source = "hub") {
  std::string error;
  return bus.publish(source, org, topic, payload, error);
}

TEST(EventBusTopics, ValidTopicsFollowTheManifestRule) {
  for (const char* topic : {"device", "device.online", "a.b-c.d_e", "x1.y2", "ticket.created"}) {
    EXPECT_TRUE(EventBus::is_valid_topic(topic)) << topic;
  }
  for (const char* topic : {"", ".", "device.", ".device", "Device.online", "1device", "device..x",
                            "device.*", "device online", "device.1x", "dévice"}) {
    EXPECT_FALSE(EventBus::is_valid_topic(topic)) << topic;
  }
  EXPECT_TRUE(EventBus::is_valid_topic(std::string(128, 'a')));
  EXPECT_FALSE(EventBus::is_valid_topic(std::string(129, 'a')));
}

TEST(EventBusTopics, PatternsAreTopicsOrTopicPrefixesEndingInDotStar) {
  for (const char* pattern : {"device", "device.online", "device.*", "a.b.*"}) {
    EXPECT_TRUE(EventBus::is_valid_pattern(pattern)) << pattern;
  }
  for (const char* pattern : {"", "*", ".*", "device.", "device*", "device.*.online", "*.online",
                              "device.**", "Device.*"}) {
    EXPECT_FALSE(EventBus::is_valid_pattern(pattern)) << pattern;
  }
  EXPECT_TRUE(EventBus::is_valid_pattern(std::string(126, 'a') + ".*"));
  EXPECT_FALSE(EventBus::is_valid_pattern(std::string(127, 'a') + ".*"));
}

TEST(EventBusTopics, PatternMatchingTable) {
  struct Row {
    const char* pattern;
    const char* topic;
    bool matches;
  };
  const Row table[] = {
      {"device.online", "device.online", true},
      {"device.online", "device.offline", false},
      {"device.online", "device.online.x", false},
      {"device.online", "device", false},
      {"device.*", "device.online", true},
      {"device.*", "device.a.b", true},
      {"device.*", "device", false},
      {"device.*", "devices.online", false},
      {"device.*", "devicex", false},
      {"device.*", "other.device.online", false},
      {"device.a.*", "device.a.b", true},
      {"device.a.*", "device.a", false},
      {"device.a.*", "device.ab.c", false},
      {"device", "device", true},
      {"device", "device.online", false},
  };
  for (const auto& row : table) {
    EXPECT_EQ(EventBus::pattern_matches(row.pattern, row.topic), row.matches)
        << row.pattern << " vs " << row.topic;
  }
}

TEST(EventBus, PublishRefusesMalformedInput) {
  EventBus bus(inline_dispatch());
  std::string error;
  EXPECT_EQ(bus.publish("hub", "", "Bad Topic", "{}", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(error.find("not a topic"), std::string::npos) << error;
  EXPECT_EQ(bus.publish("hub", "", "device.*", "{}", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.publish("hub", "", "device.online", "{not json", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(error.find("JSON"), std::string::npos) << error;
  EXPECT_EQ(bus.publish("hub", "", "device.online", "", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.publish("hub", "ACME", "device.online", "{}", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(error.find("organization"), std::string::npos) << error;
  EXPECT_EQ(bus.publish("", "", "device.online", "{}", error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.publish("hub", "", "device.online", "[1, \"two\", null]", error), HELM_STATUS_OK);
  EXPECT_EQ(bus.publish("hub", "", "device.online", "42", error), HELM_STATUS_OK);
}

TEST(EventBus, PublishRefusesAnOversizedPayload) {
  EventBus bus(inline_dispatch(), {.max_payload_bytes = 16});
  std::string error;
  EXPECT_EQ(bus.publish("hub", "", "a.b", "\"" + std::string(20, 'x') + "\"", error),
            HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
}

TEST(EventBus, SubscribeRefusesBadPatternsAndDuplicateIds) {
  EventBus bus(inline_dispatch());
  Inbox inbox;
  std::string error;
  EXPECT_EQ(bus.subscribe("p", {}, inbox.handler(), error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.subscribe("p", {"device.*", "bad pattern"}, inbox.handler(), error),
            HELM_STATUS_INVALID_INPUT);
  EXPECT_NE(error.find("bad pattern"), std::string::npos) << error;
  EXPECT_EQ(bus.subscribe("", {"a"}, inbox.handler(), error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.subscribe("p", {"a"}, nullptr, error), HELM_STATUS_INVALID_INPUT);
  EXPECT_EQ(bus.subscribe("p", {"a"}, inbox.handler(), error), HELM_STATUS_OK);
  EXPECT_EQ(bus.subscribe("p", {"b"}, inbox.handler(), error), HELM_STATUS_CONFLICT);
}

TEST(EventBus, DeliversOnlyToSubscribersWhosePatternsMatch) {
  Workers workers(4);
  EventBus bus(workers.dispatch());
  Inbox devices, online, tickets;
  std::string error;
  ASSERT_EQ(bus.subscribe("devices", {"device.*"}, devices.handler(), error), HELM_STATUS_OK);
  ASSERT_EQ(bus.subscribe("online", {"device.online"}, online.handler(), error), HELM_STATUS_OK);
  ASSERT_EQ(bus.subscribe("tickets", {"ticket.*", "device"}, tickets.handler(), error),
            HELM_STATUS_OK);

  EXPECT_EQ(publish(bus, "device.online", "", R"({"n":1})"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device.offline", "", R"({"n":2})"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device", "", R"({"n":3})"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "ticket.created", "", R"({"n":4})"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "nobody.listens", "", R"({"n":5})"), HELM_STATUS_OK);

  const auto d = devices.wait_for(2);
  const auto o = online.wait_for(1);
  const auto t = tickets.wait_for(2);
  std::this_thread::sleep_for(50ms);  // let any wrong extra delivery arrive
  ASSERT_EQ(devices.events().size(), 2u);
  EXPECT_EQ(d[0].payload_json, R"({"n":1})");
  EXPECT_EQ(d[1].payload_json, R"({"n":2})");
  ASSERT_EQ(online.events().size(), 1u);
  EXPECT_EQ(o[0].topic, "device.online");
  ASSERT_EQ(tickets.events().size(), 2u);
  EXPECT_EQ(t[0].topic, "device");
  EXPECT_EQ(t[1].topic, "ticket.created");
}

TEST(EventBus, EventCarriesItsSourceAndOrganization) {
  EventBus bus(inline_dispatch());
  Inbox inbox;
  std::string error;
  ASSERT_EQ(bus.subscribe("watcher", {"device.*"}, inbox.handler(), error), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device.online", kOrgX, R"({"id":"d1"})", "rmm-plugin"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device.online", kOrgY, R"({"id":"d2"})", "rmm-plugin"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device.online", "", R"({"id":"d3"})"), HELM_STATUS_OK);
  const auto events = inbox.wait_for(3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].organization_id, kOrgX);
  EXPECT_EQ(events[0].source, "rmm-plugin");
  EXPECT_EQ(events[0].payload_json, R"({"id":"d1"})");
  EXPECT_EQ(events[1].organization_id, kOrgY);
  EXPECT_EQ(events[2].organization_id, "");
  EXPECT_EQ(events[2].source, "hub");
}

TEST(EventBus, PublisherReceivesItsOwnEventsOnlyWhenSubscribed) {
  EventBus bus(inline_dispatch());
  Inbox publisher, other;
  std::string error;
  ASSERT_EQ(bus.subscribe("psa", {"ticket.*"}, publisher.handler(), error), HELM_STATUS_OK);
  ASSERT_EQ(bus.subscribe("other", {"device.*"}, other.handler(), error), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "device.online", "", "{}", "psa"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "ticket.created", "", "{}", "psa"), HELM_STATUS_OK);
  ASSERT_EQ(publisher.events().size(), 1u);
  EXPECT_EQ(publisher.events()[0].topic, "ticket.created");
  EXPECT_EQ(other.events().size(), 1u);
}

TEST(EventBus, NoHandlerRunsAfterUnsubscribeReturns) {
  Workers workers(4);
  EventBus bus(workers.dispatch());
  std::atomic<bool> unsubscribed{false};
  std::atomic<int> calls_after{0};
  std::atomic<int> calls{0};
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "p", {"a.*"},
                [&](const Event&) {
                  if (unsubscribed.load()) ++calls_after;
                  std::this_thread::sleep_for(1ms);
                  if (unsubscribed.load()) ++calls_after;
                  ++calls;
                },
                error),
            HELM_STATUS_OK);
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop.load())
      publish(bus, "a.b");
  });
  while (calls.load() < 5)
    std::this_thread::sleep_for(1ms);
  bus.unsubscribe("p");
  unsubscribed = true;
  std::this_thread::sleep_for(100ms);
  stop = true;
  publisher.join();
  EXPECT_EQ(calls_after.load(), 0);
  EXPECT_FALSE(bus.stats("p"));
}

TEST(EventBus, UnsubscribeWaitsForTheHandlerInFlight) {
  Workers workers(2);
  EventBus bus(workers.dispatch());
  Gate gate;
  std::atomic<bool> handler_done{false};
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "slow", {"a"},
                [&](const Event&) {
                  gate.wait();
                  handler_done = true;
                },
                error),
            HELM_STATUS_OK);
  ASSERT_EQ(publish(bus, "a"), HELM_STATUS_OK);
  ASSERT_TRUE(gate.wait_until_waiting(1));
  std::atomic<bool> returned{false};
  std::thread unsubscriber([&] {
    bus.unsubscribe("slow");
    returned = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(returned.load()) << "unsubscribe returned while the handler was still running";
  gate.open();
  unsubscriber.join();
  EXPECT_TRUE(handler_done.load());
}

TEST(EventBus, UnsubscribeFromInsideItsOwnHandlerDoesNotDeadlock) {
  Workers workers(2);
  EventBus bus(workers.dispatch());
  std::atomic<int> calls{0};
  std::atomic<bool> returned{false};
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "self", {"a"},
                [&](const Event&) {
                  ++calls;
                  bus.unsubscribe("self");
                  returned = true;
                },
                error),
            HELM_STATUS_OK);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(publish(bus, "a"), HELM_STATUS_OK);
  for (int i = 0; i < 1000 && !returned.load(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(returned.load());
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls.load(), 1) << "events queued before the unsubscribe were still delivered";
  EXPECT_FALSE(bus.stats("self"));
}

TEST(EventBus, UnsubscribeDestroysTheHandler) {
  EventBus bus(inline_dispatch());
  auto token = std::make_shared<int>(7);
  std::weak_ptr<int> watch = token;
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "p", {"a"}, [token](const Event&) {}, error),
            HELM_STATUS_OK);
  token.reset();
  EXPECT_FALSE(watch.expired());
  bus.unsubscribe("p");
  EXPECT_TRUE(watch.expired());
}

TEST(EventBus, StuckSubscriberDropsAndCountsWhileOthersStillReceive) {
  Workers workers(4);
  EventBus bus(workers.dispatch(), {.max_pending_per_subscriber = 10});
  auto publish = [](EventBus& b, std::string_view topic) {
    return ::helm::broker::publish(b, topic, "", "{}", "plugin-a");
  };
  Gate gate;
  Inbox healthy;
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "stuck", {"a.*"}, [&](const Event&) { gate.wait(); }, error),
            HELM_STATUS_OK);
  ASSERT_EQ(bus.subscribe("healthy", {"a.*"}, healthy.handler(), error), HELM_STATUS_OK);

  ASSERT_EQ(publish(bus, "a.b"), HELM_STATUS_OK);
  ASSERT_TRUE(gate.wait_until_waiting(1));  // the first event is stuck in the handler
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 1; i < 100; ++i) {
    ASSERT_EQ(publish(bus, "a.b"), HELM_STATUS_OK);
    // Paced by the healthy subscriber, so only the stuck one's queue can fill up.
    ASSERT_EQ(healthy.wait_for(i + 1).size(), i + 1);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "publish blocked";

  const auto stuck = bus.stats("stuck");
  ASSERT_TRUE(stuck);
  EXPECT_EQ(stuck->pending, 10u);
  EXPECT_EQ(stuck->dropped, 89u);  // 99 after the stuck one, 10 queued
  EXPECT_EQ(bus.stats("healthy")->dropped, 0u);

  gate.open();
  for (int i = 0; i < 1000 && bus.stats("stuck")->delivered < 11; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(bus.stats("stuck")->delivered, 11u);
  EXPECT_EQ(bus.stats("stuck")->dropped, 89u);
}

// The hub's own events (session starts and ends) have a far larger queue than plugins' events:
// a subscriber stuck behind a burst of logouts still gets every session.ended once it recovers,
// while plugin events beyond the usual limit are dropped as before.
TEST(EventBus, TheHubsOwnEventsWaitForASlowSubscriberWhereOthersAreDropped) {
  Workers workers(4);
  EventBus bus(workers.dispatch(),
               {.max_pending_per_subscriber = 10, .max_pending_hub_events = 50});
  Gate gate;
  std::atomic<int> hub_seen{0}, plugin_seen{0};
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "slow", {"session.*", "a.*"},
                [&](const Event& e) {
                  gate.wait();
                  ++(e.source == "hub" ? hub_seen : plugin_seen);
                },
                error),
            HELM_STATUS_OK);
  ASSERT_EQ(publish(bus, "session.ended"), HELM_STATUS_OK);
  ASSERT_TRUE(gate.wait_until_waiting(1));  // the first one is stuck in the handler
  for (int i = 0; i < 40; ++i)
    ASSERT_EQ(publish(bus, "session.ended"), HELM_STATUS_OK);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(publish(bus, "a.b", "", "{}", "plugin-a"), HELM_STATUS_OK);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(publish(bus, "session.ended"), HELM_STATUS_OK);
  const auto stats = bus.stats("slow");
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->pending, 50u);  // 40 hub events, then the hub's limit after 10 more
  EXPECT_EQ(stats->dropped, 15u);  // the 5 plugin events (over 10) and 10 hub events (over 50)
  gate.open();
  for (int i = 0; i < 1000 && hub_seen + plugin_seen < 51; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(hub_seen.load(), 51);
  EXPECT_EQ(plugin_seen.load(), 0);
}

TEST(EventBus, HandlerExceptionsAreCountedAndDeliveryContinues) {
  EventBus bus(inline_dispatch());
  int calls = 0;
  std::string error;
  ASSERT_EQ(bus.subscribe(
                "p", {"a"},
                [&](const Event&) {
                  ++calls;
                  throw std::runtime_error("plugin bug");
                },
                error),
            HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "a"), HELM_STATUS_OK);
  EXPECT_EQ(publish(bus, "a"), HELM_STATUS_OK);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(bus.stats("p")->handler_exceptions, 2u);
}

TEST(EventBus, ConcurrentPublishersDeliverEveryEventExactlyOncePerSubscriber) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2'000;
  Workers workers(4);
  // Large enough queues that nothing is dropped: this test is about exactly-once.
  EventBus bus(workers.dispatch(), {.max_pending_per_subscriber = kThreads * kPerThread});
  struct Counter {
    std::mutex mutex;
    std::map<std::string, int> seen;
    std::atomic<int> total{0};
    std::map<int, int> last_per_thread;  // per-subscriber order of one publisher is kept
    bool in_order = true;
  };
  std::vector<std::unique_ptr<Counter>> counters;
  std::string error;
  for (int s = 0; s < 3; ++s) {
    counters.push_back(std::make_unique<Counter>());
    Counter* c = counters.back().get();
    const std::vector<std::string> patterns =
        s == 0 ? std::vector<std::string>{"load.*"} : std::vector<std::string>{"load.test"};
    ASSERT_EQ(bus.subscribe(
                  "sub" + std::to_string(s), patterns,
                  [c](const Event& event) {
                    std::lock_guard lock(c->mutex);
                    ++c->seen[event.payload_json];
                    const auto comma = event.payload_json.find(',');
                    const int thread = std::stoi(event.payload_json.substr(1, comma - 1));
                    const int seq = std::stoi(event.payload_json.substr(comma + 1));
                    auto [it, first] = c->last_per_thread.emplace(thread, seq);
                    if (!first) {
                      if (seq <= it->second) c->in_order = false;
                      it->second = seq;
                    }
                    ++c->total;
                  },
                  error),
              HELM_STATUS_OK);
  }
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t) {
    publishers.emplace_back([&bus, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string payload = "[" + std::to_string(t) + "," + std::to_string(i) + "]";
        std::string err;
        EXPECT_EQ(bus.publish("hub", "", "load.test", payload, err), HELM_STATUS_OK);
      }
    });
  }
  for (auto& p : publishers)
    p.join();
  for (int i = 0; i < 2000; ++i) {
    bool all = true;
    for (const auto& c : counters)
      all = all && c->total.load() >= kThreads * kPerThread;
    if (all) break;
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(50ms);  // any duplicate would arrive now
  for (std::size_t s = 0; s < counters.size(); ++s) {
    auto& c = *counters[s];
    std::lock_guard lock(c.mutex);
    EXPECT_EQ(c.total.load(), kThreads * kPerThread) << "subscriber " << s;
    EXPECT_EQ(c.seen.size(), static_cast<std::size_t>(kThreads * kPerThread)) << "subscriber " << s;
    for (const auto& [payload, n] : c.seen) {
      if (n != 1) {
        ADD_FAILURE() << "subscriber " << s << " got " << payload << " " << n << " times";
        break;
      }
    }
    EXPECT_TRUE(c.in_order) << "subscriber " << s << " saw one publisher's events out of order";
    EXPECT_EQ(bus.stats("sub" + std::to_string(s))->dropped, 0u);
  }
}

}  // namespace
}  // namespace helm::broker
