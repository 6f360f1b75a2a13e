/// @brief Maps method + path pattern to handlers; features register routes without touching the
/// listener. Patterns use `{name}` for one segment and `{name...}` for the rest of the path.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "helm/http/message.hpp"

namespace helm::http {

struct RouteInfo {
  std::string method;
  std::string pattern;
};

class Router {
 public:
  /// Registers a route. A duplicate method + pattern is a programming error and throws.
  void add(std::string method, std::string pattern, Handler handler);
  /// Lets one registered route take a larger request body than the server-wide limit
  /// (api.max_body_bytes), e.g. a plugin bundle upload. `gate`, when given, is asked (with the
  /// request's head, before any of a body larger than the server-wide limit is read) whether
  /// the caller may send that much: so that no one unauthenticated makes the hub hold a large
  /// body in memory. Throws for an unknown route.
  void set_body_limit(std::string_view method, std::string_view pattern, std::uint64_t bytes,
                      BodyGate gate = {});

  /// What the route `method` + `path` would reach allows for its body.
  struct BodyRule {
    std::uint64_t limit = 0;  ///< 0: the server's default
    BodyGate gate;            ///< empty: none
  };
  BodyRule body_rule(std::string_view method, std::string_view path) const;
  /// The largest body limit set on any route (0: none).
  std::uint64_t max_body_limit() const { return max_body_; }

  struct Match {
    const Handler* handler = nullptr;  ///< null: no route for this method
    std::string pattern;
    std::map<std::string, std::string> params;
    std::vector<std::string> allowed_methods;  ///< non-empty when the path exists under others
  };
  Match match(std::string_view method, std::string_view path) const;

  std::vector<RouteInfo> routes() const;

 private:
  struct Segment {
    std::string text;
    bool param = false;
    bool rest = false;
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
    Handler handler;
    std::uint64_t max_body = 0;
    BodyGate gate;
  };
  static bool match_route(const Route& route, const std::vector<std::string_view>& parts,
                          std::map<std::string, std::string>& params);
  std::vector<Route> routes_;
  std::uint64_t max_body_ = 0;
};

}  // namespace helm::http
