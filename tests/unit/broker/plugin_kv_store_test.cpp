// The plugins' key-value store against a real (embedded) PostgreSQL with the hub's migrations:
// round trips of arbitrary bytes, scoping, caps, input checks, organization deletion, and a
// stopped database answering UNAVAILABLE.
#include "helm/broker/plugin_kv_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "helm/storage/db_pool.hpp"
#include "helm/storage/embedded_postgres.hpp"
#include "helm/storage/migrations.hpp"
#include "test_support.hpp"

namespace helm::broker {
namespace {

using namespace std::chrono_literals;

// One embedded PostgreSQL with the hub's schema, shared by the tests of a suite.
class Database {
 public:
  Database() : dir_("helm-kv") {
    auto started = storage::EmbeddedPostgres::start({.data_dir = dir_.path(), .supervise = false});
    if (!started) throw std::runtime_error(started.error().message);
    server_ = std::move(started).value();
    pqxx::connection conn(server_->connection_string());
    const auto migrated = storage::apply_migrations(conn, storage::builtin_migrations());
    if (!migrated) throw std::runtime_error(migrated.error().message);
  }
  ~Database() {
    if (server_) server_->stop();
  }
  std::string conninfo() const { return server_->connection_string(); }
  void stop() { server_->stop(); }

  std::string create_organization(const std::string& name) {
    pqxx::connection conn(conninfo());
    pqxx::work tx(conn);
    const auto id =
        tx.exec_params1("INSERT INTO organizations (name) VALUES ($1) RETURNING id", name)[0]
            .as<std::string>();
    tx.commit();
    return id;
  }
  void delete_organization(const std::string& id) {
    pqxx::connection conn(conninfo());
    pqxx::work tx(conn);
    tx.exec_params("DELETE FROM organizations WHERE id = $1", id);
    tx.commit();
  }
  long rows_of(const std::string& org_id) {
    pqxx::connection conn(conninfo());
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT count(*) FROM plugin_kv WHERE org_id = $1::uuid", org_id)[0]
        .as<long>();
  }

 private:
  test::TempDir dir_;
  std::unique_ptr<storage::EmbeddedPostgres> server_;
};

class PluginKvStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    database_ = new Database();
    org_x_ = new std::string(database_->create_organization("org-x"));
    org_y_ = new std::string(database_->create_organization("org-y"));
  }
  static void TearDownTestSuite() {
    delete org_x_;
    delete org_y_;
    delete database_;
  }

  void SetUp() override {
    pool_ = std::make_unique<storage::DbPool>(
        storage::DbPoolOptions{.conninfo = database_->conninfo(), .size = 2});
    store_ = std::make_unique<PluginKvStore>(*pool_);
    // Every test uses its own plugin names, so they do not see each other's keys.
    prefix_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  std::string plugin(const std::string& name) const { return prefix_ + "-" + name; }

  helm_status put(PluginKvStore& store, const std::string& plugin, const std::string& org,
                  const std::string& key, std::optional<std::string_view> value) {
    std::string error;
    const auto status = store.put(plugin, org, key, value, error);
    EXPECT_EQ(status == HELM_STATUS_OK, error.empty()) << error;
    return status;
  }
  // The value, "<NOT_FOUND>", or "<status N: message>".
  std::string get(const std::string& plugin, const std::string& org, const std::string& key) {
    std::string out = "untouched";
    std::string error;
    const auto status = store_->get(plugin, org, key, out, error);
    if (status == HELM_STATUS_NOT_FOUND) {
      EXPECT_EQ(out, "untouched");
      return "<NOT_FOUND>";
    }
    if (status != HELM_STATUS_OK) return "<status " + std::to_string(status) + ": " + error + ">";
    return out;
  }

  static Database* database_;
  static std::string* org_x_;
  static std::string* org_y_;
  std::unique_ptr<storage::DbPool> pool_;
  std::unique_ptr<PluginKvStore> store_;
  std::string prefix_;
};

Database* PluginKvStoreTest::database_ = nullptr;
std::string* PluginKvStoreTest::org_x_ = nullptr;
std::string* PluginKvStoreTest::org_y_ = nullptr;

TEST_F(PluginKvStoreTest, PutThenGetReturnsTheSameBytesIncludingNul) {
  std::string binary = "a\0b";
  binary.push_back('\0');
  for (int c = 0; c < 256; ++c)
    binary.push_back(static_cast<char>(c));
  const auto p = plugin("p");
  ASSERT_EQ(put(*store_, p, *org_x_, "blob", binary), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, "", "blob", binary), HELM_STATUS_OK);
  EXPECT_EQ(get(p, *org_x_, "blob"), binary);
  EXPECT_EQ(get(p, "", "blob"), binary);
  ASSERT_EQ(put(*store_, p, *org_x_, "empty", std::string_view()), HELM_STATUS_OK);
  EXPECT_EQ(get(p, *org_x_, "empty"), "");
}

