// helm-plugin: creates publisher keys, signs plugins, checks plugin signatures, packs bundles.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "helm/signing/plugin_bundle.hpp"
#include "helm/signing/plugin_signature.hpp"

namespace {

namespace signing = helm::signing;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage =
    R"(helm-plugin: create publisher keys, sign plugins, check signatures.

usage:
  helm-plugin keygen --out PREFIX [--force]
      Write PREFIX.key (secret key, mode 0600) and PREFIX.pub (public key).
  helm-plugin sign --key KEY --manifest MANIFEST --library LIBRARY --out SIGNATURE
      Sign MANIFEST (manifest.json) and LIBRARY (the plugin's .so) with KEY.
  helm-plugin verify --pub PUB [--pub PUB ...] --manifest MANIFEST --library LIBRARY
                     --sig SIGNATURE
      Check that SIGNATURE covers MANIFEST and LIBRARY as they are now and was made by one of
      the trusted public keys PUB.
  helm-plugin key-id --pub PUB
      Print the id of a public key.
  helm-plugin pack --dir DIR [--key KEY] --out BUNDLE
      Write the installable bundle of the plugin in DIR (manifest.json, the library it names,
      signature): an uncompressed tar archive for POST /api/v1/plugins (helmctl plugins
      install). With --key, sign first (DIR is left unchanged); without, DIR/signature is used
      and must match the files.

exit status: 0 success, 1 failure (including a signature that does not verify), 2 usage error.
)";

/// Options as "--name value" pairs; a name may repeat.
using Options = std::multimap<std::string, std::string>;

bool parse_options(int argc, char** argv, int first, Options& out, std::string& error) {
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--force") {
      out.emplace(arg, "");
      continue;
    }
    if (arg.rfind("--", 0) != 0 || i + 1 >= argc) {
      error = "unexpected argument \"" + arg + "\"";
      return false;
    }
    out.emplace(arg, argv[++i]);
  }
  return true;
}

bool single(const Options& options, const std::string& name, std::string& value,
            std::string& error) {
  const auto count = options.count(name);
  if (count != 1) {
    error = count == 0 ? "missing " + name : name + " given more than once";
    return false;
  }
  value = options.find(name)->second;
  return true;
}

bool read_file(const std::string& path, std::string& content, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path;
    return false;
  }
  content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    error = "cannot read " + path;
    return false;
  }
  return true;
}

/// Writes `content` to a temporary file beside `path`, then renames it into place.
bool write_file(const std::string& path, const std::string& content, std::string& error) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) {
      error = "cannot write " + temporary;
      std::remove(temporary.c_str());
      return false;
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    error = "cannot rename " + temporary + " to " + path;
    std::remove(temporary.c_str());
    return false;
  }
  return true;
}

int fail(const std::string& message) {
  std::cerr << "helm-plugin: " << message << "\n";
  return kExitFailure;
}

