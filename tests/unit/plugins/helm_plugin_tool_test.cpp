// The helm-plugin command-line tool, run as a user would: keygen, sign, verify, and tamper
// detection on a real plugin library.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using helm::plugins::testing::read_file;
using helm::plugins::testing::TempDir;
using helm::plugins::testing::write_file;

struct ToolRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

std::string quote(const fs::path& path) {
  return "'" + path.string() + "'";
}

ToolRun helm_plugin(const std::string& arguments) {
  const std::string command = std::string(HELM_PLUGIN_TOOL) + " " + arguments + " 2>&1";
  ToolRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  while (const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) {
    run.output.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

/// A temp dir holding a key pair and a copy of example-echo (library + manifest).
class HelmPluginToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path echo = HELM_EXAMPLE_ECHO_DIR;
    fs::copy_file(echo / "example-echo.so", library());
    fs::copy_file(echo / "manifest.json", manifest());
    const ToolRun keygen = helm_plugin("keygen --out " + quote(dir_.path() / "publisher"));
    ASSERT_EQ(keygen.exit_code, 0) << keygen.output;
  }

  fs::path library() const { return dir_.path() / "example-echo.so"; }
  fs::path manifest() const { return dir_.path() / "manifest.json"; }
  fs::path key() const { return dir_.path() / "publisher.key"; }
  fs::path pub() const { return dir_.path() / "publisher.pub"; }
  fs::path signature() const { return dir_.path() / "signature"; }

  ToolRun sign() {
    return helm_plugin("sign --key " + quote(key()) + " --manifest " + quote(manifest()) +
                       " --library " + quote(library()) + " --out " + quote(signature()));
  }
  ToolRun verify(const fs::path& trusted) {
    return helm_plugin("verify --pub " + quote(trusted) + " --manifest " + quote(manifest()) +
                       " --library " + quote(library()) + " --sig " + quote(signature()));
  }

  TempDir dir_;
};

TEST_F(HelmPluginToolTest, KeygenWritesAnOwnerOnlySecretKeyAndAPublicKey) {
  struct stat info {};
  ASSERT_EQ(::stat(key().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600U);
  EXPECT_EQ(read_file(key()).rfind("helm-ed25519-secret:", 0), 0U);
  EXPECT_EQ(read_file(pub()).rfind("helm-ed25519:", 0), 0U);
}

TEST_F(HelmPluginToolTest, ASignedPluginVerifies) {
  const ToolRun signed_run = sign();
  ASSERT_EQ(signed_run.exit_code, 0) << signed_run.output;
  const ToolRun verified = verify(pub());
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_NE(verified.output.find("OK: "), std::string::npos) << verified.output;
  const ToolRun id = helm_plugin("key-id --pub " + quote(pub()));
  ASSERT_EQ(id.exit_code, 0);
  EXPECT_NE(verified.output.find(id.output.substr(0, 16)), std::string::npos)
      << "verify names the signing key id";
}

TEST_F(HelmPluginToolTest, FlippingOneByteOfTheLibraryFailsVerification) {
  ASSERT_EQ(sign().exit_code, 0);
  std::string bytes = read_file(library());
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  write_file(library(), bytes);
  const ToolRun verified = verify(pub());
  EXPECT_EQ(verified.exit_code, 1) << verified.output;
  EXPECT_NE(verified.output.find("FAILED"), std::string::npos) << verified.output;
  EXPECT_NE(verified.output.find("the library changed after signing"), std::string::npos)
      << verified.output;
}

TEST_F(HelmPluginToolTest, EditingTheManifestFailsVerification) {
  ASSERT_EQ(sign().exit_code, 0);
  write_file(manifest(), read_file(manifest()) + " ");
  const ToolRun verified = verify(pub());
  EXPECT_EQ(verified.exit_code, 1) << verified.output;
  EXPECT_NE(verified.output.find("manifest.json changed after signing"), std::string::npos)
      << verified.output;
}

TEST_F(HelmPluginToolTest, ASignatureByAnotherKeyIsNotTrusted) {
  ASSERT_EQ(sign().exit_code, 0);
  ASSERT_EQ(helm_plugin("keygen --out " + quote(dir_.path() / "other")).exit_code, 0);
  const ToolRun verified = verify(dir_.path() / "other.pub");
  EXPECT_EQ(verified.exit_code, 1) << verified.output;
  EXPECT_NE(verified.output.find("not a trusted publisher key"), std::string::npos)
      << verified.output;
}

TEST_F(HelmPluginToolTest, SigningWithAGroupReadableKeyIsRefused) {
  fs::permissions(key(), fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  const ToolRun signed_run = sign();
  EXPECT_EQ(signed_run.exit_code, 1) << signed_run.output;
  EXPECT_NE(signed_run.output.find("chmod 600"), std::string::npos) << signed_run.output;
  EXPECT_FALSE(fs::exists(signature()));
}

TEST_F(HelmPluginToolTest, KeygenRefusesToOverwriteAKeyUnlessForced) {
  const std::string before = read_file(key());
  const ToolRun again = helm_plugin("keygen --out " + quote(dir_.path() / "publisher"));
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("refusing to overwrite"), std::string::npos) << again.output;
  EXPECT_EQ(read_file(key()), before);
  EXPECT_EQ(helm_plugin("keygen --force --out " + quote(dir_.path() / "publisher")).exit_code, 0);
  EXPECT_NE(read_file(key()), before);
}

TEST(HelmPluginTool, UsageErrorsExitWithTwo) {
  EXPECT_EQ(helm_plugin("").exit_code, 2);
  EXPECT_EQ(helm_plugin("frobnicate").exit_code, 2);
  const ToolRun missing = helm_plugin("sign --key k.key");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("missing --manifest"), std::string::npos) << missing.output;
  EXPECT_EQ(helm_plugin("help").exit_code, 0);
}

}  // namespace
