// The helm-plugin command-line tool, run as a user would: keygen, sign, verify, and tamper
// detection on a real plugin library; bundles (pack, and the reader the hub shares).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "helm/signing/plugin_bundle.hpp"
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

// ---- bundles: helm-plugin pack and the reader the hub uses ----

TEST_F(HelmPluginToolTest, PackWithAKeyWritesATarThatSystemTarAndTheReaderAgreeOn) {
  const fs::path bundle = dir_.path() / "echo.hpb";
  const ToolRun packed = helm_plugin("pack --dir " + quote(dir_.path()) + " --key " + quote(key()) +
                                     " --out " + quote(bundle));
  ASSERT_EQ(packed.exit_code, 0) << packed.output;
  EXPECT_NE(packed.output.find("packed example-echo"), std::string::npos) << packed.output;
  EXPECT_FALSE(fs::exists(signature())) << "packing with --key leaves the directory unchanged";

  // GNU tar lists exactly the three members.
  FILE* pipe = ::popen(("tar -tf " + quote(bundle) + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string listing;
  std::array<char, 1024> buffer{};
  while (const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe))
    listing.append(buffer.data(), n);
  ASSERT_EQ(::pclose(pipe), 0) << listing;
  EXPECT_EQ(listing, "manifest.json\nexample-echo.so\nsignature\n");

  const std::string archive = read_file(bundle);
  auto files = helm::signing::read_bundle(archive);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files.value().size(), 3U);
  EXPECT_EQ(files.value()[0].content, read_file(manifest()));
  EXPECT_EQ(files.value()[1].content, read_file(library()));
  // The signature inside verifies against the publisher key.
  write_file(signature(), files.value()[2].content);
  const ToolRun verified = verify(pub());
  EXPECT_EQ(verified.exit_code, 0) << verified.output;

  // The same files always make the same bytes.
  const fs::path again = dir_.path() / "again.hpb";
  fs::remove(signature());
  ASSERT_EQ(helm_plugin("pack --dir " + quote(dir_.path()) + " --key " + quote(key()) + " --out " +
                        quote(again))
                .exit_code,
            0);
  EXPECT_EQ(read_file(again), archive);
}

TEST_F(HelmPluginToolTest, PackRefusesASignatureThatNoLongerCoversTheFiles) {
  ASSERT_EQ(sign().exit_code, 0);
  const fs::path bundle = dir_.path() / "echo.hpb";
  ASSERT_EQ(helm_plugin("pack --dir " + quote(dir_.path()) + " --out " + quote(bundle)).exit_code,
            0);
  write_file(manifest(), read_file(manifest()) + " ");
  fs::remove(bundle);
  const ToolRun packed =
      helm_plugin("pack --dir " + quote(dir_.path()) + " --out " + quote(bundle));
  EXPECT_EQ(packed.exit_code, 1) << packed.output;
  EXPECT_NE(packed.output.find("manifest.json changed after signing"), std::string::npos)
      << packed.output;
  EXPECT_FALSE(fs::exists(bundle));
  const ToolRun unsigned_dir =
      helm_plugin("pack --dir " + quote(dir_.path() / "nothing") + " --out " + quote(bundle));
  EXPECT_EQ(unsigned_dir.exit_code, 1) << unsigned_dir.output;
}

TEST_F(HelmPluginToolTest, SystemTarBundlesWithADotDirectoryAreRead) {
  ASSERT_EQ(sign().exit_code, 0);
  const fs::path bundle = dir_.path() / ".." / (dir_.path().filename().string() + "-dot.tar");
  ASSERT_EQ(std::system(("tar --format=ustar -cf " + quote(bundle) + " -C " + quote(dir_.path()) +
                         " ./manifest.json ./example-echo.so ./signature")
                            .c_str()),
            0);
  auto files = helm::signing::read_bundle(read_file(bundle));
  fs::remove(bundle);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files.value().size(), 3U);
  EXPECT_EQ(files.value()[0].name, "manifest.json");
}

// The reader refuses every shape a bundle must not have, with a sentence saying what.
TEST(PluginBundle, MalformedArchivesAreRefusedWithTheReason) {
  using helm::signing::BundleFile;
  using helm::signing::read_bundle;
  using helm::signing::write_bundle;
  const std::string good =
      write_bundle({{"manifest.json", "{}"}, {"x.so", std::string(1000, 'x')}, {"signature", "s"}})
          .value();
  ASSERT_TRUE(read_bundle(good));

  auto refused = [](const std::string& archive, const std::string& says) {
    auto files = read_bundle(archive);
    ASSERT_FALSE(files) << "accepted: " << says;
    EXPECT_NE(files.error().message.find(says), std::string::npos) << files.error().message;
  };
  refused("", "is empty");
  refused(good.substr(0, 700), "multiple of 512");
  refused(good.substr(0, 1024), "cut short");
  std::string flipped = good;
  flipped[10] = 'Z';  // inside the first name: the checksum no longer matches
  refused(flipped, "checksum");
  std::string trailing = good;
  trailing[trailing.size() - 1] = 'x';
  refused(trailing, "after its end-of-archive block");
  refused(std::string(512, 'a') + std::string(1024, '\0'), "checksum");

  // Types and names, built by patching a valid header and fixing its checksum.
  auto patched = [&](std::size_t offset, const std::string& bytes) {
    std::string archive = good;
    archive.replace(offset, bytes.size(), bytes);
    unsigned sum = 0;
    for (std::size_t i = 0; i < 512; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(archive[i]);
    char field[8];
    std::snprintf(field, sizeof field, "%06o", sum);
    archive.replace(148, 6, field, 6);
    archive[154] = '\0';
    archive[155] = ' ';
    return archive;
  };
  refused(patched(156, "2"), "not a regular file");  // symlink
  refused(patched(156, "5"), "directory");
  refused(patched(156, "x"), "extended headers");
  refused(patched(0, std::string("../evil\0", 8)), "plain file names");
  refused(patched(0, std::string("dir/manifest.json\0", 18)), "plain file names");
  refused(patched(257, std::string("nope\0\0", 6)), "not a ustar archive");

  EXPECT_FALSE(read_bundle(write_bundle({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}).value()));
  helm::signing::BundleLimits small;
  small.max_total_bytes = 999;
  auto too_big = read_bundle(good, small);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message.find("larger than the limit of 999 bytes"), std::string::npos);
  EXPECT_FALSE(write_bundle({{"a", "1"}, {"a", "2"}}));
  EXPECT_FALSE(write_bundle({{"../a", "1"}}));
  // Extra zero padding after the end blocks (tar's 10 KiB records) is fine.
  EXPECT_TRUE(read_bundle(write_bundle({{"a", "1"}}).value() + std::string(8192, '\0')));
}
