#include "helm/vault/master_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace helm::vault {
namespace {

namespace fs = std::filesystem;

// 32 known bytes 0x01..0x20 in the three encodings the loaders accept.
std::string key_hex() {
  return "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
}
std::string key_base64() {
  return "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
}

std::string raw_key() {
  std::string raw;
  for (int i = 1; i <= 32; ++i) {
    raw.push_back(static_cast<char>(i));
  }
  return raw;
}

class MasterKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "helm-vault-key-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Writes `contents` to a new file in the test directory with exactly `mode`.
  fs::path write_key_file(const std::string& contents, mode_t mode,
                          const std::string& name = "master.key") {
    fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << contents;
    fs::permissions(path, static_cast<fs::perms>(mode), fs::perm_options::replace);
    return path;
  }

  // POSIX read rather than istreambuf_iterator, which trips GCC 12's -Wnull-dereference.
  static std::string read_file(const fs::path& path) {
    std::string contents;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    if (fd < 0) {
      return contents;
    }
    char chunk[256];
    ssize_t got = 0;
    while ((got = ::read(fd, chunk, sizeof chunk)) > 0) {
      contents.append(chunk, static_cast<std::size_t>(got));
    }
    ::close(fd);
    return contents;
  }

  static mode_t mode_of(const fs::path& path) {
    struct stat status {};
    EXPECT_EQ(::stat(path.c_str(), &status), 0);
    return status.st_mode & 07777;
  }

  fs::path dir_;
};

std::string check_value_of_known_key() {
  return MasterKey::from_bytes(bytes_of(raw_key())).value().check_value();
}

TEST_F(MasterKeyFileTest, LoadsRawThirtyTwoByteKeyFileWithMode0600) {
  const auto key = MasterKey::from_file(write_key_file(raw_key(), 0600));
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(key->check_value(), check_value_of_known_key());
}

TEST_F(MasterKeyFileTest, LoadsHexKeyFileWithOrWithoutTrailingNewline) {
  for (const std::string& contents : {key_hex(), key_hex() + "\n", key_hex() + "\r\n"}) {
    const auto key = MasterKey::from_file(write_key_file(contents, 0600));
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_EQ(key->check_value(), check_value_of_known_key());
  }
}

TEST_F(MasterKeyFileTest, LoadsOwnerReadOnlyKeyFile) {
  EXPECT_TRUE(MasterKey::from_file(write_key_file(key_hex(), 0400)));
}

TEST_F(MasterKeyFileTest, RefusesWorldReadableKeyFileNamingTheFileAndTheChmodFix) {
  const fs::path path = write_key_file(key_hex(), 0644);
  const auto key = MasterKey::from_file(path);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyFileUnsafe);
  EXPECT_NE(key.error().message.find(path.string()), std::string::npos) << key.error().message;
  EXPECT_NE(key.error().message.find("chmod 600"), std::string::npos) << key.error().message;
  EXPECT_NE(key.error().message.find("0644"), std::string::npos) << key.error().message;
}

TEST_F(MasterKeyFileTest, RefusesKeyFileWithAnyGroupOrOtherPermissionBit) {
  for (const mode_t mode : {0640, 0620, 0610, 0604, 0602, 0601, 0660, 0666, 0700 | 0077}) {
    SCOPED_TRACE(mode);
    const auto key = MasterKey::from_file(write_key_file(key_hex(), mode));
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, VaultErrorCode::kKeyFileUnsafe);
  }
}

TEST_F(MasterKeyFileTest, RefusesKeyFileOfWrongLength) {
  for (const std::string& contents :
       {raw_key().substr(0, 31), raw_key() + "x", key_hex().substr(0, 63), key_hex() + "0",
        key_hex() + "\n\n", key_hex() + key_hex(), std::string()}) {
    SCOPED_TRACE(contents.size());
    const auto key = MasterKey::from_file(write_key_file(contents, 0600));
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, VaultErrorCode::kKeyMalformed);
    EXPECT_NE(key.error().message.find("64 hex characters"), std::string::npos);
  }
}

TEST_F(MasterKeyFileTest, RefusesNonHexKeyFileWithoutEchoingItsContents) {
  const std::string contents = "not-hex-" + key_hex().substr(8);
  const auto key = MasterKey::from_file(write_key_file(contents, 0600));
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyMalformed);
  EXPECT_EQ(key.error().message.find(key_hex().substr(8)), std::string::npos);
}

TEST_F(MasterKeyFileTest, RefusesAllZeroKeyFile) {
  const auto key = MasterKey::from_file(write_key_file(std::string(64, '0'), 0600));
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyMalformed);
}

TEST_F(MasterKeyFileTest, ReportsMissingKeyFileAsKeyNotFound) {
  const auto key = MasterKey::from_file(dir_ / "absent.key");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyNotFound);
  EXPECT_NE(key.error().message.find("absent.key"), std::string::npos);
}

TEST_F(MasterKeyFileTest, RefusesDirectoryInPlaceOfKeyFile) {
  const fs::path sub = dir_ / "keydir";
  fs::create_directory(sub);
  fs::permissions(sub, fs::perms::owner_all, fs::perm_options::replace);
  const auto key = MasterKey::from_file(sub);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyFileUnsafe);
}

TEST_F(MasterKeyFileTest, DevKeyFileIsCreatedWithMode0600EvenUnderPermissiveUmask) {
  const fs::path path = dir_ / "dev.key";
  const mode_t previous = ::umask(0);
  const auto key = MasterKey::generate_dev_key(path);
  ::umask(previous);
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(mode_of(path), 0600U);
  const std::string contents = read_file(path);
  EXPECT_EQ(contents.size(), 65U);
  EXPECT_EQ(contents.back(), '\n');
}