TEST_F(PluginKvStoreTest, PutOverwritesAnExistingValue) {
  const auto p = plugin("p");
  ASSERT_EQ(put(*store_, p, *org_x_, "cursor", "first"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, *org_x_, "cursor", "second"), HELM_STATUS_OK);
  EXPECT_EQ(get(p, *org_x_, "cursor"), "second");
  ASSERT_EQ(put(*store_, p, "", "cursor", "hub-1"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, "", "cursor", "hub-2"), HELM_STATUS_OK);
  EXPECT_EQ(get(p, "", "cursor"), "hub-2");
}

TEST_F(PluginKvStoreTest, DeleteRemovesTheKeyAndDeletingAMissingKeyIsOk) {
  const auto p = plugin("p");
  ASSERT_EQ(put(*store_, p, *org_x_, "k", "v"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, *org_x_, "k", std::nullopt), HELM_STATUS_OK);
  EXPECT_EQ(get(p, *org_x_, "k"), "<NOT_FOUND>");
  EXPECT_EQ(put(*store_, p, *org_x_, "k", std::nullopt), HELM_STATUS_OK);
  EXPECT_EQ(put(*store_, p, "", "never-stored", std::nullopt), HELM_STATUS_OK);
}

TEST_F(PluginKvStoreTest, GetOfAMissingKeyIsNotFound) {
  std::string out = "untouched";
  std::string error;
  EXPECT_EQ(store_->get(plugin("p"), *org_x_, "missing", out, error), HELM_STATUS_NOT_FOUND);
  EXPECT_EQ(out, "untouched");
  EXPECT_FALSE(error.empty());
}

TEST_F(PluginKvStoreTest, KeysAreScopedByPluginAndOrganization) {
  const auto a = plugin("a");
  const auto b = plugin("b");
  ASSERT_EQ(put(*store_, a, *org_x_, "k", "a-x"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, a, *org_y_, "k", "a-y"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, a, "", "k", "a-hub"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, b, *org_x_, "other", "b-x"), HELM_STATUS_OK);

  EXPECT_EQ(get(a, *org_x_, "k"), "a-x");
  EXPECT_EQ(get(a, *org_y_, "k"), "a-y");
  EXPECT_EQ(get(a, "", "k"), "a-hub");
  EXPECT_EQ(get(b, *org_x_, "k"), "<NOT_FOUND>");  // plugin B cannot see plugin A's key
  EXPECT_EQ(get(b, "", "k"), "<NOT_FOUND>");
  EXPECT_EQ(get(a, *org_x_, "other"), "<NOT_FOUND>");

  ASSERT_EQ(put(*store_, a, *org_x_, "k", std::nullopt), HELM_STATUS_OK);
  EXPECT_EQ(get(a, *org_x_, "k"), "<NOT_FOUND>");
  EXPECT_EQ(get(a, *org_y_, "k"), "a-y");  // deleting in one scope leaves the others
  EXPECT_EQ(get(a, "", "k"), "a-hub");
}

TEST_F(PluginKvStoreTest, ValuesOverTheCapAreRefused) {
  PluginKvStore small(*pool_, {.max_value_bytes = 10});
  const auto p = plugin("p");
  EXPECT_EQ(put(small, p, "", "k", std::string(10, 'x')), HELM_STATUS_OK);
  std::string error;
  EXPECT_EQ(small.put(p, "", "k", std::string(11, 'x'), error), HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
  EXPECT_EQ(get(p, "", "k"), std::string(10, 'x'));
}

TEST_F(PluginKvStoreTest, DefaultValueCapIsOneMebibyte) {
  const auto p = plugin("p");
  const std::string mib(1024 * 1024, 'v');
  EXPECT_EQ(put(*store_, p, "", "big", mib), HELM_STATUS_OK);
  EXPECT_EQ(get(p, "", "big").size(), mib.size());
  std::string error;
  EXPECT_EQ(store_->put(p, "", "big", mib + "!", error), HELM_STATUS_RESOURCE_EXHAUSTED);
}

TEST_F(PluginKvStoreTest, KeyCountCapIsPerPluginAndScope) {
  PluginKvStore capped(*pool_, {.max_keys_per_scope = 3});
  const auto p = plugin("p");
  for (const char* key : {"k1", "k2", "k3"})
    ASSERT_EQ(put(capped, p, *org_x_, key, "v"), HELM_STATUS_OK);
  std::string error;
  EXPECT_EQ(capped.put(p, *org_x_, "k4", "v", error), HELM_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
  EXPECT_EQ(get(p, *org_x_, "k4"), "<NOT_FOUND>");
  EXPECT_EQ(put(capped, p, *org_x_, "k2", "overwrite"), HELM_STATUS_OK);  // not a new key
  EXPECT_EQ(put(capped, p, *org_y_, "k4", "v"), HELM_STATUS_OK);          // another scope
  EXPECT_EQ(put(capped, p, "", "k4", "v"), HELM_STATUS_OK);
  EXPECT_EQ(put(capped, plugin("q"), *org_x_, "k4", "v"), HELM_STATUS_OK);  // another plugin
  EXPECT_EQ(put(capped, p, *org_x_, "k1", std::nullopt), HELM_STATUS_OK);
  EXPECT_EQ(put(capped, p, *org_x_, "k4", "v"), HELM_STATUS_OK);  // room again
}

TEST_F(PluginKvStoreTest, ConcurrentNewKeysNeverExceedTheCap) {
  storage::DbPool wide_pool({.conninfo = database_->conninfo(), .size = 4});
  PluginKvStore capped_wide(wide_pool, {.max_keys_per_scope = 5});
  const auto p = plugin("p");
  std::atomic<int> ok{0}, refused{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string error;
        const auto status =
            capped_wide.put(p, "", "t" + std::to_string(t) + "-" + std::to_string(i), "v", error);
        (status == HELM_STATUS_OK ? ok : refused)++;
      }
    });
  }
  for (auto& w : writers)
    w.join();
  EXPECT_EQ(ok.load(), 5);
  EXPECT_EQ(refused.load(), 15);
}

