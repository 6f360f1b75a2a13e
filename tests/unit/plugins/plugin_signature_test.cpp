// helm_plugin_signature: keys, the signed message, signatures and their verification.
#include "helm/signing/plugin_signature.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
namespace signing = helm::signing;
using helm::plugins::testing::TempDir;
using helm::plugins::testing::write_file;

signing::PluginDigest digest_of(const std::string& manifest, const std::string& library) {
  return {signing::sha256(manifest), signing::sha256(library)};
}

TEST(PluginSignature, TheSignedMessageIsDomainSeparatedAndLengthPrefixed) {
  signing::PluginDigest digest;
  digest.manifest.fill(0x11);
  digest.library.fill(0x22);
  const std::vector<std::uint8_t> message = signing::signing_message(digest);
  const std::string domain = "helm-plugin-signature-v1";
  ASSERT_EQ(message.size(), 8 + domain.size() + 8 + 32 + 8 + 32);
  EXPECT_EQ(std::vector<std::uint8_t>(message.begin(), message.begin() + 8),
            std::vector<std::uint8_t>({0, 0, 0, 0, 0, 0, 0, 24}));
  EXPECT_EQ(std::string(message.begin() + 8, message.begin() + 8 + 24), domain);
  EXPECT_EQ(message[8 + 24 + 7], 32);
  EXPECT_EQ(message[8 + 24 + 8], 0x11);
  EXPECT_EQ(message[8 + 24 + 8 + 32 + 7], 32);
  EXPECT_EQ(message.back(), 0x22);
}

TEST(PluginSignature, ASignatureVerifiesWithTheTrustedKeyThatMadeIt) {
  auto key = signing::SecretKey::generate();
  ASSERT_TRUE(key);
  const auto digest = digest_of("{\"name\":\"x\"}", "ELF bytes");
  const signing::Signature signature = signing::sign(key.value(), digest);
  const auto signer = signing::verify(signature, digest, {key.value().public_key()});
  ASSERT_TRUE(signer) << signer.error().message;
  EXPECT_EQ(signer.value(), key.value().public_key());
  EXPECT_EQ(signer.value().id().size(), 16U);
}

