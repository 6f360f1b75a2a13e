#include "helm/identity/acl_policy.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <initializer_list>
#include <utility>

namespace helm::identity {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kGroupPrefix = "group:";
constexpr std::size_t kMaxNameLength = 63;

/// One RFC 6901 reference token: '~' and '/' escaped.
std::string pointer_token(std::string_view key) {
  std::string token;
  token.reserve(key.size());
  for (const char c : key) {
    if (c == '~') {
      token += "~0";
    } else if (c == '/') {
      token += "~1";
    } else {
      token.push_back(c);
    }
  }
  return token;
}

std::string pointer(std::string_view parent, std::string_view key) {
  return std::string(parent) + "/" + pointer_token(key);
}

std::string pointer(std::string_view parent, std::size_t index) {
  return std::string(parent) + "/" + std::to_string(index);
}

std::string ascii_lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return lower;
}

bool is_email(std::string_view technician) {
  return technician.find('@') != std::string_view::npos;
}

/// Group and target names: `[a-z0-9][a-z0-9_-]{0,62}`.
bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  const auto lower_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!lower_or_digit(name.front())) return false;
  for (const char c : name) {
    if (!lower_or_digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

constexpr std::string_view kNameRule =
    "use 1 to 63 lower-case letters, digits, '_' and '-', starting with a letter or digit";

/// Why `token` (an email, technician id or resource id) is unusable, or "" if it is fine.
std::string token_problem(std::string_view token) {
  if (token.empty()) return "is empty";
  for (const char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return "contains a space or control character";
    }
  }
  return "";
}

/// Why `technician` cannot name a technician, or "" if it can.
std::string technician_problem(std::string_view technician) {
  std::string problem = token_problem(technician);
  if (!problem.empty()) return problem;
  if (is_email(technician) && (technician.front() == '@' || technician.back() == '@')) {
    return "is not a complete email address";
  }
  return "";
}

struct ResourceRef {
  Resource::Kind kind;
  std::string_view id;
};

/// Splits "client:<id>", "site:<id>" or "device_group:<id>".
std::optional<ResourceRef> parse_resource_ref(std::string_view text) {
  constexpr std::array kKinds = {Resource::kClient, Resource::kSite, Resource::kDeviceGroup};
  for (const Resource::Kind kind : kKinds) {
    const std::string_view prefix = to_string(kind);
    if (text.size() > prefix.size() + 1 && text.starts_with(prefix) && text[prefix.size()] == ':') {
      const std::string_view id = text.substr(prefix.size() + 1);
      if (!token_problem(id).empty()) return std::nullopt;
      return ResourceRef{kind, id};
    }
  }
  return std::nullopt;
}

bool contains_id(const std::set<std::string, std::less<>>& ids, std::string_view id) {
  return !id.empty() && ids.contains(id);
}

/// Adds a problem for each key of `object` that is not in `known`. `owner` names the object in
/// messages ("rule 2"; "" for the document), `allowed` says which keys are.
void reject_unknown_keys(const Json& object, std::string_view at,
                         std::initializer_list<std::string_view> known, std::string_view owner,
                         std::string_view allowed, std::vector<PolicyError>& problems) {
  for (const auto& [key, value] : object.items()) {
    bool is_known = false;
    for (const std::string_view name : known)
      is_known = is_known || key == name;
    if (is_known) continue;
    std::string message =
        owner.empty() ? "unknown key '" : std::string(owner) + " has unknown key '";
    message += key + "'; " + std::string(allowed);
    problems.push_back({pointer(at, key), std::move(message)});
  }
}

/// A string from a list, with its position in that list.
struct Entry {
  std::size_t index;
  std::string text;
};

/// The string entries of the list `value` at `at`, adding a problem if it is not a list and one
/// per entry that is not a string. `what` names the list in messages ("rule 2 'technicians'"),
/// `entry` describes one entry ("a technician email or id").
std::vector<Entry> string_list(const Json& value, const std::string& at, const std::string& what,
                               std::string_view entry, std::vector<PolicyError>& problems) {
  std::vector<Entry> strings;
  if (!value.is_array()) {
    problems.push_back({at, what + " must be a list, each entry " + std::string(entry) + ", got " +
                                std::string(value.type_name())});
    return strings;
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i].is_string()) {
      strings.push_back({i, value[i].get<std::string>()});
    } else {
      problems.push_back({pointer(at, i), what + " entry " + std::to_string(i + 1) +
                                              " must be a string (" + std::string(entry) +
                                              "), got " + std::string(value[i].type_name())});
    }
  }
  return strings;
}

