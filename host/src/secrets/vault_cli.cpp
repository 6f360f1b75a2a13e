#include "helm/secrets/vault_cli.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <pqxx/pqxx>

#include "helm/auth/auth_service.hpp"
#include "helm/auth/session_context.hpp"
#include "helm/config/hub_config.hpp"
#include "helm/hub/data_dir.hpp"
#include "helm/secrets/audit_log.hpp"
#include "helm/secrets/master_keyring.hpp"
#include "helm/secrets/secret_service.hpp"
#include "helm/storage/db_pool.hpp"
#include "helm/vault/envelope.hpp"
#include "helm/vault/names.hpp"

namespace helm::secrets {
namespace {
namespace fs = std::filesystem;

constexpr const char* kVaultUsage = R"(usage:
  helm-hub vault rotate-master --new-key-file FILE (--data-dir DIR | --database-url URL)
                               [--master-key-file OLD] [--config FILE]
      Re-wraps every organization's data key under the master key in FILE (0600, 64 hex
      characters), in one transaction; secrets are untouched. When the hub reads its key from a
      file (vault.master_key_file, or DIR/master.key in development), FILE's key is installed
      there first, so a running hub picks it up by itself the moment it meets a re-wrapped key
      (or on SIGHUP): no restart, no failed release. With HELM_MASTER_KEY, set the new key and
      restart the hub after the rotation.
  helm-hub vault rotate-org-key --org ID (--data-dir DIR | --database-url URL)
                                [--master-key-file KEY] [--config FILE]
      Re-seals every secret of one organization under a fresh data key and deletes the old one.
)";

constexpr const char* kAuditUsage = R"(usage:
  helm-hub audit verify (--data-dir DIR | --database-url URL)
      Walks the hash-chained audit log from its first record. Prints OK with the number of
      records, or names the first broken record and exits 1.
)";

int fail(const std::string& prefix, const std::string& message, int code = 1) {
  std::cerr << "helm-hub " << prefix << ": " << message << "\n";
  return code;
}

std::optional<std::map<std::string, std::string>> parse_flags(
    const std::vector<std::string>& args, const std::vector<std::string>& known) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    if (name.rfind("--", 0) != 0) return std::nullopt;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return std::nullopt;
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) return std::nullopt;
    out[name] = value;
  }
  return out;
}

// The database and configuration an admin command works on.
struct AdminContext {
  config::HubConfig cfg;
  std::string data_dir;
  bool embedded = false;
  std::unique_ptr<hub::AdminDatabase> db;
};

Expected<AdminContext> open_context(std::map<std::string, std::string>& flags) {
  AdminContext ctx;
  ctx.data_dir = flags["--data-dir"];
  config::CommandLineOverrides cli{.data_dir = ctx.data_dir.empty() ? "-" : ctx.data_dir,
                                   .config_file = flags["--config"],
                                   .database_url = flags["--database-url"]};
  auto cfg = config::load(cli, config::process_environment());
  if (!cfg) return cfg.error();
  ctx.cfg = *cfg;
  ctx.embedded = ctx.cfg.database.url.empty();
  if (ctx.embedded && ctx.data_dir.empty()) {
    return Error{"give --data-dir DIR or --database-url URL"};
  }
  auto db = hub::open_admin_database(ctx.embedded ? ctx.data_dir : "", ctx.cfg.database.url);
  if (!db) return db.error();
  ctx.db = std::move(db).value();
  return ctx;
}

auth::SessionContext cli_actor() {
  auth::SessionContext who;
  who.principal_id = "helm-hub-cli";
  return who;
}

Expected<std::string> read_small_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read " + path.string()};
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.size() > 4096) return Error{path.string() + " is too large for a key file"};
  return content;
}

Status write_new_file(const fs::path& path, const std::string& content) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error{"cannot create " + path.string()};
  const bool ok =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Error{"cannot write " + path.string()};
  return {};
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Puts the new key where the hub reads its key, keeping the old one beside it (hard link) until
// the rotation has committed.
class KeyFileSwap {
 public:
  static Expected<std::unique_ptr<KeyFileSwap>> install(const fs::path& target,
                                                        const std::string& content) {
    auto swap = std::unique_ptr<KeyFileSwap>(new KeyFileSwap(target));
    const fs::path staged = target.string() + ".new";
    if (auto st = write_new_file(staged, content); !st) return st.error();
    ::unlink(swap->previous_.c_str());
    if (::link(target.c_str(), swap->previous_.c_str()) != 0) {
      ::unlink(staged.c_str());
      return Error{"cannot keep the old key as " + swap->previous_.string()};
    }
    if (::rename(staged.c_str(), target.c_str()) != 0) {
      ::unlink(staged.c_str());
      ::unlink(swap->previous_.c_str());
      return Error{"cannot replace " + target.string()};
    }
    sync_dir(target.parent_path());
    swap->installed_ = true;
    return swap;
  }
  void commit() {
    ::unlink(previous_.c_str());
    sync_dir(target_.parent_path());
    installed_ = false;
  }
  ~KeyFileSwap() {
    if (installed_) {
      ::rename(previous_.c_str(), target_.c_str());
      sync_dir(target_.parent_path());
    }
  }

