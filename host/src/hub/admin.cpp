#include "helm/hub/admin.hpp"

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "helm/auth/credentials.hpp"
#include "helm/config/hub_config.hpp"
#include "helm/hub/data_dir.hpp"

namespace helm::hub {
namespace {

constexpr const char* kAdminUsage = R"(usage:
  helm-hub admin bootstrap (--data-dir DIR | --database-url URL) --org NAME --email EMAIL
                           --password-stdin
      Creates the first organization (the hub operators') and its owner. Refuses when an
      organization exists. Works whether or not a hub is running on DIR.
)";

int fail(const std::string& message, int code = 1) {
  std::cerr << "helm-hub admin: " << message << "\n";
  return code;
}

// Parses --flag VALUE pairs and bare --switches into a map.
std::optional<std::map<std::string, std::string>> parse_flags(
    const std::vector<std::string>& args, const std::vector<std::string>& switches) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a.rfind("--", 0) != 0) return std::nullopt;
    if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
      out[a] = "1";
    } else if (const auto eq = a.find('='); eq != std::string::npos) {
      out[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      out[a] = args[++i];
    } else {
      return std::nullopt;
    }
  }
  return out;
}

int bootstrap(const std::vector<std::string>& args) {
  auto flags = parse_flags(args, {"--password-stdin"});
  if (!flags) return fail(std::string("bad arguments\n") + kAdminUsage, 2);
  for (const auto& [k, v] : *flags) {
    if (k != "--data-dir" && k != "--database-url" && k != "--org" && k != "--email" &&
        k != "--password-stdin") {
      return fail("unknown option '" + k + "'\n" + kAdminUsage, 2);
    }
  }
  const std::string org = (*flags)["--org"];
  const std::string email = (*flags)["--email"];
  if (org.empty() || email.empty() || !flags->count("--password-stdin")) {
    return fail(std::string("--org, --email and --password-stdin are required\n") + kAdminUsage, 2);
  }
  if (email.find('@') == std::string::npos || email.size() > 254) {
    return fail("'" + email + "' is not an email address", 2);
  }
  if (org.size() > 200) return fail("the organization name is longer than 200 characters", 2);
  std::string password;
  std::getline(std::cin, password);
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.size() < 12) return fail("the password must be at least 12 characters", 2);

  // The password cost follows the hub's configuration (environment and defaults).
  config::CommandLineOverrides cli{.data_dir =
                                       flags->count("--data-dir") ? (*flags)["--data-dir"] : "-"};
  auto cfg = config::load(cli, config::process_environment());
  if (!cfg) return fail(cfg.error().message, 2);
  const auth::PasswordParams params{
      .opslimit = cfg->identity.password_opslimit,
      .memlimit_bytes = uint64_t{cfg->identity.password_memlimit_kib} * 1024};

  auto db = open_admin_database(flags->count("--data-dir") ? (*flags)["--data-dir"] : "",
                                (*flags)["--database-url"]);
  if (!db) return fail(db.error().message);
  const std::string hash = auth::hash_password(password, params);
  try {
    pqxx::connection conn((*db)->conninfo);
    pqxx::work tx(conn);
    tx.exec("LOCK TABLE organizations IN EXCLUSIVE MODE");
    if (tx.exec1("SELECT count(*) FROM organizations")[0].as<int>() > 0) {
      return fail(
          "this hub is already bootstrapped: an organization exists. Log in as its owner "
          "and create technicians through the API instead.");
    }
    const auto org_id = tx.exec_params1(
                              "INSERT INTO organizations (name, is_operator) VALUES ($1, true)"
                              " RETURNING id::text",
                              org)[0]
                            .as<std::string>();
    const auto tech_id = tx.exec_params1(
                               "INSERT INTO technicians (org_id, email, role, password_hash)"
                               " VALUES ($1, $2, 'owner', $3) RETURNING id::text",
                               org_id, email, hash)[0]
                             .as<std::string>();
    tx.commit();
    std::cout << nlohmann::json{{"org_id", org_id},
                                {"org_name", org},
                                {"technician_id", tech_id},
                                {"email", email},
                                {"role", "owner"}}
                     .dump()
              << "\n";
    std::cerr << "Bootstrapped organization '" << org << "' with owner " << email
              << ". Log in with POST /api/v1/auth/login {\"email\",\"password\"}.\n";
  } catch (const std::exception& e) {
    return fail(std::string("bootstrap failed: ") + e.what());
  }
  return 0;
}

}  // namespace

int admin_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::cout << kAdminUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "bootstrap") return bootstrap({args.begin() + 1, args.end()});
  return fail("unknown admin command '" + args[0] + "'\n" + kAdminUsage, 2);
}

}  // namespace helm::hub