using Groups = std::map<std::string, std::vector<std::string>, std::less<>>;
using Targets = std::map<std::string, Reach, std::less<>>;

Groups parse_groups(const Json& groups, std::vector<PolicyError>& problems) {
  Groups parsed;
  const std::string at = "/groups";
  if (!groups.is_object()) {
    problems.push_back({at,
                        "'groups' must be an object mapping each group name to a list of "
                        "technicians, got " +
                            std::string(groups.type_name())});
    return parsed;
  }
  for (const auto& [name, members] : groups.items()) {
    const std::string group_at = pointer(at, name);
    const std::string what = "group '" + name + "'";
    if (!is_valid_name(name)) {
      problems.push_back(
          {group_at, "group name '" + name + "' is not valid; " + std::string(kNameRule)});
    }
    // Recorded even when invalid, so rules naming it do not also report it as undefined.
    std::vector<std::string>& kept = parsed[name];
    for (Entry& member :
         string_list(members, group_at, what, "a technician email or id", problems)) {
      const std::string member_at = pointer(group_at, member.index);
      if (member.text.starts_with(kGroupPrefix)) {
        problems.push_back({member_at, what + " cannot contain '" + member.text +
                                           "': groups cannot contain groups, so list that "
                                           "group's members here instead"});
        continue;
      }
      const std::string problem = technician_problem(member.text);
      if (!problem.empty()) {
        problems.push_back({member_at, what + " member " + std::to_string(member.index + 1) + " '" +
                                           member.text + "' " + problem +
                                           "; write a technician's email or id"});
        continue;
      }
      kept.push_back(std::move(member.text));
    }
  }
  return parsed;
}

Targets parse_targets(const Json& targets, std::vector<PolicyError>& problems) {
  Targets parsed;
  const std::string at = "/targets";
  if (!targets.is_object()) {
    problems.push_back({at,
                        "'targets' must be an object mapping each target name to its "
                        "'clients', 'sites' and 'device_groups', got " +
                            std::string(targets.type_name())});
    return parsed;
  }
  struct IdList {
    std::string_view key;
    std::string_view entry;
    std::set<std::string, std::less<>> Reach::*ids;
  };
  constexpr std::array kLists = {
      IdList{"clients", "a client id", &Reach::clients},
      IdList{"sites", "a site id", &Reach::sites},
      IdList{"device_groups", "a device group id", &Reach::device_groups}};
  for (const auto& [name, target] : targets.items()) {
    const std::string target_at = pointer(at, name);
    const std::string what = "target '" + name + "'";
    if (!is_valid_name(name)) {
      problems.push_back(
          {target_at, "target name '" + name + "' is not valid; " + std::string(kNameRule)});
    }
    Reach& reach = parsed[name];
    if (!target.is_object()) {
      problems.push_back({target_at, what +
                                         " must be an object with 'clients', 'sites' or "
                                         "'device_groups', got " +
                                         std::string(target.type_name())});
      continue;
    }
    reject_unknown_keys(target, target_at, {"clients", "sites", "device_groups"}, what,
                        "a target has only 'clients', 'sites' and 'device_groups'", problems);
    // A list of the wrong type is reported once, not again as "names nothing".
    bool names_something = false;
    for (const IdList& list : kLists) {
      const auto found = target.find(list.key);
      if (found == target.end()) continue;
      names_something = names_something || !found->is_array() || !found->empty();
      const std::string list_at = pointer(target_at, list.key);
      const std::string list_what = what + " '" + std::string(list.key) + "'";
      for (Entry& id : string_list(*found, list_at, list_what, list.entry, problems)) {
        const std::string problem = token_problem(id.text);
        if (!problem.empty()) {
          problems.push_back({pointer(list_at, id.index),
                              list_what + " entry " + std::to_string(id.index + 1) + " " + problem +
                                  "; write " + std::string(list.entry)});
          continue;
        }
        (reach.*list.ids).insert(std::move(id.text));
      }
    }
    if (!names_something) {
      problems.push_back({target_at, what + " names no clients, sites or device_groups; list at "
                                            "least one id, or delete the target"});
    }
  }
  return parsed;
}

struct ParsedRule {
  std::vector<Entry> technicians;  // emails, technician ids and "group:<name>"
  std::vector<Entry> targets;
};

