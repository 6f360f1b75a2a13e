/// @brief An organization's access policy: which technicians reach which clients, sites and device
/// groups. Parsed from the admin's JSON, evaluated without storage (the caller supplies the
/// tenancy facts), deny by default, with policy tests that must pass before a policy is saved.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "helm/core/expected.hpp"

namespace helm::identity {

/// Who is asking. Either field may be empty; the email is matched case-insensitively (ASCII), the
/// technician id exactly.
struct Subject {
  std::string technician_id;
  std::string email;
};

/// What is being reached, with the tenancy facts needed to decide: a site names its client; a
/// device group names the site it is pinned to (if any) and its client. Fill every parent you know:
/// a group pinned to a site is covered by a grant on its client only if `client_id` is set too.
/// Devices are checked through the group (or site) they belong to.
struct Resource {
  enum Kind { kClient, kSite, kDeviceGroup } kind = kClient;
  std::string id;
  std::string client_id;
  std::string site_id;
};

/// "client", "site" or "device_group": the prefix of a resource reference in policy tests.
std::string_view to_string(Resource::Kind kind);

/// The clients, sites and device groups a subject reaches directly (each id as the policy names
/// it). A client grant covers everything under the client, a site grant the site and the groups
/// pinned to it, a group grant that group; parents are not implied by their children, so a
/// client that only appears here through one of its sites is not in `clients`.
struct Reach {
  std::set<std::string, std::less<>> clients;
  std::set<std::string, std::less<>> sites;
  std::set<std::string, std::less<>> device_groups;

  bool covers(const Resource& resource) const;
  bool empty() const { return clients.empty() && sites.empty() && device_groups.empty(); }
  void merge(const Reach& other);
};

/// One problem in a policy document, for the admin who wrote it.
struct PolicyError {
  /// JSON Pointer (RFC 6901) to the offending value, e.g. "/rules/1/targets/0"; "" is the whole
  /// document. For a missing key it points at where the key should be.
  std::string pointer;
  /// What is wrong and how to fix it: "rule 2 names target 'acme-nyc', which is not defined in
  /// 'targets'".
  std::string message;

  friend bool operator==(const PolicyError&, const PolicyError&) = default;
};

/// A policy test that did not hold, or could not run.
struct PolicyTestFailure {
  /// JSON Pointer to the test, or to the technician or resource entry that failed.
  std::string pointer;
  /// "test 3: alice@example.com should reach client:<id> but the policy denies it".
  std::string message;

  friend bool operator==(const PolicyTestFailure&, const PolicyTestFailure&) = default;
};

/// Looks up the technicians and resources that policy tests name; implemented over storage by the
/// caller, so the policy engine itself never touches a database.
class TenancyResolver {
 public:
  virtual ~TenancyResolver() = default;
  /// The technician with this email (any case) or id in the organization, or nullopt.
  virtual std::optional<Subject> find_technician(std::string_view email_or_id) const = 0;
  /// The resource of this kind and id in the organization, with its parents filled in, or
  /// nullopt.
  virtual std::optional<Resource> find_resource(Resource::Kind kind, std::string_view id) const = 0;
};

/// A parsed, validated policy. The document looks like
///
///     {
///       "groups":  { "tier1": ["alice@example.com", "<technician id>"] },
///       "targets": { "acme":     { "clients": ["<client id>"] },
///                    "acme-nyc": { "sites": ["<site id>"] },
///                    "servers":  { "device_groups": ["<group id>"] } },
///       "rules":   [ { "technicians": ["group:tier1", "bob@example.com"],
///                      "targets": ["acme", "servers"] } ],
///       "tests":   [ { "technician": "alice@example.com",
///                      "allow": ["client:<id>", "site:<id>"], "deny": ["client:<id>"] } ]
///     }
///
/// Every key is optional; `{}` (and a default-constructed AclPolicy) denies everything. A
/// technician entry containing '@' is an email, "group:<name>" a group, anything else a
/// technician id. Group and target names match `[a-z0-9][a-z0-9_-]{0,62}`.
class AclPolicy {
 public:
  /// The policy that grants nothing.
  AclPolicy() = default;

  /// Validates `document` strictly and compiles it. On failure the error lists every problem,
  /// one per line, as "<message> (at <pointer>)"; use validate() to get them as a list.
  static Expected<AclPolicy> parse(const nlohmann::json& document);

  /// Every problem in `document` (section by section, keys in sorted order); empty exactly when
  /// parse() succeeds.
  static std::vector<PolicyError> validate(const nlohmann::json& document);

  /// Whether `subject` may reach `resource`.
  bool allows(const Subject& subject, const Resource& resource) const;

  /// Everything `subject` reaches directly, to filter lists with one lookup per row.
  Reach reach(const Subject& subject) const;

  /// Runs the policy's own tests. An empty result means they all hold; a technician or resource
  /// the resolver does not know is a failure too.
  std::vector<PolicyTestFailure> run_tests(const TenancyResolver& resolver) const;

  /// Every email (lower case) and technician id the rules grant something to, after expanding
  /// groups: the technicians whose reach() can be non-empty.
  std::set<std::string, std::less<>> granted_technicians() const;

  /// Every client, site and group id named in a target that some rule uses.
  const Reach& granted_resources() const { return granted_resources_; }

 private:
  struct PolicyTest {
    std::string technician;
    std::vector<std::string> allow;  // "<kind>:<id>", already validated
    std::vector<std::string> deny;
  };

  /// The policy described by `document`; meaningful only if no problem was added.
  static AclPolicy build(const nlohmann::json& document, std::vector<PolicyError>& problems);

  // What each email (lower case) and each technician id reaches, merged over all rules.
  std::map<std::string, Reach, std::less<>> reach_by_email_;
  std::map<std::string, Reach, std::less<>> reach_by_id_;
  Reach granted_resources_;
  std::vector<PolicyTest> tests_;
};

}  // namespace helm::identity
