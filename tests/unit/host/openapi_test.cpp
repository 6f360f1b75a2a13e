// The route table: every served route is documented, every documented route is served, and
// every organization-scoped route goes through the scope check of api::add_route.
#include "helm/api/openapi.hpp"

#include <gtest/gtest.h>

#include "helm/auth/auth_service.hpp"
#include "helm/core/task_pool.hpp"
#include "helm/http/router.hpp"
#include "helm/hub/hub.hpp"
#include "helm/metrics/registry.hpp"
#include "helm/storage/db_pool.hpp"

namespace helm::api {
namespace {

struct HubRoutes {
  storage::DbPool pool{{.conninfo = "", .size = 0}};
  auth::AuthService auth{pool, {}};
  TaskPool cpu{0};
  Services services{pool, auth, cpu, {}};
  metrics::Registry registry;
  http::Router router;
  HubRoutes() {
    hub::add_health_routes(router, pool, registry, false);
    add_api_routes(router, services);
  }
};

HubRoutes& routes() {
  static HubRoutes r;
  return r;
}

TEST(OpenApi, EveryServedRouteIsDocumented) {
  EXPECT_EQ(undocumented_routes(routes().router), std::vector<std::string>{});
}

TEST(OpenApi, EveryDocumentedRouteIsServed) {
  EXPECT_EQ(documented_but_not_served(routes().router), std::vector<std::string>{});
}

TEST(OpenApi, DocumentIsOpenApi31WithEveryPathAndItsAccessLevel) {
  const auto doc = build_openapi(routes().router);
  EXPECT_EQ(doc["openapi"], "3.1.0");
  size_t operations = 0;
  for (const auto& [path, methods] : doc["paths"].items()) {
    for (const auto& [method, op] : methods.items()) {
      ++operations;
      EXPECT_TRUE(op.contains("x-helm-access")) << method << " " << path;
      EXPECT_FALSE(op["summary"].get<std::string>().empty()) << method << " " << path;
    }
  }
  EXPECT_EQ(operations, routes().router.routes().size());
}

TEST(RouteTable, EveryOrganizationScopedRouteGoesThroughTheScopeCheck) {
  const auto& access = registered_access();
  for (const auto& route : routes().router.routes()) {
    if (route.pattern.find("{org}") == std::string::npos) continue;
    const bool checked = std::any_of(access.begin(), access.end(), [&](const auto& entry) {
      return std::get<0>(entry) == route.method && std::get<1>(entry) == route.pattern &&
             std::get<2>(entry) != Access::kPublic;
    });
    EXPECT_TRUE(checked) << route.method << " " << route.pattern
                         << " is organization-scoped but not registered with api::add_route";
  }
}

}  // namespace
}  // namespace helm::api