/// The string list under `key` of a rule, adding a problem when it is missing or empty. `hint`
/// says what belongs in it.
std::vector<Entry> required_rule_list(const Json& rule, const std::string& rule_at,
                                      const std::string& rule_name, std::string_view key,
                                      std::string_view entry, std::string_view hint,
                                      std::vector<PolicyError>& problems) {
  const std::string at = pointer(rule_at, key);
  const auto found = rule.find(key);
  if (found == rule.end()) {
    problems.push_back({at, rule_name + " needs '" + std::string(key) + "': " + std::string(hint)});
    return {};
  }
  if (found->is_array() && found->empty()) {
    problems.push_back(
        {at, rule_name + " has no " + std::string(key) + "; it needs " + std::string(hint)});
  }
  return string_list(*found, at, rule_name + " '" + std::string(key) + "'", entry, problems);
}

std::vector<ParsedRule> parse_rules(const Json& rules, const Groups& groups, const Targets& targets,
                                    std::vector<PolicyError>& problems) {
  std::vector<ParsedRule> parsed;
  const std::string at = "/rules";
  if (!rules.is_array()) {
    problems.push_back(
        {at, "'rules' must be a list of rules, got " + std::string(rules.type_name())});
    return parsed;
  }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Json& rule = rules[i];
    const std::string rule_at = pointer(at, i);
    const std::string rule_name = "rule " + std::to_string(i + 1);
    if (!rule.is_object()) {
      problems.push_back({rule_at, rule_name +
                                       " must be an object with 'technicians' and "
                                       "'targets', got " +
                                       std::string(rule.type_name())});
      continue;
    }
    reject_unknown_keys(rule, rule_at, {"technicians", "targets"}, rule_name,
                        "a rule has only 'technicians' and 'targets'", problems);
    ParsedRule& out = parsed.emplace_back();
    out.technicians = required_rule_list(
        rule, rule_at, rule_name, "technicians", "a technician email, id or 'group:<name>'",
        "a list of technician emails, technician ids and 'group:<name>' entries", problems);
    out.targets = required_rule_list(rule, rule_at, rule_name, "targets", "a target name",
                                     "a list of names defined in 'targets'", problems);

    for (const Entry& technician : out.technicians) {
      const std::string entry_at = pointer(pointer(rule_at, "technicians"), technician.index);
      if (technician.text.starts_with(kGroupPrefix)) {
        const std::string_view group =
            std::string_view(technician.text).substr(kGroupPrefix.size());
        if (!groups.contains(group)) {
          problems.push_back({entry_at, rule_name + " names group '" + std::string(group) +
                                            "', which is not defined in 'groups'"});
        }
        continue;
      }
      const std::string problem = technician_problem(technician.text);
      if (!problem.empty()) {
        problems.push_back({entry_at, rule_name + " technician '" + technician.text + "' " +
                                          problem +
                                          "; write an email, a technician id or 'group:<name>'"});
      }
    }
    for (const Entry& target : out.targets) {
      if (!targets.contains(target.text)) {
        problems.push_back(
            {pointer(pointer(rule_at, "targets"), target.index),
             rule_name + " names target '" + target.text + "', which is not defined in 'targets'"});
      }
    }
  }
  return parsed;
}

struct ParsedTest {
  std::string technician;
  std::vector<std::string> allow;  // "<kind>:<id>"
  std::vector<std::string> deny;
};

