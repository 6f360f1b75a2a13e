#include "helm/agent/state.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace helm::agent {
namespace {

class StateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/helm-agent-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static AgentState sample() {
    AgentState state;
    state.server = "https://hub.example:8443";
    state.device_id = "dev-1";
    state.device_token = "hlmd_secret";
    state.transport_url = "wss://hub.example:8443/agent/v1";
    state.heartbeat_s = 15;
    state.ca_pin = std::string(64, 'a');
    return state;
  }
  static std::string read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::filesystem::path dir_;
};

TEST_F(StateDir, StateFileIsWrittenWithMode0600AndReadsBack) {
  ASSERT_TRUE(save_state(dir_, sample()));
  struct stat st {};
  ASSERT_EQ(::stat(state_file_path(dir_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = load_state(dir_);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->device_token, "hlmd_secret");
  EXPECT_EQ(loaded->heartbeat_s, 15);
  EXPECT_EQ(loaded->ca_pin, std::string(64, 'a'));
  EXPECT_TRUE(loaded->revoked_reason.empty());
}

TEST_F(StateDir, SaveReplacesTheFileByRenameAndLeavesNoTemporaryFiles) {
  ASSERT_TRUE(save_state(dir_, sample()));
  const auto path = state_file_path(dir_);
  const auto old_link = dir_ / "old-link";
  ASSERT_EQ(::link(path.c_str(), old_link.c_str()), 0);
  const std::string before = read(path);
  AgentState changed = sample();
  changed.device_token = "hlmd_replaced";
  ASSERT_TRUE(save_state(dir_, changed));
  // A rename leaves the old inode untouched: a reader never sees a half-written file.
  EXPECT_EQ(read(old_link), before);
  EXPECT_NE(read(path).find("hlmd_replaced"), std::string::npos);
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
    ++entries;
  }
  EXPECT_EQ(entries, 2);
}

TEST_F(StateDir, LoadRefusesAStateFileOthersCanRead) {
  ASSERT_TRUE(save_state(dir_, sample()));
  ASSERT_EQ(::chmod(state_file_path(dir_).c_str(), 0644), 0);
  auto loaded = load_state(dir_);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("chmod 600"), std::string::npos);
}

TEST_F(StateDir, MissingStateFileSaysToEnroll) {
  auto loaded = load_state(dir_);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("enroll"), std::string::npos);
}

TEST_F(StateDir, RevokedMarkSurvivesSaveAndLoad) {
  AgentState state = sample();
  state.revoked_reason = "4001 device deleted";
  ASSERT_TRUE(save_state(dir_, state));
  auto loaded = load_state(dir_);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->revoked_reason, "4001 device deleted");
}

TEST_F(StateDir, MachineIdFallsBackToAGeneratedIdKeptInTheStateDir) {
  const auto missing = dir_ / "no-such-machine-id";
  auto first = machine_id(dir_, missing);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->size(), 32u);
  auto second = machine_id(dir_, missing);
  ASSERT_TRUE(second);
  EXPECT_EQ(*first, *second);
  std::ofstream(dir_ / "system-id") << "abc123\n";
  auto system = machine_id(dir_, dir_ / "system-id");
  ASSERT_TRUE(system);
  EXPECT_EQ(*system, "abc123");
}

}  // namespace
}  // namespace helm::agent