int keygen(const Options& options) {
  std::string prefix;
  std::string error;
  if (!single(options, "--out", prefix, error)) {
    std::cerr << "helm-plugin keygen: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  const bool force = options.count("--force") > 0;
  signing::Result<signing::SecretKey> key = signing::SecretKey::generate();
  if (!key) return fail(key.error().message);
  const signing::Result<bool> saved = key.value().save(prefix + ".key", force);
  if (!saved) return fail(saved.error().message);
  const signing::PublicKey public_key = key.value().public_key();
  if (!write_file(prefix + ".pub", public_key.to_text() + "\n", error)) return fail(error);
  std::cout << "wrote " << prefix << ".key (secret, mode 0600) and " << prefix << ".pub\n"
            << "key id: " << public_key.id() << "\n"
            << "public key: " << public_key.to_text() << "\n";
  return kExitOk;
}

int sign(const Options& options) {
  std::string key_file;
  std::string manifest_file;
  std::string library_file;
  std::string out_file;
  std::string error;
  if (!single(options, "--key", key_file, error) ||
      !single(options, "--manifest", manifest_file, error) ||
      !single(options, "--library", library_file, error) ||
      !single(options, "--out", out_file, error)) {
    std::cerr << "helm-plugin sign: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  signing::Result<signing::SecretKey> key = signing::SecretKey::load(key_file);
  if (!key) return fail(key.error().message);
  std::string manifest;
  if (!read_file(manifest_file, manifest, error)) return fail(error);
  const signing::Result<signing::PluginDigest> digest =
      signing::digest_plugin(manifest, library_file);
  if (!digest) return fail(digest.error().message);
  const signing::Signature signature = signing::sign(key.value(), digest.value());
  if (!write_file(out_file, signature.to_text(), error)) return fail(error);
  std::cout << "signed " << manifest_file << " and " << library_file << " with key "
            << signature.key.id() << " -> " << out_file << "\n";
  return kExitOk;
}

int verify(const Options& options) {
  std::string manifest_file;
  std::string library_file;
  std::string signature_file;
  std::string error;
  if (!single(options, "--manifest", manifest_file, error) ||
      !single(options, "--library", library_file, error) ||
      !single(options, "--sig", signature_file, error)) {
    std::cerr << "helm-plugin verify: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  if (options.count("--pub") == 0) {
    std::cerr << "helm-plugin verify: missing --pub (a trusted public key)\n" << kUsage;
    return kExitUsage;
  }
  std::vector<signing::PublicKey> trusted;
  const auto [first, last] = options.equal_range("--pub");
  for (auto it = first; it != last; ++it) {
    signing::Result<signing::PublicKey> key = signing::PublicKey::load(it->second);
    if (!key) return fail(key.error().message);
    trusted.push_back(key.value());
  }
  const signing::Result<signing::Signature> signature = signing::Signature::load(signature_file);
  if (!signature) return fail("FAILED: " + signature.error().message);
  std::string manifest;
  if (!read_file(manifest_file, manifest, error)) return fail("FAILED: " + error);
  const signing::Result<signing::PluginDigest> digest =
      signing::digest_plugin(manifest, library_file);
  if (!digest) return fail("FAILED: " + digest.error().message);
  const signing::Result<signing::PublicKey> signer =
      signing::verify(signature.value(), digest.value(), trusted);
  if (!signer) return fail("FAILED: " + signer.error().message);
  std::cout << "OK: " << library_file << " and " << manifest_file << " are signed by key "
            << signer.value().id() << "\n";
  return kExitOk;
}

int key_id(const Options& options) {
  std::string pub;
  std::string error;
  if (!single(options, "--pub", pub, error)) {
    std::cerr << "helm-plugin key-id: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  const signing::Result<signing::PublicKey> key = signing::PublicKey::load(pub);
  if (!key) return fail(key.error().message);
  std::cout << key.value().id() << "\n";
  return kExitOk;
}

int pack(const Options& options) {
  std::string dir;
  std::string out_file;
  std::string error;
  if (!single(options, "--dir", dir, error) || !single(options, "--out", out_file, error)) {
    std::cerr << "helm-plugin pack: " << error << "\n" << kUsage;
    return kExitUsage;
  }
  std::string manifest_text;
  if (!read_file(dir + "/manifest.json", manifest_text, error)) return fail(error);
  const nlohmann::json manifest = nlohmann::json::parse(manifest_text, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("library") || !manifest["library"].is_string()) {
    return fail(dir + "/manifest.json is not a JSON object with a \"library\" string");
  }
  const std::string library_name = manifest["library"].get<std::string>();
  if (library_name.empty() || library_name.find('/') != std::string::npos ||
      library_name == signing::kBundleManifest || library_name == signing::kBundleSignature) {
    return fail("\"library\" in manifest.json must be a plain file name other than " +
                std::string(signing::kBundleManifest) + " and " +
                std::string(signing::kBundleSignature));
  }
  const std::string library_file = dir + "/" + library_name;
  const signing::Result<signing::PluginDigest> digest =
      signing::digest_plugin(manifest_text, library_file);
  if (!digest) return fail(digest.error().message);

  std::string signature_text;
  std::string signer_id;
  if (options.count("--key") > 0) {
    std::string key_file;
    if (!single(options, "--key", key_file, error)) {
      std::cerr << "helm-plugin pack: " << error << "\n" << kUsage;
      return kExitUsage;
    }
    signing::Result<signing::SecretKey> key = signing::SecretKey::load(key_file);
    if (!key) return fail(key.error().message);
    const signing::Signature signature = signing::sign(key.value(), digest.value());
    signature_text = signature.to_text();
    signer_id = signature.key.id();
  } else {
    const signing::Result<signing::Signature> signature =
        signing::Signature::load(dir + "/signature");
    if (!signature) return fail(signature.error().message + " (or pass --key to sign now)");
    // Integrity only (the hub decides whom to trust): the signature must cover these files.
    const signing::Result<signing::PublicKey> signer =
        signing::verify(signature.value(), digest.value(), {signature.value().key});
    if (!signer) return fail(signer.error().message);
    if (!read_file(dir + "/signature", signature_text, error)) return fail(error);
    signer_id = signer.value().id();
  }

  std::string library;
  if (!read_file(library_file, library, error)) return fail(error);
  const signing::Result<std::string> bundle = signing::write_bundle({
      {std::string(signing::kBundleManifest), manifest_text},
      {library_name, std::move(library)},
      {std::string(signing::kBundleSignature), signature_text},
  });
  if (!bundle) return fail(bundle.error().message);
  if (!write_file(out_file, bundle.value(), error)) return fail(error);
  std::cout << "packed " << manifest.value("name", std::string("?")) << " "
            << manifest.value("version", std::string("?")) << " signed by key " << signer_id
            << " -> " << out_file << " (" << bundle.value().size() << " bytes)\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string command = argv[1];
  if (command == "help" || command == "--help" || command == "-h") {
    std::cout << kUsage;
    return kExitOk;
  }
  Options options;
  std::string error;
  if (!parse_options(argc, argv, 2, options, error)) {
    std::cerr << "helm-plugin " << command << ": " << error << "\n" << kUsage;
    return kExitUsage;
  }
  try {
    if (command == "keygen") return keygen(options);
    if (command == "sign") return sign(options);
    if (command == "verify") return verify(options);
    if (command == "key-id") return key_id(options);
    if (command == "pack") return pack(options);
  } catch (const std::exception& exception) {
    return fail(std::string("unexpected error: ") + exception.what());
  }
  std::cerr << "helm-plugin: unknown command \"" << command << "\"\n" << kUsage;
  return kExitUsage;
}
