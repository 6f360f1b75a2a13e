#include "helm/agent/recent_commands.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fstream>

#include "helm/agent/frames.hpp"

namespace helm::agent {
namespace {

class CommandStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/helm-agent-cmds-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ / "commands.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static nlohmann::json ok(const std::string& id) {
    return make_result(id, "ok", 0, "out", "", {{"pong", true}});
  }
  std::filesystem::path dir_;
  std::filesystem::path file_;
};

TEST_F(CommandStoreTest, RepeatedIdIsNotNewAndFinishedOneReturnsItsResult) {
  auto store = RecentCommandStore::open(file_).value();
  nlohmann::json stored;
  EXPECT_EQ(store.begin("a", &stored), RecentCommandStore::Seen::kNew);
  EXPECT_EQ(store.begin("a", &stored), RecentCommandStore::Seen::kRunning);
  store.finish("a", ok("a"));
  EXPECT_EQ(store.begin("a", &stored), RecentCommandStore::Seen::kFinished);
  EXPECT_EQ(stored, ok("a"));
}

TEST_F(CommandStoreTest, PersistsAcrossReloadWithMode0600AndStillDedupes) {
  {
    auto store = RecentCommandStore::open(file_).value();
    ASSERT_EQ(store.begin("a", nullptr), RecentCommandStore::Seen::kNew);
    store.finish("a", ok("a"));
  }
  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto reopened = RecentCommandStore::open(file_).value();
  nlohmann::json stored;
  EXPECT_EQ(reopened.begin("a", &stored), RecentCommandStore::Seen::kFinished);
  EXPECT_EQ(stored["data"]["pong"], true);
  EXPECT_EQ(reopened.begin("b", nullptr), RecentCommandStore::Seen::kNew);
}

TEST_F(CommandStoreTest, CommandStartedBeforeARestartIsAnsweredInterruptedNotRunAgain) {
  {
    auto store = RecentCommandStore::open(file_).value();
    ASSERT_EQ(store.begin("mid", nullptr), RecentCommandStore::Seen::kNew);
    // the agent dies here
  }
  auto reopened = RecentCommandStore::open(file_).value();
  nlohmann::json stored;
  EXPECT_EQ(reopened.begin("mid", &stored), RecentCommandStore::Seen::kFinished);
  EXPECT_EQ(stored["status"], "error");
  EXPECT_EQ(stored["stderr"], "interrupted by agent restart");
  // And it is waiting to be delivered on the next connection.
  const auto pending = reopened.undelivered_results();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0]["id"], "mid");
}

TEST_F(CommandStoreTest, RemembersAtLeastTheCapacityAndForgetsTheOldest) {
  static_assert(RecentCommandStore::kDefaultCapacity >= 1024);
  // A small capacity keeps the test fast (every change is fsynced); the rule is the same.
  constexpr std::size_t kCapacity = 40;
  auto store = RecentCommandStore::open(file_, kCapacity).value();
  for (int i = 0; i < 46; ++i) {
    const auto id = "id-" + std::to_string(i);
    ASSERT_EQ(store.begin(id, nullptr), RecentCommandStore::Seen::kNew);
    store.finish(id, ok(id));
    store.mark_delivered(id);
  }
  EXPECT_EQ(store.size(), kCapacity);
  auto reopened = RecentCommandStore::open(file_, kCapacity).value();
  EXPECT_EQ(reopened.size(), kCapacity);
  EXPECT_NE(reopened.begin("id-6", nullptr), RecentCommandStore::Seen::kNew);
  EXPECT_EQ(reopened.begin("id-5", nullptr), RecentCommandStore::Seen::kNew);
  nlohmann::json stored;
  EXPECT_EQ(reopened.begin("id-45", &stored), RecentCommandStore::Seen::kFinished);
  EXPECT_EQ(stored["id"], "id-45");
}

TEST_F(CommandStoreTest, DamagedFileIsRefusedRatherThanForgotten) {
  { std::ofstream(file_) << "{not json"; }
  EXPECT_FALSE(RecentCommandStore::open(file_));
}

}  // namespace
}  // namespace helm::agent
