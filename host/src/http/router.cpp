#include "helm/http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace helm::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const size_t j = path.find('/', i);
    parts.push_back(path.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) break;
    i = j;
  }
  return parts;
}

}  // namespace

void Router::add(std::string method, std::string pattern, Handler handler) {
  for (const auto& r : routes_) {
    if (r.method == method && r.pattern == pattern) {
      throw std::logic_error("route registered twice: " + method + " " + pattern);
    }
  }
  Route route{std::move(method), pattern, {}, std::move(handler)};
  for (auto part : split_path(pattern)) {
    Segment seg;
    if (part.size() > 2 && part.front() == '{' && part.back() == '}') {
      seg.param = true;
      seg.text = std::string(part.substr(1, part.size() - 2));
      if (seg.text.size() > 3 && seg.text.ends_with("...")) {
        seg.rest = true;
        seg.text.resize(seg.text.size() - 3);
      }
    } else {
      seg.text = std::string(part);
    }
    route.segments.push_back(std::move(seg));
  }
  routes_.push_back(std::move(route));
}

void Router::set_body_limit(std::string_view method, std::string_view pattern, std::uint64_t bytes,
                            BodyGate gate) {
  for (auto& r : routes_) {
    if (r.method == method && r.pattern == pattern) {
      r.max_body = bytes;
      r.gate = std::move(gate);
      max_body_ = std::max(max_body_, bytes);
      return;
    }
  }
  throw std::logic_error("no route " + std::string(method) + " " + std::string(pattern));
}

Router::BodyRule Router::body_rule(std::string_view method, std::string_view path) const {
  const auto parts = split_path(path);
  for (const auto& route : routes_) {
    if (route.method != method || route.max_body == 0) continue;
    std::map<std::string, std::string> params;
    if (match_route(route, parts, params)) {
      return BodyRule{route.max_body, route.gate};
    }
  }
  return {};
}

bool Router::match_route(const Route& route, const std::vector<std::string_view>& parts,
                         std::map<std::string, std::string>& params) {
  size_t i = 0;
  for (const auto& seg : route.segments) {
    if (seg.rest) {
      if (i >= parts.size()) return false;
      std::string rest;
      for (size_t k = i; k < parts.size(); ++k) {
        if (k > i) rest.push_back('/');
        rest.append(parts[k]);
      }
      params[seg.text] = std::move(rest);
      return true;
    }
    if (i >= parts.size()) return false;
    if (seg.param) {
      params[seg.text] = std::string(parts[i]);
    } else if (seg.text != parts[i]) {
      return false;
    }
    ++i;
  }
  return i == parts.size();
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match result;
  const Route* head_fallback = nullptr;
  std::map<std::string, std::string> fallback_params;
  const auto parts = split_path(path);
  for (const auto& route : routes_) {
    std::map<std::string, std::string> params;
    if (!match_route(route, parts, params)) continue;
    if (route.method == method) {
      result.handler = &route.handler;
      result.pattern = route.pattern;
      result.params = std::move(params);
      result.allowed_methods.clear();
      return result;
    }
    if (method == "HEAD" && route.method == "GET" && head_fallback == nullptr) {
      head_fallback = &route;
      fallback_params = params;
    }
    if (std::find(result.allowed_methods.begin(), result.allowed_methods.end(), route.method) ==
        result.allowed_methods.end()) {
      result.allowed_methods.push_back(route.method);
    }
  }
  if (head_fallback != nullptr) {
    result.handler = &head_fallback->handler;
    result.pattern = head_fallback->pattern;
    result.params = std::move(fallback_params);
    result.allowed_methods.clear();
  }
  return result;
}

std::vector<RouteInfo> Router::routes() const {
  std::vector<RouteInfo> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_)
    out.push_back({r.method, r.pattern});
  return out;
}

}  // namespace helm::http
