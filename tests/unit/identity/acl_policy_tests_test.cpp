#include "helm/identity/acl_policy.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace helm::identity {
namespace {

// An organization in memory: what storage would answer.
class FakeTenancy final : public TenancyResolver {
 public:
  FakeTenancy(std::vector<Subject> technicians, std::vector<Resource> resources)
      : technicians_(std::move(technicians)), resources_(std::move(resources)) {}

  std::optional<Subject> find_technician(std::string_view email_or_id) const override {
    const auto same_email = [email_or_id](const std::string& email) {
      return std::equal(email.begin(), email.end(), email_or_id.begin(), email_or_id.end(),
                        [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                        });
    };
    for (const Subject& technician : technicians_) {
      if (technician.technician_id == email_or_id || same_email(technician.email)) {
        return technician;
      }
    }
    return std::nullopt;
  }

  std::optional<Resource> find_resource(Resource::Kind kind, std::string_view id) const override {
    for (const Resource& resource : resources_) {
      if (resource.kind == kind && resource.id == id) return resource;
    }
    return std::nullopt;
  }

 private:
  std::vector<Subject> technicians_;
  std::vector<Resource> resources_;
};

FakeTenancy organization() {
  return FakeTenancy(
      {
          {.technician_id = "tech-alice", .email = "alice@example.com"},
          {.technician_id = "tech-bob", .email = "bob@example.com"},
      },
      {
          {.kind = Resource::kClient, .id = "acme"},
          {.kind = Resource::kSite, .id = "acme-hq", .client_id = "acme"},
          {.kind = Resource::kDeviceGroup,
           .id = "acme-laptops",
           .client_id = "acme",
           .site_id = "acme-hq"},
          {.kind = Resource::kClient, .id = "globex"},
          {.kind = Resource::kSite, .id = "globex-nyc", .client_id = "globex"},
      });
}

// Alice reaches all of acme, Bob only globex's NYC site. `tests` is spliced in.
AclPolicy policy_with_tests(std::string_view tests) {
  const std::string document = R"({
    "groups":  { "tier1": ["alice@example.com"] },
    "targets": { "acme": { "clients": ["acme"] }, "nyc": { "sites": ["globex-nyc"] } },
    "rules":   [ { "technicians": ["group:tier1"], "targets": ["acme"] },
                 { "technicians": ["tech-bob"], "targets": ["nyc"] } ],
    "tests": )" + std::string(tests) +
                               "}";
  Expected<AclPolicy> policy = AclPolicy::parse(nlohmann::json::parse(document));
  if (!policy.ok()) ADD_FAILURE() << policy.error().message;
  return policy.ok() ? std::move(policy).value() : AclPolicy();
}

TEST(AclPolicyTestsTest, TestsThatHoldReportNoFailures) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "alice@example.com",
      "allow": ["client:acme", "site:acme-hq", "device_group:acme-laptops"],
      "deny": ["client:globex", "site:globex-nyc"] },
    { "technician": "tech-bob", "allow": ["site:globex-nyc"], "deny": ["client:globex"] },
    { "technician": "BOB@example.com", "deny": ["client:acme"] }
  ])");
  EXPECT_EQ(policy.run_tests(organization()), std::vector<PolicyTestFailure>{});
}

TEST(AclPolicyTestsTest, PolicyWithoutTestsPasses) {
  EXPECT_TRUE(policy_with_tests("[]").run_tests(organization()).empty());
  EXPECT_TRUE(AclPolicy().run_tests(organization()).empty());
}

TEST(AclPolicyTestsTest, AllowThatThePolicyDeniesIsNamed) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "bob@example.com", "deny": ["client:acme"] },
    { "technician": "bob@example.com", "deny": ["client:acme"] },
    { "technician": "alice@example.com", "allow": ["client:acme", "site:globex-nyc"] }
  ])");
  EXPECT_EQ(policy.run_tests(organization()),
            (std::vector<PolicyTestFailure>{
                {"/tests/2/allow/1",
                 "test 3: alice@example.com should reach site:globex-nyc but the policy denies "
                 "it"},
            }));
}

TEST(AclPolicyTestsTest, DenyThatThePolicyAllowsIsNamed) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "tech-alice", "deny": ["site:globex-nyc", "device_group:acme-laptops"] }
  ])");
  EXPECT_EQ(policy.run_tests(organization()),
            (std::vector<PolicyTestFailure>{
                {"/tests/0/deny/1",
                 "test 1: tech-alice should not reach device_group:acme-laptops but the policy "
                 "allows it"},
            }));
}

TEST(AclPolicyTestsTest, UnknownTechnicianIsAFailure) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "mallory@example.com", "deny": ["client:acme"] }
  ])");
  EXPECT_EQ(policy.run_tests(organization()),
            (std::vector<PolicyTestFailure>{
                {"/tests/0/technician",
                 "test 1: technician 'mallory@example.com' does not exist in this organization"},
            }));
}

TEST(AclPolicyTestsTest, UnknownResourceIsAFailure) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "alice@example.com", "allow": ["client:acme"], "deny": ["client:initech"] },
    { "technician": "alice@example.com", "allow": ["client:acme-hq"] }
  ])");
  EXPECT_EQ(policy.run_tests(organization()),
            (std::vector<PolicyTestFailure>{
                {"/tests/0/deny/0", "test 1: client:initech does not exist in this organization"},
                {"/tests/1/allow/0", "test 2: client:acme-hq does not exist in this organization"},
            }));
}

TEST(AclPolicyTestsTest, EveryFailingTestIsReported) {
  const AclPolicy policy = policy_with_tests(R"([
    { "technician": "alice@example.com", "allow": ["site:globex-nyc"], "deny": ["client:acme"] },
    { "technician": "nobody", "allow": ["client:acme"] },
    { "technician": "tech-bob", "allow": ["client:globex"] }
  ])");
  const std::vector<PolicyTestFailure> failures = policy.run_tests(organization());
  ASSERT_EQ(failures.size(), 4u);
  EXPECT_EQ(failures[0].pointer, "/tests/0/allow/0");
  EXPECT_EQ(failures[1].pointer, "/tests/0/deny/0");
  EXPECT_EQ(failures[2].pointer, "/tests/1/technician");
  EXPECT_EQ(failures[3].message,
            "test 3: tech-bob should reach client:globex but the policy denies it");
}

}  // namespace
}  // namespace helm::identity
