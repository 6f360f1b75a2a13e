#include "helm/identity/acl_policy.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace helm::identity {
namespace {

using nlohmann::json;

std::vector<PolicyError> problems_of(std::string_view document) {
  return AclPolicy::validate(json::parse(document));
}

// The one problem `document` has; any other count fails the test and lists what was found.
PolicyError single_problem(std::string_view document) {
  const std::vector<PolicyError> problems = problems_of(document);
  if (problems.size() == 1) return problems.front();
  ADD_FAILURE() << "expected exactly one problem, got " << problems.size();
  for (const PolicyError& problem : problems) {
    ADD_FAILURE() << "  at '" << problem.pointer << "': " << problem.message;
  }
  return PolicyError{"<none>", "<none>"};
}

bool mentions(const PolicyError& problem, std::string_view text) {
  return problem.message.find(text) != std::string::npos;
}

TEST(AclPolicyParseTest, ValidPolicyHasNoProblems) {
  const json document = json::parse(R"({
    "groups":  { "tier1": ["alice@example.com", "7b0c7d4e-technician"] },
    "targets": { "acme":     { "clients": ["c-1"] },
                 "acme-nyc": { "sites": ["s-1"] },
                 "servers":  { "device_groups": ["g-1"], "clients": [] } },
    "rules":   [ { "technicians": ["group:tier1", "bob@example.com"],
                   "targets": ["acme", "servers"] },
                 { "technicians": ["bob@example.com"], "targets": ["acme-nyc"] } ],
    "tests":   [ { "technician": "alice@example.com", "allow": ["client:c-1", "site:s-9"],
                   "deny": ["device_group:g-2"] },
                 { "technician": "bob@example.com", "deny": ["client:c-1"] } ]
  })");
  EXPECT_TRUE(AclPolicy::validate(document).empty());
  const Expected<AclPolicy> policy = AclPolicy::parse(document);
  EXPECT_TRUE(policy.ok()) << policy.error().message;
}

TEST(AclPolicyParseTest, EmptyDocumentIsAValidPolicy) {
  EXPECT_TRUE(problems_of("{}").empty());
  EXPECT_TRUE(problems_of(R"({"groups": {}, "targets": {}, "rules": [], "tests": []})").empty());
}

TEST(AclPolicyParseTest, DocumentMustBeAnObject) {
  for (const std::string_view document : {"[]", "null", "\"policy\"", "3"}) {
    const PolicyError problem = single_problem(document);
    EXPECT_EQ(problem.pointer, "");
    EXPECT_TRUE(mentions(problem, "must be a JSON object")) << problem.message;
  }
}

TEST(AclPolicyParseTest, UnknownTopLevelKeyIsNamed) {
  const PolicyError problem = single_problem(R"({"grups": {}})");
  EXPECT_EQ(problem.pointer, "/grups");
  EXPECT_EQ(problem.message,
            "unknown key 'grups'; a policy has only 'groups', 'targets', 'rules' and 'tests'");
}

TEST(AclPolicyParseTest, UnknownKeyPointerIsEscaped) {
  EXPECT_EQ(single_problem(R"({"a/b~c": 1})").pointer, "/a~1b~0c");
}

TEST(AclPolicyParseTest, UnknownNestedKeysAreNamed) {
  struct Case {
    std::string_view document;
    std::string_view pointer;
    std::string_view message;
  };
  const Case cases[] = {
      {R"({"targets": {"acme": {"client": ["c-1"], "sites": ["s-1"]}}})", "/targets/acme/client",
       "target 'acme' has unknown key 'client'; a target has only 'clients', 'sites' and "
       "'device_groups'"},
      {R"({"targets": {"t": {"sites": ["s"]}},
           "rules": [{"technicians": ["a@b.c"], "targets": ["t"], "target": ["t"]}]})",
       "/rules/0/target",
       "rule 1 has unknown key 'target'; a rule has only 'technicians' and "
       "'targets'"},
      {R"({"tests": [{"technician": "a@b.c", "allow": ["client:c"], "allowed": []}]})",
       "/tests/0/allowed",
       "test 1 has unknown key 'allowed'; a test has only 'technician', 'allow' and 'deny'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.document);
    const PolicyError problem = single_problem(c.document);
    EXPECT_EQ(problem.pointer, c.pointer);
    EXPECT_EQ(problem.message, c.message);
  }
}

TEST(AclPolicyParseTest, RuleNamingAnUndefinedTargetIsNamed) {
  const PolicyError problem = single_problem(R"({
    "targets": { "acme": { "clients": ["c-1"] } },
    "rules": [ { "technicians": ["a@example.com"], "targets": ["acme"] },
               { "technicians": ["b@example.com"], "targets": ["acme-nyc"] } ]
  })");
  EXPECT_EQ(problem.pointer, "/rules/1/targets/0");
  EXPECT_EQ(problem.message, "rule 2 names target 'acme-nyc', which is not defined in 'targets'");
}

