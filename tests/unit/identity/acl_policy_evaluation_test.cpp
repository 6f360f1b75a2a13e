#include "helm/identity/acl_policy.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace helm::identity {
namespace {

// Three clients: acme (granted whole to group tier1), globex (only its NYC site granted to bob),
// initech (only its "servers" device group granted to technician id tech-dave).
constexpr std::string_view kPolicy = R"({
  "groups": {
    "tier1": ["Alice@Example.com", "tech-carol"],
    "on-leave": []
  },
  "targets": {
    "acme":       { "clients": ["client-acme"] },
    "globex-nyc": { "sites": ["site-globex-nyc"] },
    "servers":    { "device_groups": ["group-initech-servers"] }
  },
  "rules": [
    { "technicians": ["group:tier1"], "targets": ["acme"] },
    { "technicians": ["bob@example.com"], "targets": ["globex-nyc"] },
    { "technicians": ["tech-dave"], "targets": ["servers"] },
    { "technicians": ["group:on-leave"], "targets": ["servers"] }
  ]
})";

Subject alice() {
  return {.technician_id = "tech-alice", .email = "alice@example.com"};
}
Subject bob() {
  return {.technician_id = "tech-bob", .email = "bob@example.com"};
}
Subject carol() {
  return {.technician_id = "tech-carol", .email = "carol@example.com"};
}
Subject dave() {
  return {.technician_id = "tech-dave", .email = "dave@example.com"};
}
Subject eve() {
  return {.technician_id = "tech-eve", .email = "eve@example.com"};
}

Resource acme() {
  return {.kind = Resource::kClient, .id = "client-acme"};
}
Resource acme_hq() {
  return {.kind = Resource::kSite, .id = "site-acme-hq", .client_id = "client-acme"};
}
Resource acme_hq_laptops() {
  return {.kind = Resource::kDeviceGroup,
          .id = "group-acme-laptops",
          .client_id = "client-acme",
          .site_id = "site-acme-hq"};
}
Resource acme_wide_group() {
  return {.kind = Resource::kDeviceGroup, .id = "group-acme-all", .client_id = "client-acme"};
}
Resource globex() {
  return {.kind = Resource::kClient, .id = "client-globex"};
}
Resource globex_nyc() {
  return {.kind = Resource::kSite, .id = "site-globex-nyc", .client_id = "client-globex"};
}
Resource globex_la() {
  return {.kind = Resource::kSite, .id = "site-globex-la", .client_id = "client-globex"};
}
Resource globex_nyc_desks() {
  return {.kind = Resource::kDeviceGroup,
          .id = "group-globex-nyc-desks",
          .client_id = "client-globex",
          .site_id = "site-globex-nyc"};
}
Resource globex_la_desks() {
  return {.kind = Resource::kDeviceGroup,
          .id = "group-globex-la-desks",
          .client_id = "client-globex",
          .site_id = "site-globex-la"};
}
Resource globex_wide_group() {
  return {.kind = Resource::kDeviceGroup, .id = "group-globex-all", .client_id = "client-globex"};
}
Resource initech() {
  return {.kind = Resource::kClient, .id = "client-initech"};
}
Resource initech_servers() {
  return {
      .kind = Resource::kDeviceGroup, .id = "group-initech-servers", .client_id = "client-initech"};
}
Resource initech_desktops() {
  return {.kind = Resource::kDeviceGroup,
          .id = "group-initech-desktops",
          .client_id = "client-initech"};
}

struct Decision {
  std::string_view why;
  Subject subject;
  Resource resource;
  bool allowed;
};

AclPolicy example_policy() {
  Expected<AclPolicy> policy = AclPolicy::parse(nlohmann::json::parse(kPolicy));
  if (!policy.ok()) ADD_FAILURE() << policy.error().message;
  return policy.ok() ? std::move(policy).value() : AclPolicy();
}

