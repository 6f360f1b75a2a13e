/// @brief Maps method + path pattern to handlers; features register routes without touching the
/// listener. Patterns use `{name}` for one segment and `{name...}` for the rest of the path.
#pragma once

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
  };
  static bool match_route(const Route& route, const std::vector<std::string_view>& parts,
                          std::map<std::string, std::string>& params);
  std::vector<Route> routes_;
};

}  // namespace helm::http