TEST(PluginSignature, ALibraryChangedAfterSigningIsABadSignatureNamingTheLibrary) {
  auto key = signing::SecretKey::generate();
  const signing::Signature signature = signing::sign(key.value(), digest_of("manifest", "library"));
  const auto result =
      signing::verify(signature, digest_of("manifest", "library!"), {key.value().public_key()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, signing::SigningErrorCode::kBadSignature);
  EXPECT_NE(result.error().message.find("the library changed after signing"), std::string::npos)
      << result.error().message;
}

TEST(PluginSignature, AManifestChangedAfterSigningIsABadSignatureNamingTheManifest) {
  auto key = signing::SecretKey::generate();
  const signing::Signature signature = signing::sign(key.value(), digest_of("manifest", "library"));
  const auto result =
      signing::verify(signature, digest_of("manifest ", "library"), {key.value().public_key()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, signing::SigningErrorCode::kBadSignature);
  EXPECT_NE(result.error().message.find("manifest.json changed after signing"), std::string::npos)
      << result.error().message;
}

TEST(PluginSignature, AValidSignatureByAnUntrustedKeyIsRefusedNamingTheKey) {
  auto publisher = signing::SecretKey::generate();
  auto other = signing::SecretKey::generate();
  const auto digest = digest_of("m", "l");
  const auto result = signing::verify(signing::sign(publisher.value(), digest), digest,
                                      {other.value().public_key()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, signing::SigningErrorCode::kUntrustedSigner);
  EXPECT_NE(result.error().message.find(publisher.value().public_key().id()), std::string::npos);
}

TEST(PluginSignature, ASignatureClaimingAnotherKeyDoesNotVerify) {
  auto publisher = signing::SecretKey::generate();
  auto forger = signing::SecretKey::generate();
  const auto digest = digest_of("m", "l");
  signing::Signature forged = signing::sign(forger.value(), digest);
  forged.key = publisher.value().public_key();  // claims to come from the trusted publisher
  const auto result = signing::verify(forged, digest, {publisher.value().public_key()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, signing::SigningErrorCode::kBadSignature);
}

TEST(PluginSignature, SignatureFilesRoundTripAndMalformedOnesAreRejected) {
  auto key = signing::SecretKey::generate();
  const auto digest = digest_of("m", "l");
  const signing::Signature signature = signing::sign(key.value(), digest);
  const auto parsed = signing::Signature::parse(signature.to_text());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value().bytes, signature.bytes);
  EXPECT_TRUE(signing::verify(parsed.value(), digest, {key.value().public_key()}));

  EXPECT_EQ(signing::Signature::parse("not json").error().code,
            signing::SigningErrorCode::kMalformedSignature);
  EXPECT_EQ(signing::Signature::parse(R"({"format": "something-else"})").error().code,
            signing::SigningErrorCode::kMalformedSignature);
  nlohmann::json wrong_id = nlohmann::json::parse(signature.to_text());
  wrong_id["key_id"] = "0000000000000000";
  EXPECT_EQ(signing::Signature::parse(wrong_id.dump()).error().code,
            signing::SigningErrorCode::kMalformedSignature);
}

TEST(PluginSignature, PublicKeysParseOnlyInTheirOwnFormat) {
  auto key = signing::SecretKey::generate();
  const std::string text = key.value().public_key().to_text();
  EXPECT_EQ(text.rfind("helm-ed25519:", 0), 0U);
  const auto parsed = signing::PublicKey::parse("  " + text + "\n");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.value(), key.value().public_key());
  EXPECT_FALSE(signing::PublicKey::parse("ssh-ed25519 AAAA"));
  EXPECT_FALSE(signing::PublicKey::parse("helm-ed25519:c2hvcnQ="));
}

TEST(PluginSignature, SecretKeyFilesAreWrittenOwnerOnlyAndUnsafeOnesRefused) {
  TempDir dir;
  const fs::path file = dir.path() / "publisher.key";
  auto key = signing::SecretKey::generate();
  ASSERT_TRUE(key.value().save(file, false));
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600U);

  const auto again = key.value().save(file, false);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, signing::SigningErrorCode::kKeyFileExists);

  const auto loaded = signing::SecretKey::load(file);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded.value().public_key(), key.value().public_key());

  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  const auto unsafe = signing::SecretKey::load(file);
  ASSERT_FALSE(unsafe);
  EXPECT_EQ(unsafe.error().code, signing::SigningErrorCode::kKeyFileUnsafe);
  EXPECT_NE(unsafe.error().message.find("chmod 600"), std::string::npos);

  write_file(dir.path() / "garbage.key", "helm-ed25519-secret:not-base64!\n");
  fs::permissions(dir.path() / "garbage.key", fs::perms::owner_read);
  EXPECT_EQ(signing::SecretKey::load(dir.path() / "garbage.key").error().code,
            signing::SigningErrorCode::kMalformedKey);
}

TEST(PluginSignature, FileDigestsMatchInMemoryDigests) {
  TempDir dir;
  std::string content(200000, '\0');
  for (std::size_t i = 0; i < content.size(); ++i)
    content[i] = static_cast<char>(i * 7);
  write_file(dir.path() / "lib.so", content);
  const auto digest = signing::digest_plugin("manifest", dir.path() / "lib.so");
  ASSERT_TRUE(digest);
  EXPECT_EQ(digest.value().library, signing::sha256(content));
  EXPECT_EQ(digest.value().manifest, signing::sha256("manifest"));
  EXPECT_EQ(signing::digest_plugin("m", dir.path() / "missing.so").error().code,
            signing::SigningErrorCode::kIoError);
}

}  // namespace
