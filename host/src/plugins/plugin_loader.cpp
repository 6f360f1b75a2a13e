#include "helm/plugins/plugin_loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <array>
#include <exception>
#include <system_error>
#include <utility>

#include <boost/dll/shared_library.hpp>
#include <nlohmann/json.hpp>

namespace helm::plugins {

namespace fs = std::filesystem;

struct LoadedPlugin::Impl {
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Unloads, then deletes the staged copy: the mapping goes before the file does.
  ~Impl() {
    library.unload();
    remove_staged_copy();
  }

  // Also called right after loading when the library was refused or when
  // LoadOptions::unlink_staged_copy asks for it.
  void remove_staged_copy() noexcept {
    std::error_code ignored;
    if (!staged_library.empty()) fs::remove(staged_library, ignored);
    if (!staging_dir.empty()) fs::remove(staging_dir, ignored);
  }

  std::string name;
  std::string version;
  nlohmann::json manifest;
  fs::path directory;
  fs::path library_path;
  fs::path staging_dir;
  fs::path staged_library;
  SignerInfo signer;
  AbiVersion abi;
  helm_plugin_v1 functions{};
  boost::dll::shared_library library;
};

namespace {

constexpr std::size_t kMaxManifestBytes = 1024 * 1024;

/// Closes a file descriptor on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

LoadError error(LoadErrorCode code, const fs::path& directory, const std::string& what) {
  return {code, "plugin in " + directory.string() + ": " + what};
}

/// Reads manifest.json, refusing anything larger than a manifest can reasonably be.
Result<std::string, LoadError> read_manifest(const fs::path& directory) {
  const fs::path file = directory / "manifest.json";
  const FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return error(LoadErrorCode::kManifestMissing, directory,
                   "there is no manifest.json; every plugin directory needs one beside its "
                   "library");
    }
    return error(LoadErrorCode::kIoError, directory,
                 "cannot open manifest.json: " + std::string(std::strerror(errno)));
  }
  std::string content;
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return error(LoadErrorCode::kIoError, directory,
                   "cannot read manifest.json: " + std::string(std::strerror(errno)));
    }
    if (n == 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
    if (content.size() > kMaxManifestBytes) {
      return error(LoadErrorCode::kManifestInvalid, directory,
                   "manifest.json is larger than 1 MiB");
    }
  }
  return content;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) out += "; ";
    out += part;
  }
  return out;
}

/// Copies `source` into a new private directory under `root`, hashing the bytes on the way, so
/// the bytes verified are exactly the bytes loaded and nobody else can change them in between.
Result<signing::Sha256, LoadError> stage_library(const fs::path& directory, const fs::path& source,
                                                 const fs::path& root, LoadedPlugin::Impl& impl) {
  if (sodium_init() < 0) {
    return error(LoadErrorCode::kIoError, directory, "libsodium could not be initialized");
  }
  const FileDescriptor in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    if (errno == ENOENT) {
      return error(LoadErrorCode::kLibraryMissing, directory,
                   "the library " + source.filename().string() +
                       " named by manifest.json is missing; build the plugin or fix \"library\"");
    }
    return error(LoadErrorCode::kIoError, directory,
                 "cannot open " + source.string() + ": " + std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(in.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return error(LoadErrorCode::kLibraryMissing, directory,
                 source.string() + " is not a regular file");
  }

  std::string pattern = (root / "helm-plugin-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return error(LoadErrorCode::kIoError, directory,
                 "cannot create a staging directory under " + root.string() + ": " +
                     std::strerror(errno) + "; point the staging root at a writable directory");
  }
  impl.staging_dir = pattern;
  impl.staged_library = impl.staging_dir / source.filename();
  const FileDescriptor out(::open(impl.staged_library.c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0500));
  if (out.get() < 0) {
    return error(LoadErrorCode::kIoError, directory,
                 "cannot create " + impl.staged_library.string() + ": " + std::strerror(errno));
  }

  crypto_hash_sha256_state hash;
  crypto_hash_sha256_init(&hash);
  std::array<unsigned char, 64 * 1024> buffer{};
  for (;;) {
    const ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return error(LoadErrorCode::kIoError, directory,
                   "cannot read " + source.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    crypto_hash_sha256_update(&hash, buffer.data(), static_cast<unsigned long long>(n));
    for (ssize_t written = 0; written < n;) {
      const ssize_t w =
          ::write(out.get(), buffer.data() + written, static_cast<std::size_t>(n - written));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        return error(LoadErrorCode::kIoError, directory,
                     "cannot write " + impl.staged_library.string() + ": " + std::strerror(errno));
      }
      written += w;
    }
  }
  signing::Sha256 digest{};
  crypto_hash_sha256_final(&hash, digest.data());
  return digest;
}