TEST_F(MasterKeyFileTest, DevKeyFileLoadsBackAsTheSameKey) {
  const fs::path path = dir_ / "dev.key";
  const auto generated = MasterKey::generate_dev_key(path);
  ASSERT_TRUE(generated) << generated.error().message;
  const auto loaded = MasterKey::from_file(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->check_value(), generated->check_value());
}

TEST_F(MasterKeyFileTest, DevKeyGenerationNeverOverwritesAnExistingFile) {
  const fs::path path = write_key_file(key_hex() + "\n", 0600);
  const auto key = MasterKey::generate_dev_key(path);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyFileExists);
  EXPECT_NE(key.error().message.find(path.string()), std::string::npos);
  EXPECT_EQ(read_file(path), key_hex() + "\n");

  const fs::path generated = dir_ / "dev.key";
  const auto first = MasterKey::generate_dev_key(generated);
  ASSERT_TRUE(first);
  const std::string first_contents = read_file(generated);
  const auto second = MasterKey::generate_dev_key(generated);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, VaultErrorCode::kKeyFileExists);
  EXPECT_EQ(read_file(generated), first_contents);
}

TEST_F(MasterKeyFileTest, DevKeyGenerationDoesNotFollowASymlink) {
  const fs::path target = dir_ / "elsewhere.key";
  const fs::path link = dir_ / "dev.key";
  fs::create_symlink(target, link);
  const auto key = MasterKey::generate_dev_key(link);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyFileExists);
  EXPECT_FALSE(fs::exists(target));
}

class MasterKeyEnvTest : public ::testing::Test {
 protected:
  static constexpr const char* kVariable = "HELM_VAULT_TEST_MASTER_KEY";
  // Tests run on one thread, so touching the environment here is safe.
  void TearDown() override { ::unsetenv(kVariable); }  // NOLINT(concurrency-mt-unsafe)
  static void set(const std::string& value) {
    ASSERT_EQ(::setenv(kVariable, value.c_str(), 1), 0);  // NOLINT(concurrency-mt-unsafe)
  }
};

TEST_F(MasterKeyEnvTest, LoadsHexAndBase64EncodingsOfTheSameKey) {
  for (const std::string& value : {key_hex(), key_hex() + "\n", key_base64(),
                                   key_base64().substr(0, key_base64().size() - 1)}) {
    SCOPED_TRACE(value.size());
    set(value);
    const auto key = MasterKey::from_env(kVariable);
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_EQ(key->check_value(), check_value_of_known_key());
  }
}

TEST_F(MasterKeyEnvTest, ReportsUnsetOrEmptyVariableAsKeyNotFound) {
  ::unsetenv(kVariable);  // NOLINT(concurrency-mt-unsafe)
  auto key = MasterKey::from_env(kVariable);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyNotFound);
  EXPECT_NE(key.error().message.find(kVariable), std::string::npos);
  set("");
  key = MasterKey::from_env(kVariable);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, VaultErrorCode::kKeyNotFound);
}

TEST_F(MasterKeyEnvTest, RefusesMalformedValueWithoutEchoingIt) {
  for (const std::string& value :
       {key_hex().substr(2), key_base64().substr(4), "g" + key_hex().substr(1),
        std::string(64, '0'), "AA" + key_base64().substr(2) + "=="}) {
    SCOPED_TRACE(value.size());
    set(value);
    const auto key = MasterKey::from_env(kVariable);
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, VaultErrorCode::kKeyMalformed);
    EXPECT_EQ(key.error().message.find(value), std::string::npos);
  }
}

TEST(MasterKeyTest, CheckValueIsThirtyTwoLowerCaseHexCharacters) {
  const MasterKey key = MasterKey::generate();
  ASSERT_EQ(key.check_value().size(), kCheckValueHexChars);
  EXPECT_EQ(key.check_value().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(MasterKeyTest, CheckValueIsStableForTheSameKeyAndDiffersForAnother) {
  EXPECT_EQ(check_value_of_known_key(), check_value_of_known_key());
  std::string other = raw_key();
  other[0] ^= 1;
  EXPECT_NE(MasterKey::from_bytes(bytes_of(other)).value().check_value(),
            check_value_of_known_key());
  EXPECT_NE(MasterKey::generate().check_value(), MasterKey::generate().check_value());
}

TEST(MasterKeyTest, CheckValueRevealsNoKeyBytes) {
  const std::string check_value = check_value_of_known_key();
  EXPECT_EQ(key_hex().find(check_value.substr(0, 8)), std::string::npos);
  EXPECT_NE(check_value, key_hex().substr(0, kCheckValueHexChars));
}

TEST(MasterKeyTest, VerifyCheckValueDetectsAWrongKey) {
  const MasterKey right = MasterKey::generate();
  const MasterKey wrong = MasterKey::generate();
  EXPECT_TRUE(right.verify_check_value(right.check_value()));
  const auto result = wrong.verify_check_value(right.check_value());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, VaultErrorCode::kWrongMasterKey);
  EXPECT_NE(result.error().message.find(right.check_value()), std::string::npos);
  EXPECT_FALSE(right.verify_check_value(""));
}

TEST(MasterKeyTest, FromBytesRefusesWrongLengthAndAllZeroKeys) {
  EXPECT_EQ(MasterKey::from_bytes(bytes_of(raw_key().substr(1))).error().code,
            VaultErrorCode::kKeyMalformed);
  EXPECT_EQ(MasterKey::from_bytes(bytes_of(std::string(32, '\0'))).error().code,
            VaultErrorCode::kKeyMalformed);
}

}  // namespace
}  // namespace helm::vault