std::vector<ParsedTest> parse_tests(const Json& tests, std::vector<PolicyError>& problems) {
  std::vector<ParsedTest> parsed;
  const std::string at = "/tests";
  if (!tests.is_array()) {
    problems.push_back(
        {at, "'tests' must be a list of policy tests, got " + std::string(tests.type_name())});
    return parsed;
  }
  for (std::size_t i = 0; i < tests.size(); ++i) {
    const Json& test = tests[i];
    const std::string test_at = pointer(at, i);
    const std::string test_name = "test " + std::to_string(i + 1);
    if (!test.is_object()) {
      problems.push_back({test_at, test_name +
                                       " must be an object with 'technician', 'allow' and "
                                       "'deny', got " +
                                       std::string(test.type_name())});
      continue;
    }
    reject_unknown_keys(test, test_at, {"technician", "allow", "deny"}, test_name,
                        "a test has only 'technician', 'allow' and 'deny'", problems);
    ParsedTest& out = parsed.emplace_back();
    const std::string technician_at = pointer(test_at, "technician");
    const auto technician = test.find("technician");
    if (technician == test.end()) {
      problems.push_back({technician_at, test_name + " needs 'technician': the email or id of "
                                                     "the technician it checks"});
    } else if (!technician->is_string()) {
      problems.push_back({technician_at, test_name +
                                             " 'technician' must be a string (an email or "
                                             "technician id), got " +
                                             std::string(technician->type_name())});
    } else {
      out.technician = technician->get<std::string>();
      const std::string problem = technician_problem(out.technician);
      if (out.technician.starts_with(kGroupPrefix)) {
        problems.push_back({technician_at, test_name + " 'technician' must name one technician, "
                                                       "not a group"});
      } else if (!problem.empty()) {
        problems.push_back({technician_at, test_name + " 'technician' '" + out.technician + "' " +
                                               problem + "; write an email or technician id"});
      }
    }
    // A list of the wrong type is reported once, not again as "checks nothing".
    bool checks_something = false;
    for (const std::string_view key : {std::string_view("allow"), std::string_view("deny")}) {
      const auto found = test.find(key);
      if (found == test.end()) continue;
      checks_something = checks_something || !found->is_array() || !found->empty();
      const std::string list_at = pointer(test_at, key);
      std::vector<std::string>& refs = key == "allow" ? out.allow : out.deny;
      for (Entry& ref : string_list(*found, list_at, test_name + " '" + std::string(key) + "'",
                                    "a resource such as 'client:<id>'", problems)) {
        if (!parse_resource_ref(ref.text)) {
          problems.push_back({pointer(list_at, ref.index),
                              test_name + " '" + std::string(key) + "' entry '" + ref.text +
                                  "' is not a resource; write client:<id>, site:<id> or "
                                  "device_group:<id>"});
          continue;
        }
        refs.push_back(std::move(ref.text));
      }
    }
    if (!checks_something) {
      problems.push_back({test_at, test_name + " checks nothing; give it 'allow' or 'deny' "
                                               "entries such as 'client:<id>'"});
    }
  }
  return parsed;
}

/// `document[key]`, or `fallback` when the key is absent.
const Json& section(const Json& document, std::string_view key, const Json& fallback) {
  const auto found = document.find(key);
  return found == document.end() ? fallback : *found;
}

}  // namespace

std::string_view to_string(Resource::Kind kind) {
  switch (kind) {
    case Resource::kClient:
      return "client";
    case Resource::kSite:
      return "site";
    case Resource::kDeviceGroup:
      return "device_group";
  }
  return "unknown";
}

bool Reach::covers(const Resource& resource) const {
  switch (resource.kind) {
    case Resource::kClient:
      return contains_id(clients, resource.id);
    case Resource::kSite:
      return contains_id(sites, resource.id) || contains_id(clients, resource.client_id);
    case Resource::kDeviceGroup:
      return contains_id(device_groups, resource.id) || contains_id(sites, resource.site_id) ||
             contains_id(clients, resource.client_id);
  }
  return false;
}

void Reach::merge(const Reach& other) {
  clients.insert(other.clients.begin(), other.clients.end());
  sites.insert(other.sites.begin(), other.sites.end());
  device_groups.insert(other.device_groups.begin(), other.device_groups.end());
}

AclPolicy AclPolicy::build(const nlohmann::json& document, std::vector<PolicyError>& problems) {
  AclPolicy policy;
  if (!document.is_object()) {
    problems.push_back({"",
                        "a policy must be a JSON object with 'groups', 'targets', 'rules' "
                        "and 'tests', got " +
                            std::string(document.type_name())});
    return policy;
  }
  reject_unknown_keys(document, "", {"groups", "targets", "rules", "tests"}, "",
                      "a policy has only 'groups', 'targets', 'rules' and 'tests'", problems);

  static const Json empty_object = Json::object();
  static const Json empty_list = Json::array();
  const Groups groups = parse_groups(section(document, "groups", empty_object), problems);
  const Targets targets = parse_targets(section(document, "targets", empty_object), problems);
  const std::vector<ParsedRule> rules =
      parse_rules(section(document, "rules", empty_list), groups, targets, problems);
  std::vector<ParsedTest> tests = parse_tests(section(document, "tests", empty_list), problems);
  if (!problems.empty()) return policy;

  for (const ParsedRule& rule : rules) {
    Reach granted;
    for (const Entry& name : rule.targets)
      granted.merge(targets.find(name.text)->second);
    policy.granted_resources_.merge(granted);

    const auto grant = [&policy, &granted](const std::string& technician) {
      if (is_email(technician)) {
        policy.reach_by_email_[ascii_lower(technician)].merge(granted);
      } else {
        policy.reach_by_id_[technician].merge(granted);
      }
    };
    for (const Entry& technician : rule.technicians) {
      if (technician.text.starts_with(kGroupPrefix)) {
        const std::string_view group =
            std::string_view(technician.text).substr(kGroupPrefix.size());
        for (const std::string& member : groups.find(group)->second)
          grant(member);
      } else {
        grant(technician.text);
      }
    }
  }
  for (ParsedTest& test : tests) {
    policy.tests_.push_back(
        {std::move(test.technician), std::move(test.allow), std::move(test.deny)});
  }
  return policy;
}