TEST_F(PluginKvStoreTest, MalformedKeysAndOrganizationIdsAreInvalidInput) {
  const auto p = plugin("p");
  std::string out;
  std::string error;
  const std::vector<std::string> bad_keys = {"",
                                             std::string(257, 'k'),
                                             std::string("a\0b", 3),
                                             "\xff\xfe",
                                             "\xc0\xaf",      // overlong '/'
                                             "\xed\xa0\x80",  // a surrogate
                                             "caf\xc3"};      // truncated sequence
  for (const auto& key : bad_keys) {
    EXPECT_EQ(store_->get(p, "", key, out, error), HELM_STATUS_INVALID_INPUT) << key.size();
    EXPECT_EQ(store_->put(p, "", key, "v", error), HELM_STATUS_INVALID_INPUT) << key.size();
    EXPECT_NE(error.find("UTF-8"), std::string::npos) << error;
  }
  EXPECT_EQ(put(*store_, p, "", std::string(256, 'k'), "v"), HELM_STATUS_OK);
  EXPECT_EQ(put(*store_, p, "", "caf\xc3\xa9 \xf0\x9f\x94\x91", "v"), HELM_STATUS_OK);  // é 🔑
  for (const char* org : {"acme", "0B8F7C1E-1111-4A2B-9C3D-000000000001", "0b8f7c1e1111"}) {
    EXPECT_EQ(store_->get(p, org, "k", out, error), HELM_STATUS_INVALID_INPUT) << org;
    EXPECT_EQ(store_->put(p, org, "k", "v", error), HELM_STATUS_INVALID_INPUT) << org;
    EXPECT_NE(error.find("organization"), std::string::npos) << error;
  }
  EXPECT_EQ(store_->put("", "", "k", "v", error), HELM_STATUS_INVALID_INPUT);
}

TEST_F(PluginKvStoreTest, PutForAnUnknownOrganizationIsNotFound) {
  std::string error;
  EXPECT_EQ(store_->put(plugin("p"), "00000000-0000-4000-8000-000000000000", "k", "v", error),
            HELM_STATUS_NOT_FOUND);
  EXPECT_NE(error.find("does not exist"), std::string::npos) << error;
}

TEST_F(PluginKvStoreTest, DeletingAnOrganizationDeletesItsKeys) {
  const auto org = database_->create_organization(prefix_);
  const auto p = plugin("p");
  ASSERT_EQ(put(*store_, p, org, "k1", "v"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, org, "k2", "v"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, "", "k1", "hub"), HELM_STATUS_OK);
  ASSERT_EQ(put(*store_, p, *org_x_, "k1", "x"), HELM_STATUS_OK);
  EXPECT_EQ(database_->rows_of(org), 2);
  database_->delete_organization(org);
  EXPECT_EQ(database_->rows_of(org), 0);
  EXPECT_EQ(get(p, org, "k1"), "<NOT_FOUND>");
  EXPECT_EQ(get(p, "", "k1"), "hub");
  EXPECT_EQ(get(p, *org_x_, "k1"), "x");
}

// Its own database, since it stops it.
TEST(PluginKvStoreDown, StoppedDatabaseIsUnavailableNotACrashOrHang) {
  Database database;
  storage::DbPool pool({.conninfo = database.conninfo(), .size = 1});
  PluginKvStore store(pool);
  std::string error;
  ASSERT_EQ(store.put("p", "", "k", "v", error), HELM_STATUS_OK) << error;
  database.stop();

  const auto started = std::chrono::steady_clock::now();
  std::string out;
  EXPECT_EQ(store.get("p", "", "k", out, error), HELM_STATUS_UNAVAILABLE);
  EXPECT_NE(error.find("unavailable"), std::string::npos) << error;
  EXPECT_EQ(store.put("p", "", "k", "v2", error), HELM_STATUS_UNAVAILABLE);
  EXPECT_NE(error.find("database"), std::string::npos) << error;
  EXPECT_EQ(store.put("p", "", "k", std::nullopt, error), HELM_STATUS_UNAVAILABLE);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
}

}  // namespace
}  // namespace helm::broker
