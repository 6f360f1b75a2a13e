#include "helm/metrics/registry.hpp"

#include <cstdio>

namespace helm::metrics {

std::string escape_label(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void Registry::observe_request(const std::string& route, const std::string& method, int status,
                               double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, method, status}];
  auto& h = latency_[route];
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (seconds <= kLatencyBuckets[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum += seconds;
}

void Registry::add_collector(Collector collector) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::render() const {
  std::string out;
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mutex_);
    out += "# HELP helm_http_requests_total HTTP requests answered, by route, method and status.\n";
    out += "# TYPE helm_http_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
      const auto& [route, method, status] = key;
      out += "helm_http_requests_total{route=\"" + escape_label(route) + "\",method=\"" +
             escape_label(method) + "\",status=\"" + std::to_string(status) + "\"} " +
             std::to_string(count) + "\n";
    }
    out += "# HELP helm_http_request_duration_seconds Time from request read to response queued.\n";
    out += "# TYPE helm_http_request_duration_seconds histogram\n";
    char num[64];
    for (const auto& [route, h] : latency_) {
      const std::string label = "route=\"" + escape_label(route) + "\"";
      for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        std::snprintf(num, sizeof num, "%g", kLatencyBuckets[i]);
        out += "helm_http_request_duration_seconds_bucket{" + label + ",le=\"" + num + "\"} " +
               std::to_string(h.buckets[i]) + "\n";
      }
      out += "helm_http_request_duration_seconds_bucket{" + label + ",le=\"+Inf\"} " +
             std::to_string(h.count) + "\n";
      std::snprintf(num, sizeof num, "%.9g", h.sum);
      out += "helm_http_request_duration_seconds_sum{" + label + "} " + num + "\n";
      out += "helm_http_request_duration_seconds_count{" + label + "} " + std::to_string(h.count) +
             "\n";
    }
    collectors = collectors_;
  }
  for (const auto& c : collectors)
    c(out);
  return out;
}

}  // namespace helm::metrics