// Checks allows() and, since the REST layer filters lists with it, that reach() agrees.
void expect_decisions(const AclPolicy& policy, const std::vector<Decision>& decisions) {
  for (const Decision& decision : decisions) {
    SCOPED_TRACE(decision.why);
    EXPECT_EQ(policy.allows(decision.subject, decision.resource), decision.allowed);
    EXPECT_EQ(policy.reach(decision.subject).covers(decision.resource), decision.allowed);
  }
}

TEST(AclPolicyTest, ClientTargetCoversTheClientItsSitesAndItsGroups) {
  expect_decisions(example_policy(),
                   {
                       {"the client itself", alice(), acme(), true},
                       {"a site of the client", alice(), acme_hq(), true},
                       {"a group pinned to a site of the client", alice(), acme_hq_laptops(), true},
                       {"a group directly under the client", alice(), acme_wide_group(), true},
                       {"another client", alice(), globex(), false},
                       {"a site of another client", alice(), globex_nyc(), false},
                       {"a group of another client", alice(), initech_servers(), false},
                   });
}

TEST(AclPolicyTest, SiteTargetCoversTheSiteAndItsGroupsButNotSiblingsOrTheClient) {
  expect_decisions(example_policy(),
                   {
                       {"the granted site", bob(), globex_nyc(), true},
                       {"a group pinned to the granted site", bob(), globex_nyc_desks(), true},
                       {"a sibling site", bob(), globex_la(), false},
                       {"a group pinned to a sibling site", bob(), globex_la_desks(), false},
                       {"a group under the client but no site", bob(), globex_wide_group(), false},
                       {"the parent client", bob(), globex(), false},
                   });
}

TEST(AclPolicyTest, DeviceGroupTargetCoversOnlyThatGroup) {
  expect_decisions(example_policy(), {
                                         {"the granted group", dave(), initech_servers(), true},
                                         {"a sibling group", dave(), initech_desktops(), false},
                                         {"the group's client", dave(), initech(), false},
                                     });
}

TEST(AclPolicyTest, GroupMembershipMatchesEmailCaseInsensitively) {
  const Subject shouting{.technician_id = "tech-alice", .email = "ALICE@EXAMPLE.COM"};
  const Subject email_only{.technician_id = "", .email = "alice@Example.Com"};
  expect_decisions(example_policy(), {
                                         {"lower-case email", alice(), acme_hq(), true},
                                         {"upper-case email", shouting, acme_hq(), true},
                                         {"mixed-case email, no id", email_only, acme_hq(), true},
                                     });
}

TEST(AclPolicyTest, GroupMembershipMatchesTechnicianIdExactly) {
  const Subject id_only{.technician_id = "tech-carol", .email = ""};
  const Subject other_case{.technician_id = "TECH-CAROL", .email = "carol@example.com"};
  const Subject id_as_email{.technician_id = "", .email = "tech-carol"};
  expect_decisions(example_policy(),
                   {
                       {"by id, with an unrelated email", carol(), acme(), true},
                       {"by id alone", id_only, acme_hq_laptops(), true},
                       {"an id in another case is another technician", other_case, acme(), false},
                       {"an id given as the email does not match", id_as_email, acme(), false},
                   });
}

TEST(AclPolicyTest, DeniesByDefault) {
  const Subject nobody{};
  const Resource client_without_id{.kind = Resource::kClient, .id = ""};
  expect_decisions(example_policy(),
                   {
                       {"a technician no rule names", eve(), acme(), false},
                       {"a technician no rule names, site", eve(), globex_nyc(), false},
                       {"a technician no rule names, group", eve(), initech_servers(), false},
                       {"an empty subject", nobody, acme(), false},
                       {"a resource without ids", alice(), client_without_id, false},
                   });
}

TEST(AclPolicyTest, EmptyPolicyDeniesEverything) {
  const Expected<AclPolicy> parsed = AclPolicy::parse(nlohmann::json::object());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  for (const AclPolicy& policy : {parsed.value(), AclPolicy()}) {
    for (const Resource& resource : {acme(), acme_hq(), acme_hq_laptops(), initech_servers()}) {
      EXPECT_FALSE(policy.allows(alice(), resource));
    }
    EXPECT_TRUE(policy.reach(alice()).empty());
    EXPECT_TRUE(policy.granted_technicians().empty());
  }
}