Result<SignerInfo, LoadError> check_signature(const fs::path& directory,
                                              const std::string& manifest_bytes,
                                              const signing::Sha256& library_digest,
                                              const LoadOptions& options) {
  const fs::path file = directory / "signature";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    if (options.allow_unsigned) return SignerInfo{};
    return error(LoadErrorCode::kNotSigned, directory,
                 "the plugin is not signed (no signature file); sign it with `helm-plugin sign`, "
                 "or turn on allow_unsigned_plugins for development");
  }
  const signing::Result<signing::Signature> signature = signing::Signature::load(file);
  if (!signature) {
    const auto code = signature.error().code == signing::SigningErrorCode::kIoError
                          ? LoadErrorCode::kIoError
                          : LoadErrorCode::kBadSignature;
    return error(code, directory, signature.error().message);
  }
  const signing::PluginDigest digest{signing::sha256(manifest_bytes), library_digest};
  const signing::Result<signing::PublicKey> signer =
      signing::verify(signature.value(), digest, options.trusted_publisher_keys);
  if (!signer) {
    const auto code = signer.error().code == signing::SigningErrorCode::kUntrustedSigner
                          ? LoadErrorCode::kUntrustedSigner
                          : LoadErrorCode::kBadSignature;
    return error(code, directory, signer.error().message);
  }
  SignerInfo info;
  info.is_signed = true;
  info.key_id = signer.value().id();
  info.public_key = signer.value().to_text();
  return info;
}

}  // namespace

std::string_view to_string(LoadErrorCode code) noexcept {
  switch (code) {
    case LoadErrorCode::kManifestMissing:
      return "manifest_missing";
    case LoadErrorCode::kManifestInvalid:
      return "manifest_invalid";
    case LoadErrorCode::kAbiMajorUnsupported:
      return "abi_major_unsupported";
    case LoadErrorCode::kLibraryMissing:
      return "library_missing";
    case LoadErrorCode::kNotSigned:
      return "not_signed";
    case LoadErrorCode::kBadSignature:
      return "bad_signature";
    case LoadErrorCode::kUntrustedSigner:
      return "untrusted_signer";
    case LoadErrorCode::kLoadFailed:
      return "load_failed";
    case LoadErrorCode::kEntrySymbolMissing:
      return "entry_symbol_missing";
    case LoadErrorCode::kEntryInvalid:
      return "entry_invalid";
    case LoadErrorCode::kNameMismatch:
      return "name_mismatch";
    case LoadErrorCode::kIoError:
      return "io_error";
  }
  return "unknown";
}

std::string SignerInfo::describe() const {
  return is_signed ? "signed by " + key_id : "unsigned (allowed by allow_unsigned_plugins)";
}