Expected<AclPolicy> AclPolicy::parse(const nlohmann::json& document) {
  std::vector<PolicyError> problems;
  AclPolicy policy = build(document, problems);
  if (problems.empty()) return policy;
  std::string message;
  for (const PolicyError& problem : problems) {
    if (!message.empty()) message += '\n';
    message += problem.message + " (at " + (problem.pointer.empty() ? "/" : problem.pointer) + ")";
  }
  return Error{std::move(message)};
}

std::vector<PolicyError> AclPolicy::validate(const nlohmann::json& document) {
  std::vector<PolicyError> problems;
  static_cast<void>(build(document, problems));
  return problems;
}

bool AclPolicy::allows(const Subject& subject, const Resource& resource) const {
  if (!subject.email.empty()) {
    const auto found = reach_by_email_.find(ascii_lower(subject.email));
    if (found != reach_by_email_.end() && found->second.covers(resource)) return true;
  }
  if (!subject.technician_id.empty()) {
    const auto found = reach_by_id_.find(subject.technician_id);
    if (found != reach_by_id_.end() && found->second.covers(resource)) return true;
  }
  return false;
}

Reach AclPolicy::reach(const Subject& subject) const {
  Reach reach;
  if (!subject.email.empty()) {
    const auto found = reach_by_email_.find(ascii_lower(subject.email));
    if (found != reach_by_email_.end()) reach.merge(found->second);
  }
  if (!subject.technician_id.empty()) {
    const auto found = reach_by_id_.find(subject.technician_id);
    if (found != reach_by_id_.end()) reach.merge(found->second);
  }
  return reach;
}

std::vector<PolicyTestFailure> AclPolicy::run_tests(const TenancyResolver& resolver) const {
  std::vector<PolicyTestFailure> failures;
  for (std::size_t i = 0; i < tests_.size(); ++i) {
    const PolicyTest& test = tests_[i];
    const std::string test_at = pointer("/tests", i);
    const std::string test_name = "test " + std::to_string(i + 1);
    const std::optional<Subject> subject = resolver.find_technician(test.technician);
    if (!subject) {
      failures.push_back(
          {pointer(test_at, "technician"), test_name + ": technician '" + test.technician +
                                               "' does not exist in this organization"});
      continue;
    }
    const auto check = [&](std::string_view key, const std::vector<std::string>& refs,
                           bool should_reach) {
      for (std::size_t j = 0; j < refs.size(); ++j) {
        const std::string entry_at = pointer(pointer(test_at, key), j);
        const std::optional<ResourceRef> ref = parse_resource_ref(refs[j]);
        const std::optional<Resource> resource =
            ref ? resolver.find_resource(ref->kind, ref->id) : std::nullopt;
        if (!resource) {
          failures.push_back(
              {entry_at, test_name + ": " + refs[j] + " does not exist in this organization"});
          continue;
        }
        const bool reaches = allows(*subject, *resource);
        if (reaches == should_reach) continue;
        failures.push_back({entry_at, test_name + ": " + test.technician +
                                          (should_reach ? " should reach " : " should not reach ") +
                                          refs[j] + " but the policy " +
                                          (should_reach ? "denies" : "allows") + " it"});
      }
    };
    check("allow", test.allow, true);
    check("deny", test.deny, false);
  }
  return failures;
}

std::set<std::string, std::less<>> AclPolicy::granted_technicians() const {
  std::set<std::string, std::less<>> technicians;
  for (const auto& [email, reach] : reach_by_email_)
    technicians.insert(email);
  for (const auto& [id, reach] : reach_by_id_)
    technicians.insert(id);
  return technicians;
}

}  // namespace helm::identity