 private:
  explicit KeyFileSwap(fs::path target)
      : target_(std::move(target)), previous_(target_.string() + ".previous") {}
  fs::path target_;
  fs::path previous_;
  bool installed_ = false;
};

int rotate_master(const std::vector<std::string>& args) {
  auto flags = parse_flags(
      args, {"--new-key-file", "--data-dir", "--database-url", "--master-key-file", "--config"});
  if (!flags) return fail("vault", std::string("bad arguments\n") + kVaultUsage, 2);
  const std::string new_file = (*flags)["--new-key-file"];
  if (new_file.empty())
    return fail("vault", std::string("--new-key-file is required\n") + kVaultUsage, 2);
  auto ctx = open_context(*flags);
  if (!ctx) return fail("vault", ctx.error().message);
  auto ring = load_admin_keyring(ctx->cfg, ctx->data_dir, (*flags)["--master-key-file"]);
  if (!ring) return fail("vault", "cannot load the current master key: " + ring.error().message);
  const auto old_key = (*ring)->current();
  auto new_key = vault::MasterKey::from_file(new_file);
  if (!new_key) return fail("vault", new_key.error().message);
  if (new_key->check_value() == old_key->check_value()) {
    return fail("vault", "the new key is the current key; generate a different one");
  }
  try {
    pqxx::connection conn(ctx->db->conninfo);
    if (auto st = check_master_key(conn, *old_key, (*ring)->describe()); !st) {
      return fail("vault", st.error().message);
    }
    // Where the hub reads its key: install the new one there before any data key needs it.
    std::unique_ptr<KeyFileSwap> swap;
    auto source = resolve_master_key_source(
        ctx->cfg, ctx->data_dir,
        std::getenv(std::string(vault::kMasterKeyEnvVar).c_str()) != nullptr);
    if (source && !source->file.empty() &&
        fs::weakly_canonical(source->file) != fs::weakly_canonical(new_file)) {
      auto content = read_small_file(new_file);
      if (!content) return fail("vault", content.error().message);
      auto installed = KeyFileSwap::install(source->file, *content);
      std::fill(content->begin(), content->end(), '\0');
      if (!installed) return fail("vault", installed.error().message);
      swap = std::move(installed).value();
    }
    pqxx::work tx(conn);
    tx.exec("SELECT value FROM hub_meta WHERE key = 'vault_kcv' FOR UPDATE");
    int rewrapped = 0;
    for (const auto& r :
         tx.exec("SELECT org_id::text, version, format, master_kcv, nonce, ciphertext"
                 " FROM vault_data_keys ORDER BY org_id, version FOR UPDATE")) {
      const std::string org = r[0].c_str();
      const pqxx::binarystring nonce(r[4]);
      const pqxx::binarystring ciphertext(r[5]);
      vault::WrappedDataKey wrapped{r[2].as<int>(), r[1].as<int>(), r[3].as<std::string>(),
                                    vault::Bytes(nonce.begin(), nonce.end()),
                                    vault::Bytes(ciphertext.begin(), ciphertext.end())};
      if (wrapped.master_key_id == new_key->check_value()) continue;  // a resumed rotation
      auto again = vault::rewrap_data_key(*old_key, *new_key, org, wrapped);
      if (!again) {
        return fail("vault", "cannot re-wrap data key " + std::to_string(wrapped.key_version) +
                                 " of organization " + org + ": " + again.error().message +
                                 " (nothing was changed)");
      }
      tx.exec_params(
          "UPDATE vault_data_keys SET master_kcv = $3, format = $4, nonce = $5, ciphertext = $6"
          " WHERE org_id = $1 AND version = $2",
          org, wrapped.key_version, again->master_key_id, again->format,
          pqxx::binarystring(std::string(again->nonce.begin(), again->nonce.end())),
          pqxx::binarystring(std::string(again->ciphertext.begin(), again->ciphertext.end())));
      ++rewrapped;
    }
    tx.exec_params(
        "INSERT INTO hub_meta (key, value) VALUES ('vault_kcv', $1)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
        new_key->check_value());
    auto rec = audit_record(cli_actor(), "vault.rotate_master");
    rec.extra = {{"old_key", old_key->check_value()},
                 {"new_key", new_key->check_value()},
                 {"data_keys_rewrapped", rewrapped}};
    if (auto st = append_audit(tx, rec); !st) return fail("vault", st.error().message);
    tx.commit();
    if (swap) swap->commit();
    std::cout << nlohmann::json{{"data_keys_rewrapped", rewrapped},
                                {"master_key", new_key->check_value()},
                                {"installed_at", swap ? source->file.string() : ""}}
                     .dump()
              << "\n";
    std::cerr << "Re-wrapped " << rewrapped << " data key(s) under master key "
              << new_key->check_value() << ".\n";
    if (!swap && source && source->from_environment) {
      std::cerr << "The hub reads HELM_MASTER_KEY: set it to the new key and restart the hub.\n";
    }
  } catch (const std::exception& e) {
    return fail("vault", std::string("rotation failed, nothing was changed: ") + e.what());
  }
  return 0;
}