LoadedPlugin::LoadedPlugin(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
LoadedPlugin::~LoadedPlugin() = default;

const std::string& LoadedPlugin::name() const noexcept {
  return impl_->name;
}
const std::string& LoadedPlugin::version() const noexcept {
  return impl_->version;
}
const nlohmann::json& LoadedPlugin::manifest() const noexcept {
  return impl_->manifest;
}
const fs::path& LoadedPlugin::directory() const noexcept {
  return impl_->directory;
}
const fs::path& LoadedPlugin::library_path() const noexcept {
  return impl_->library_path;
}
const fs::path& LoadedPlugin::staged_library_path() const noexcept {
  return impl_->staged_library;
}
const SignerInfo& LoadedPlugin::signer() const noexcept {
  return impl_->signer;
}
AbiVersion LoadedPlugin::abi() const noexcept {
  return impl_->abi;
}
const helm_plugin_v1& LoadedPlugin::functions() const noexcept {
  return impl_->functions;
}

namespace {

/// Step 1 of loading: the manifest is present, JSON, structurally sound, valid, and of our ABI
/// major. Fills impl's manifest, name and version; returns the manifest's bytes.
Result<std::string, LoadError> check_manifest(const fs::path& directory, const LoadOptions& options,
                                              LoadedPlugin::Impl& impl) {
  Result<std::string, LoadError> manifest_bytes = read_manifest(directory);
  if (!manifest_bytes) return std::move(manifest_bytes).error();
  try {
    impl.manifest = nlohmann::json::parse(manifest_bytes.value());
  } catch (const nlohmann::json::exception& exception) {
    return error(LoadErrorCode::kManifestInvalid, directory,
                 std::string("manifest.json is not valid JSON: ") + exception.what());
  }
  if (const auto problems = check_manifest_basics(impl.manifest); !problems.empty()) {
    return error(LoadErrorCode::kManifestInvalid, directory,
                 "manifest.json is invalid: " + join(problems));
  }
  if (options.manifest_validator) {
    if (const auto problems = options.manifest_validator(impl.manifest); !problems.empty()) {
      return error(LoadErrorCode::kManifestInvalid, directory,
                   "manifest.json is invalid: " + join(problems));
    }
  }
  impl.name = impl.manifest.at("name").get<std::string>();
  impl.version = impl.manifest.at("version").get<std::string>();
  const AbiVersion declared = *parse_abi_version(impl.manifest.at("abi").get<std::string>());
  const AbiVersion hub{HELM_PLUGIN_ABI_MAJOR, HELM_PLUGIN_ABI_MINOR};
  if (declared.major != hub.major) {
    return error(LoadErrorCode::kAbiMajorUnsupported, directory,
                 "manifest.json declares plugin ABI " + to_string(declared) +
                     ", but this hub implements plugin ABI " + to_string(hub) +
                     " and loads only major version " + std::to_string(hub.major) +
                     "; rebuild the plugin against HelmPluginSDK " + std::to_string(hub.major) +
                     ".x");
  }

  return manifest_bytes;
}

}  // namespace

Result<VerifiedPlugin, LoadError> verify_plugin(const fs::path& directory,
                                                const LoadOptions& options) {
  LoadedPlugin::Impl impl;
  impl.directory = directory;
  Result<std::string, LoadError> manifest_bytes = check_manifest(directory, options, impl);
  if (!manifest_bytes) return std::move(manifest_bytes).error();
  const fs::path library = directory / impl.manifest.at("library").get<std::string>();
  std::error_code ec;
  if (!fs::is_regular_file(library, ec)) {
    return error(LoadErrorCode::kLibraryMissing, directory,
                 "the library " + library.filename().string() +
                     " named by manifest.json is missing or not a regular file");
  }
  const signing::Result<signing::Sha256> digest = signing::sha256_file(library);
  if (!digest) return error(LoadErrorCode::kIoError, directory, digest.error().message);
  Result<SignerInfo, LoadError> signer =
      check_signature(directory, manifest_bytes.value(), digest.value(), options);
  if (!signer) return std::move(signer).error();
  return VerifiedPlugin{impl.name, impl.version, impl.manifest, std::move(signer).value()};
}

Result<std::shared_ptr<const LoadedPlugin>, LoadError> load_plugin(const fs::path& directory,
                                                                   const LoadOptions& options) {
  auto impl = std::make_unique<LoadedPlugin::Impl>();
  impl->directory = directory;

  // 1. The manifest: present, JSON, structurally sound, valid, and of our ABI major.
  Result<std::string, LoadError> manifest_bytes = check_manifest(directory, options, *impl);
  if (!manifest_bytes) return std::move(manifest_bytes).error();
  const AbiVersion hub{HELM_PLUGIN_ABI_MAJOR, HELM_PLUGIN_ABI_MINOR};

  // 2. Stage the library, hashing what is staged.
  impl->library_path = directory / impl->manifest.at("library").get<std::string>();
  std::error_code ec;
  const fs::path root =
      options.staging_root.empty() ? fs::temp_directory_path(ec) : options.staging_root;
  if (ec) {
    return error(LoadErrorCode::kIoError, directory,
                 "no temporary directory for staging: " + ec.message());
  }
  const Result<signing::Sha256, LoadError> library_digest =
      stage_library(directory, impl->library_path, root, *impl);
  if (!library_digest) return library_digest.error();

  // 3. The signature over manifest.json and the staged bytes.
  Result<SignerInfo, LoadError> signer =
      check_signature(directory, manifest_bytes.value(), library_digest.value(), options);
  if (!signer) return std::move(signer).error();
  impl->signer = std::move(signer).value();

  // 4. Load the staged copy (the plugin's static constructors run here) and read the entry.
  const std::string library_name = impl->library_path.filename().string();
  boost::dll::fs::error_code load_error;
  impl->library.load(impl->staged_library, load_error,
                     boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  // Boost.DLL reports only a generic error code; dlerror() still holds the loader's reason.
  const char* reason = load_error ? ::dlerror() : nullptr;
  if (load_error || options.unlink_staged_copy) impl->remove_staged_copy();
  if (load_error) {
    return error(LoadErrorCode::kLoadFailed, directory,
                 "the dynamic loader refused " + library_name + ": " +
                     (reason != nullptr ? std::string(reason) : load_error.message()));
  }
  if (!impl->library.has(HELM_PLUGIN_ENTRY_SYMBOL)) {
    return error(LoadErrorCode::kEntrySymbolMissing, directory,
                 library_name + " does not export " HELM_PLUGIN_ENTRY_SYMBOL
                                "; define it with HELM_EXPORT_PLUGIN (C++) or export it with "
                                "HELM_PLUGIN_EXPORT (C)");
  }
  const helm_plugin_v1* entry = nullptr;
  try {
    entry = impl->library.get<const helm_plugin_v1*()>(HELM_PLUGIN_ENTRY_SYMBOL)();
  } catch (const std::exception& exception) {
    return error(LoadErrorCode::kEntryInvalid, directory,
                 HELM_PLUGIN_ENTRY_SYMBOL "() threw an exception (the ABI forbids this): " +
                     std::string(exception.what()));
  } catch (...) {
    return error(LoadErrorCode::kEntryInvalid, directory,
                 HELM_PLUGIN_ENTRY_SYMBOL "() threw an exception (the ABI forbids this)");
  }
  if (entry == nullptr) {
    return error(LoadErrorCode::kEntryInvalid, directory,
                 HELM_PLUGIN_ENTRY_SYMBOL "() returned NULL");
  }
  impl->abi = AbiVersion{entry->abi_major, entry->abi_minor};
  if (impl->abi.major != hub.major) {
    return error(LoadErrorCode::kAbiMajorUnsupported, directory,
                 library_name + " was built for plugin ABI " + to_string(impl->abi) + " (major " +
                     std::to_string(impl->abi.major) + "), but this hub implements plugin ABI " +
                     to_string(hub) + " and loads only major version " + std::to_string(hub.major) +
                     "; rebuild the plugin against HelmPluginSDK " + std::to_string(hub.major) +
                     ".x");
  }
  if (entry->struct_size < HELM_PLUGIN_V1_0_SIZE) {
    return error(LoadErrorCode::kEntryInvalid, directory,
                 library_name + " reports an entry struct of " +
                     std::to_string(entry->struct_size) + " bytes, but ABI 1.0 needs at least " +
                     std::to_string(HELM_PLUGIN_V1_0_SIZE) + "; the library is corrupt or was " +
                     "built with a broken SDK");
  }
  // Copy what the library knows; whatever it does not know stays NULL.
  std::memcpy(&impl->functions, entry,
              std::min<std::size_t>(entry->struct_size, sizeof impl->functions));
  impl->functions.struct_size = sizeof impl->functions;
  const helm_plugin_v1& functions = impl->functions;
  if (functions.create == nullptr || functions.destroy == nullptr || functions.invoke == nullptr) {
    return error(LoadErrorCode::kEntryInvalid, directory,
                 library_name +
                     " lacks a required function (create, destroy and invoke must "
                     "not be NULL)");
  }
  const std::string reported_name =
      functions.name == nullptr ? std::string() : std::string(functions.name);
  if (reported_name != impl->name) {
    return error(LoadErrorCode::kNameMismatch, directory,
                 library_name + " calls itself \"" + reported_name +
                     "\" but manifest.json says \"" + impl->name +
                     "\"; the library and the manifest belong to different plugins");
  }
  return std::shared_ptr<const LoadedPlugin>(new LoadedPlugin(std::move(impl)));
}

}  // namespace helm::plugins