TEST(AclPolicyTest, RuleWithEmptyGroupGrantsNothing) {
  const AclPolicy policy = example_policy();
  EXPECT_FALSE(policy.reach(eve()).covers(initech_servers()));
  EXPECT_EQ(policy.granted_technicians(),
            (std::set<std::string, std::less<>>{"alice@example.com", "bob@example.com",
                                                "tech-carol", "tech-dave"}));
}

TEST(AclPolicyTest, ReachListsWhatEachTechnicianReachesDirectly) {
  const AclPolicy policy = example_policy();
  const Reach alice_reach = policy.reach(alice());
  EXPECT_EQ(alice_reach.clients, (std::set<std::string, std::less<>>{"client-acme"}));
  EXPECT_TRUE(alice_reach.sites.empty());
  EXPECT_TRUE(alice_reach.device_groups.empty());

  const Reach bob_reach = policy.reach(bob());
  EXPECT_TRUE(bob_reach.clients.empty());
  EXPECT_EQ(bob_reach.sites, (std::set<std::string, std::less<>>{"site-globex-nyc"}));

  EXPECT_EQ(policy.reach(dave()).device_groups,
            (std::set<std::string, std::less<>>{"group-initech-servers"}));
  EXPECT_TRUE(policy.reach(eve()).empty());
}

TEST(AclPolicyTest, ReachCombinesGrantsByEmailAndById) {
  const Expected<AclPolicy> policy = AclPolicy::parse(nlohmann::json::parse(R"({
    "targets": { "acme": { "clients": ["client-acme"] },
                 "nyc":  { "sites": ["site-globex-nyc"] } },
    "rules": [ { "technicians": ["alice@example.com"], "targets": ["acme"] },
               { "technicians": ["tech-alice"], "targets": ["nyc"] } ]
  })"));
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  const Reach reach = policy->reach(alice());
  EXPECT_EQ(reach.clients, (std::set<std::string, std::less<>>{"client-acme"}));
  EXPECT_EQ(reach.sites, (std::set<std::string, std::less<>>{"site-globex-nyc"}));
  EXPECT_TRUE(policy->allows(alice(), globex_nyc_desks()));
  EXPECT_TRUE(policy->allows(alice(), acme_hq()));
}

TEST(AclPolicyTest, GrantedResourcesListEveryIdARuleUses) {
  const Expected<AclPolicy> policy = AclPolicy::parse(nlohmann::json::parse(R"({
    "targets": { "acme":   { "clients": ["client-acme"], "sites": ["site-x"] },
                 "unused": { "device_groups": ["group-unused"] } },
    "rules": [ { "technicians": ["alice@example.com"], "targets": ["acme"] } ]
  })"));
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  EXPECT_EQ(policy->granted_resources().clients,
            (std::set<std::string, std::less<>>{"client-acme"}));
  EXPECT_EQ(policy->granted_resources().sites, (std::set<std::string, std::less<>>{"site-x"}));
  EXPECT_TRUE(policy->granted_resources().device_groups.empty());
}

TEST(ReachTest, CoversChildrenOnlyThroughTheParentsTheResourceNames) {
  Reach reach;
  reach.clients.insert("client-acme");
  const Resource orphan_group{.kind = Resource::kDeviceGroup, .id = "g", .site_id = "site-acme-hq"};
  EXPECT_TRUE(reach.covers(acme_hq_laptops()));
  // Without its client_id the engine cannot know the group's site belongs to acme.
  EXPECT_FALSE(reach.covers(orphan_group));
}

TEST(ResourceKindTest, PrintsAsTheTestReferencePrefix) {
  EXPECT_EQ(to_string(Resource::kClient), "client");
  EXPECT_EQ(to_string(Resource::kSite), "site");
  EXPECT_EQ(to_string(Resource::kDeviceGroup), "device_group");
}

}  // namespace
}  // namespace helm::identity