int rotate_org_key(const std::vector<std::string>& args) {
  auto flags =
      parse_flags(args, {"--org", "--data-dir", "--database-url", "--master-key-file", "--config"});
  if (!flags) return fail("vault", std::string("bad arguments\n") + kVaultUsage, 2);
  const std::string org = (*flags)["--org"];
  if (!vault::is_valid_org_id(org)) {
    return fail("vault", "--org must be an organization id\n" + std::string(kVaultUsage), 2);
  }
  auto ctx = open_context(*flags);
  if (!ctx) return fail("vault", ctx.error().message);
  auto ring = load_admin_keyring(ctx->cfg, ctx->data_dir, (*flags)["--master-key-file"]);
  if (!ring) return fail("vault", "cannot load the master key: " + ring.error().message);
  try {
    pqxx::connection conn(ctx->db->conninfo);
    if (auto st = check_master_key(conn, *(*ring)->current(), (*ring)->describe()); !st) {
      return fail("vault", st.error().message);
    }
    storage::DbPool pool({.conninfo = ctx->db->conninfo, .size = 1});
    auth::AuthService auth(pool, {});
    SecretService service(pool, auth, *ring, {});
    pqxx::work tx(conn);
    if (tx.exec_params("SELECT 1 FROM organizations WHERE id::text = $1", org).empty()) {
      return fail("vault", "no organization " + org);
    }
    auto resealed = service.rotate_org_key(tx, cli_actor(), org);
    if (!resealed) return fail("vault", resealed.error().message + " (nothing was changed)");
    tx.commit();
    pool.stop();
    std::cout << nlohmann::json{{"org_id", org}, {"secrets_resealed", *resealed}}.dump() << "\n";
  } catch (const std::exception& e) {
    return fail("vault", std::string("rotation failed, nothing was changed: ") + e.what());
  }
  return 0;
}

int audit_verify(const std::vector<std::string>& args) {
  auto flags = parse_flags(args, {"--data-dir", "--database-url", "--config"});
  if (!flags) return fail("audit", std::string("bad arguments\n") + kAuditUsage, 2);
  auto ctx = open_context(*flags);
  if (!ctx) return fail("audit", ctx.error().message, 2);
  try {
    pqxx::connection conn(ctx->db->conninfo);
    const auto result = verify_audit_log(conn);
    if (result.broken) {
      std::cout << "BROKEN: " << *result.broken << "\n";
      return 1;
    }
    std::cout << "OK: " << result.records << " audit records, chain intact\n";
  } catch (const std::exception& e) {
    return fail("audit", std::string("cannot read the audit log: ") + e.what(), 2);
  }
  return 0;
}

}  // namespace

int vault_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::cout << kVaultUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "rotate-master") return rotate_master({args.begin() + 1, args.end()});
  if (args[0] == "rotate-org-key") return rotate_org_key({args.begin() + 1, args.end()});
  return fail("vault", "unknown vault command '" + args[0] + "'\n" + kVaultUsage, 2);
}

int audit_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::cout << kAuditUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "verify") return audit_verify({args.begin() + 1, args.end()});
  return fail("audit", "unknown audit command '" + args[0] + "'\n" + kAuditUsage, 2);
}

}  // namespace helm::secrets
