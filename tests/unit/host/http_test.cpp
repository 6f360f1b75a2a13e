#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "helm/http/message.hpp"
#include "helm/http/problem.hpp"
#include "helm/http/router.hpp"
#include "helm/metrics/registry.hpp"
#include "helm/storage/migrations.hpp"

namespace helm::http {
namespace {

Handler tag(std::string* out, std::string value) {
  return [out, value](Request&, Responder) { *out = value; };
}

TEST(Router, MatchesLiteralAndParameterSegments) {
  Router router;
  std::string hit;
  router.add("GET", "/api/v1/orgs/{org}/clients", tag(&hit, "list"));
  router.add("POST", "/api/v1/orgs/{org}/clients", tag(&hit, "create"));
  router.add("GET", "/api/v1/orgs/{org}/clients/{client}", tag(&hit, "one"));
  auto m = router.match("GET", "/api/v1/orgs/acme/clients/c1");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.params.at("org"), "acme");
  EXPECT_EQ(m.params.at("client"), "c1");
  EXPECT_EQ(m.pattern, "/api/v1/orgs/{org}/clients/{client}");
  m = router.match("POST", "/api/v1/orgs/acme/clients");
  ASSERT_NE(m.handler, nullptr);
  Request req;
  (*m.handler)(req, [](Response) {});
  EXPECT_EQ(hit, "create");
}

TEST(Router, RestParameterTakesTheRemainingPath) {
  Router router;
  router.add("PUT", "/api/v1/orgs/{org}/secrets/{name...}", [](Request&, Responder) {});
  auto m = router.match("PUT", "/api/v1/orgs/acme/secrets/halopsa/client_secret");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.params.at("name"), "halopsa/client_secret");
  EXPECT_EQ(router.match("PUT", "/api/v1/orgs/acme/secrets").handler, nullptr);
}

TEST(Router, WrongMethodListsTheAllowedOnes) {
  Router router;
  router.add("GET", "/x", [](Request&, Responder) {});
  router.add("DELETE", "/x", [](Request&, Responder) {});
  auto m = router.match("POST", "/x");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_EQ(m.allowed_methods, (std::vector<std::string>{"GET", "DELETE"}));
  EXPECT_TRUE(router.match("POST", "/y").allowed_methods.empty());
}

TEST(Router, HeadFallsBackToGet) {
  Router router;
  router.add("GET", "/healthz", [](Request&, Responder) {});
  EXPECT_NE(router.match("HEAD", "/healthz").handler, nullptr);
}

TEST(Router, DuplicateRouteIsAProgrammingError) {
  Router router;
  router.add("GET", "/x", [](Request&, Responder) {});
  EXPECT_THROW(router.add("GET", "/x", [](Request&, Responder) {}), std::logic_error);
}

TEST(Router, ListsEveryRegisteredRoute) {
  Router router;
  router.add("GET", "/a", [](Request&, Responder) {});
  router.add("POST", "/b/{id}", [](Request&, Responder) {});
  const auto routes = router.routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[1].pattern, "/b/{id}");
}

TEST(PercentDecode, DecodesEscapesAndRejectsBrokenOnes) {
  EXPECT_EQ(percent_decode("halopsa%2Fclient_secret"), "halopsa/client_secret");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("abc%4"));
  EXPECT_FALSE(percent_decode("%"));
}

TEST(Request, QueryParametersAreDecoded) {
  Request r;
  r.query = "limit=50&cursor=a%3Db&flag";
  EXPECT_EQ(r.query_param("limit"), "50");
  EXPECT_EQ(r.query_param("cursor"), "a=b");
  EXPECT_EQ(r.query_param("flag"), "");
  EXPECT_FALSE(r.query_param("missing"));
}

TEST(Problem, HasTheRfc9457FieldsAndNamedFieldErrors) {
  const auto r = bad_request("Some fields are wrong.", {{"/name", "is required"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/problem+json");
  const auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["type"], "urn:helm:problem:validation-failed");
  EXPECT_EQ(body["status"], 400);
  EXPECT_EQ(body["title"], "Bad Request");
  EXPECT_EQ(body["detail"], "Some fields are wrong.");
  EXPECT_EQ(body["errors"][0]["field"], "/name");
}

TEST(Problem, DatabaseUnavailableAsksToRetry) {
  const auto r = database_unavailable();
  EXPECT_EQ(r.status, 503);
  ASSERT_FALSE(r.headers.empty());
  EXPECT_EQ(r.headers[0].first, "Retry-After");
}

TEST(Metrics, RendersCountersHistogramsAndCollectors) {
  metrics::Registry reg;
  reg.observe_request("/healthz", "GET", 200, 0.0004);
  reg.observe_request("/healthz", "GET", 200, 0.2);
  reg.add_collector([](std::string& out) { out += "helm_extra 7\n"; });
  const auto text = reg.render();
  EXPECT_NE(text.find(R"(helm_http_requests_total{route="/healthz",method="GET",status="200"} 2)"),
            std::string::npos);
  EXPECT_NE(
      text.find(R"(helm_http_request_duration_seconds_bucket{route="/healthz",le="0.0005"} 1)"),
      std::string::npos);
  EXPECT_NE(text.find(R"(helm_http_request_duration_seconds_bucket{route="/healthz",le="0.25"} 2)"),
            std::string::npos);
  EXPECT_NE(text.find("helm_extra 7"), std::string::npos);
}

TEST(Metrics, EscapesLabelValues) {
  EXPECT_EQ(metrics::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(BuiltinMigrations, AreNumberedFromOneWithoutGaps) {
  const auto& migrations = storage::builtin_migrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(migrations[i].sql.empty());
  }
}

}  // namespace
}  // namespace helm::http