TEST(AclPolicyParseTest, RuleNamingAnUndefinedGroupIsNamed) {
  const PolicyError problem = single_problem(R"({
    "groups": { "tier1": [] },
    "targets": { "acme": { "clients": ["c-1"] } },
    "rules": [ { "technicians": ["group:tier1", "group:tier2"], "targets": ["acme"] } ]
  })");
  EXPECT_EQ(problem.pointer, "/rules/0/technicians/1");
  EXPECT_EQ(problem.message, "rule 1 names group 'tier2', which is not defined in 'groups'");
}

TEST(AclPolicyParseTest, GroupsCannotContainGroups) {
  const PolicyError problem = single_problem(R"({
    "groups": { "tier1": ["a@example.com"], "all": ["b@example.com", "group:tier1"] }
  })");
  EXPECT_EQ(problem.pointer, "/groups/all/1");
  EXPECT_TRUE(mentions(problem, "group 'all' cannot contain 'group:tier1'")) << problem.message;
}

TEST(AclPolicyParseTest, GroupAndTargetNamesFollowTheNameRule) {
  const std::string longest(63, 'a');
  const std::string too_long(64, 'a');
  struct Case {
    std::string name;
    bool valid;
  };
  const Case cases[] = {
      {"tier1", true},   {"0", true},       {"a_b-c", true},    {longest, true},  {too_long, false},
      {"", false},       {"Tier1", false},  {"-tier", false},   {"_tier", false}, {"tier 1", false},
      {"tier.1", false}, {"tier/1", false}, {"t\u00e9", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json group_document = {{"groups", {{c.name, json::array()}}}};
    json target_document = {{"targets", {{c.name, {{"clients", {"c-1"}}}}}}};
    const std::vector<PolicyError> group_problems = AclPolicy::validate(group_document);
    const std::vector<PolicyError> target_problems = AclPolicy::validate(target_document);
    EXPECT_EQ(group_problems.empty(), c.valid);
    EXPECT_EQ(target_problems.empty(), c.valid);
    if (!c.valid && !group_problems.empty()) {
      EXPECT_EQ(group_problems.front().message.rfind("group name '" + c.name + "' is not valid", 0),
                0u)
          << group_problems.front().message;
    }
  }
}

TEST(AclPolicyParseTest, RuleNeedsAtLeastOneTechnicianAndOneTarget) {
  const std::vector<PolicyError> problems = problems_of(R"({
    "targets": { "acme": { "clients": ["c-1"] } },
    "rules": [ { "targets": ["acme"] },
               { "technicians": [], "targets": ["acme"] },
               { "technicians": ["a@example.com"] },
               { "technicians": ["a@example.com"], "targets": [] } ]
  })");
  ASSERT_EQ(problems.size(), 4u);
  EXPECT_EQ(problems[0].pointer, "/rules/0/technicians");
  EXPECT_TRUE(mentions(problems[0], "rule 1 needs 'technicians'")) << problems[0].message;
  EXPECT_EQ(problems[1].pointer, "/rules/1/technicians");
  EXPECT_TRUE(mentions(problems[1], "rule 2 has no technicians")) << problems[1].message;
  EXPECT_EQ(problems[2].pointer, "/rules/2/targets");
  EXPECT_TRUE(mentions(problems[2], "rule 3 needs 'targets'")) << problems[2].message;
  EXPECT_EQ(problems[3].pointer, "/rules/3/targets");
  EXPECT_TRUE(mentions(problems[3], "rule 4 has no targets")) << problems[3].message;
}

