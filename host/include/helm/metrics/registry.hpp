/// @brief Prometheus metrics of the hub: request counters and latency histograms by route and
/// status, plus gauges that other parts register (pool stats, build info).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace helm::metrics {

class Registry {
 public:
  /// Appends Prometheus text lines (with their # HELP / # TYPE) to `out` at scrape time.
  using Collector = std::function<void(std::string& out)>;

  void observe_request(const std::string& route, const std::string& method, int status,
                       double seconds);
  void add_collector(Collector collector);
  std::string render() const;

  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

 private:
  struct Histogram {
    std::array<uint64_t, kLatencyBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::vector<Collector> collectors_;
};

/// Escapes a label value for the text exposition format.
std::string escape_label(const std::string& value);

}  // namespace helm::metrics