TEST(AclPolicyParseTest, IdsMustBeStrings) {
  struct Case {
    std::string_view document;
    std::string_view pointer;
    std::string_view got;
  };
  const Case cases[] = {
      {R"({"targets": {"acme": {"clients": [42]}}})", "/targets/acme/clients/0", "number"},
      {R"({"targets": {"acme": {"sites": ["s-1", null]}}})", "/targets/acme/sites/1", "null"},
      {R"({"targets": {"acme": {"device_groups": [{"id": "g"}]}}})",
       "/targets/acme/device_groups/0", "object"},
      {R"({"groups": {"tier1": ["a@example.com", 7]}})", "/groups/tier1/1", "number"},
      {R"({"targets": {"t": {"sites": ["s"]}}, "rules": [{"technicians": [true], "targets": ["t"]}]})",
       "/rules/0/technicians/0", "boolean"},
      {R"({"tests": [{"technician": 5, "allow": ["client:c"]}]})", "/tests/0/technician", "number"},
      {R"({"tests": [{"technician": "a@b.c", "deny": [1]}]})", "/tests/0/deny/0", "number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.document);
    const PolicyError problem = single_problem(c.document);
    EXPECT_EQ(problem.pointer, c.pointer);
    EXPECT_TRUE(mentions(problem, "must be a string")) << problem.message;
    EXPECT_TRUE(mentions(problem, std::string("got ") + std::string(c.got))) << problem.message;
  }
}

TEST(AclPolicyParseTest, SectionsOfTheWrongTypeAreNamed) {
  struct Case {
    std::string_view document;
    std::string_view pointer;
  };
  const Case cases[] = {
      {R"({"groups": []})", "/groups"},
      {R"({"targets": ["acme"]})", "/targets"},
      {R"({"rules": {}})", "/rules"},
      {R"({"tests": {}})", "/tests"},
      {R"({"groups": {"tier1": "a@example.com"}})", "/groups/tier1"},
      {R"({"targets": {"acme": ["c-1"]}})", "/targets/acme"},
      {R"({"targets": {"acme": {"clients": "c-1"}}})", "/targets/acme/clients"},
      {R"({"rules": ["alice"]})", "/rules/0"},
      {R"({"tests": [[]]})", "/tests/0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.document);
    EXPECT_EQ(single_problem(c.document).pointer, c.pointer);
  }
}

TEST(AclPolicyParseTest, EmptyOrSpacedIdentifiersAreRejected) {
  struct Case {
    std::string_view document;
    std::string_view pointer;
  };
  const Case cases[] = {
      {R"({"targets": {"acme": {"clients": [""]}}})", "/targets/acme/clients/0"},
      {R"({"targets": {"acme": {"clients": ["c 1"]}}})", "/targets/acme/clients/0"},
      {R"({"groups": {"tier1": [" alice@example.com"]}})", "/groups/tier1/0"},
      {R"({"groups": {"tier1": ["alice@"]}})", "/groups/tier1/0"},
      {R"({"targets": {"t": {"sites": ["s"]}}, "rules": [{"technicians": [""], "targets": ["t"]}]})",
       "/rules/0/technicians/0"},
      {R"({"tests": [{"technician": "", "allow": ["client:c"]}]})", "/tests/0/technician"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.document);
    EXPECT_EQ(single_problem(c.document).pointer, c.pointer);
  }
}

TEST(AclPolicyParseTest, TargetThatNamesNothingIsRejected) {
  const PolicyError problem = single_problem(R"({"targets": {"acme": {"clients": []}}})");
  EXPECT_EQ(problem.pointer, "/targets/acme");
  EXPECT_TRUE(mentions(problem, "target 'acme' names no clients, sites or device_groups"))
      << problem.message;
}

TEST(AclPolicyParseTest, PolicyTestsMustNameResourcesAndOneTechnician) {
  const std::vector<PolicyError> problems = problems_of(R"({
    "tests": [ { "technician": "a@example.com", "allow": ["customer:c-1", "client:", "c-1"] },
               { "technician": "group:tier1", "deny": ["site:s-1"] },
               { "technician": "a@example.com" },
               { "allow": ["client:c-1"] } ]
  })");
  ASSERT_EQ(problems.size(), 6u);
  EXPECT_EQ(problems[0].pointer, "/tests/0/allow/0");
  EXPECT_EQ(problems[0].message,
            "test 1 'allow' entry 'customer:c-1' is not a resource; write client:<id>, "
            "site:<id> or device_group:<id>");
  EXPECT_EQ(problems[1].pointer, "/tests/0/allow/1");
  EXPECT_EQ(problems[2].pointer, "/tests/0/allow/2");
  EXPECT_EQ(problems[3].pointer, "/tests/1/technician");
  EXPECT_TRUE(mentions(problems[3], "not a group")) << problems[3].message;
  EXPECT_EQ(problems[4].pointer, "/tests/2");
  EXPECT_TRUE(mentions(problems[4], "test 3 checks nothing")) << problems[4].message;
  EXPECT_EQ(problems[5].pointer, "/tests/3/technician");
  EXPECT_TRUE(mentions(problems[5], "test 4 needs 'technician'")) << problems[5].message;
}

TEST(AclPolicyParseTest, ParseErrorListsEveryProblemWithItsPointer) {
  const Expected<AclPolicy> policy = AclPolicy::parse(json::parse(R"({
    "grups": {},
    "targets": { "acme": { "clients": ["c-1"] } },
    "rules": [ { "technicians": ["a@example.com"], "targets": ["acme", "acme-nyc"] } ]
  })"));
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.error().message,
            "unknown key 'grups'; a policy has only 'groups', 'targets', 'rules' and 'tests' "
            "(at /grups)\n"
            "rule 1 names target 'acme-nyc', which is not defined in 'targets' "
            "(at /rules/0/targets/1)");
}

TEST(AclPolicyParseTest, InvalidGroupNameIsReportedOnceNotAlsoAsUndefined) {
  const std::vector<PolicyError> problems = problems_of(R"({
    "groups": { "Tier1": ["a@example.com"] },
    "targets": { "acme": { "clients": ["c-1"] } },
    "rules": [ { "technicians": ["group:Tier1"], "targets": ["acme"] } ]
  })");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].pointer, "/groups/Tier1");
}

}  // namespace
}  // namespace helm::identity
