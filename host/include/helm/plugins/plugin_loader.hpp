/// @brief Loads one plugin directory (manifest.json, signature, shared library) through
/// Boost.DLL, after checking the manifest, the signature and the ABI version, and keeps the
/// library loaded for as long as anything from it may run.
///
/// Order of checks, each with its own LoadErrorCode and a message that says what to do:
///   1. manifest.json exists, is JSON, passes check_manifest_basics() and the optional
///      validator hook (full JSON Schema validation), and declares ABI major 1;
///   2. the library it names exists; it is copied into a new private (0700) staging directory
///      (so a changed file at the same path is really loaded anew, and nobody can swap it
///      between verification and loading), hashing the bytes as they are copied;
///   3. the signature verifies over manifest.json + those bytes with a trusted publisher key
///      (or there is no signature and allow_unsigned is on);
///   4. only now is plugin code run: the staged copy is loaded (its static constructors run), the
///      helm_plugin_entry symbol is imported and called, and the entry struct is checked (ABI
///      major, struct_size, required functions, name equal to the manifest's).
/// The staged copy is deleted when the library is unloaded (or right after loading, see
/// LoadOptions::unlink_staged_copy), and at once when the plugin is refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <helm/plugin_abi.h>

#include "helm/plugins/manifest.hpp"
#include "helm/plugins/result.hpp"
#include "helm/signing/plugin_signature.hpp"

namespace helm::plugins {

/// Why a plugin was not loaded.
enum class LoadErrorCode {
  kManifestMissing,      // no manifest.json in the directory
  kManifestInvalid,      // not JSON, fails the basic checks or the validator hook
  kAbiMajorUnsupported,  // the manifest or the library declares an ABI major this hub lacks
  kLibraryMissing,       // the library the manifest names is not in the directory
  kNotSigned,            // no signature file, and unsigned plugins are not allowed
  kBadSignature,         // the signature is malformed or does not match the files
  kUntrustedSigner,      // validly signed, but not by a trusted publisher key
  kLoadFailed,           // the dynamic loader refused the library (dlerror says why)
  kEntrySymbolMissing,   // the library does not export helm_plugin_entry
  kEntryInvalid,         // the entry struct is NULL, too small, or lacks a required function
  kNameMismatch,         // the library reports another name than the manifest
  kIoError,              // reading a file or staging the library failed
};

/// Stable lower-case name, e.g. "bad_signature".
std::string_view to_string(LoadErrorCode code) noexcept;

struct LoadError {
  LoadErrorCode code;
  /// A complete sentence naming the plugin directory, what is wrong and what to do.
  std::string message;
};

/// Full validation of a parsed manifest, e.g. against manifest_schema_text() compiled with
/// helm::schema::JsonSchema. Returns one message per problem; empty means valid. Called once per
/// load, on the loading thread, before anything else is read from the plugin.
using ManifestValidator = std::function<std::vector<std::string>(const nlohmann::json& manifest)>;

struct LoadOptions {
  /// Publisher keys whose signatures are accepted.
  std::vector<signing::PublicKey> trusted_publisher_keys;
  /// Development only: load plugins that have no signature file. A signature that is present
  /// but bad or untrusted is refused regardless.
  bool allow_unsigned = false;
  /// Optional full manifest validation (see ManifestValidator).
  ManifestValidator manifest_validator;
  /// Where private staging directories (mode 0700, one per load) are created; empty means
  /// std::filesystem::temp_directory_path(). Must not be on a noexec mount. A hub killed with
  /// SIGKILL leaves its staging directories behind: prefer a root the hub owns and empties at
  /// start.
  std::filesystem::path staging_root;
  /// Delete the staged copy as soon as it is loaded instead of when it is unloaded. Nothing is
  /// then left on disk even after SIGKILL or for an abandoned instance, but debuggers,
  /// profilers and sanitizers can no longer read the plugin's symbols.
  bool unlink_staged_copy = false;
};

/// Who signed a loaded plugin.
struct SignerInfo {
  bool is_signed = false;
  /// Key id and "helm-ed25519:..." text of the signing key; empty when unsigned.
  std::string key_id;
  std::string public_key;

  /// "signed by <key id>" or "unsigned (allowed by allow_unsigned_plugins)".
  std::string describe() const;
};

/// A loaded, verified plugin library and its manifest. Immutable; shared by every instance
/// created from it.
///
/// Lifetime: holds the boost::dll::shared_library. Code from the library can only run inside a
/// call from the host into a PluginInstance or on threads the plugin started, which it joins in
/// destroy(). Every PluginInstance holds a shared_ptr to its LoadedPlugin and calls destroy()
/// before releasing it, so the library is unloaded (and its staged copy deleted) only when the
/// last instance has been destroyed and the last shared_ptr held elsewhere is gone. An instance
/// that cannot be destroyed (calls never completed) keeps its LoadedPlugin forever on purpose.
class LoadedPlugin {
 public:
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;
  ~LoadedPlugin();

  const std::string& name() const noexcept;
  const std::string& version() const noexcept;
  const nlohmann::json& manifest() const noexcept;
  const std::filesystem::path& directory() const noexcept;
  /// The library as named by the manifest, in directory().
  const std::filesystem::path& library_path() const noexcept;
  /// The private copy that was actually loaded: the library's name in the dynamic loader
  /// (dlopen RTLD_NOLOAD, /proc/self/maps), even once deleted from disk.
  const std::filesystem::path& staged_library_path() const noexcept;
  const SignerInfo& signer() const noexcept;
  /// The ABI version the library reports.
  AbiVersion abi() const noexcept;

  /// The library's entry struct as this hub knows it: copied up to the library's struct_size,
  /// so fields the library does not know are NULL. Valid while this object lives.
  const helm_plugin_v1& functions() const noexcept;

  struct Impl;

 private:
  explicit LoadedPlugin(std::unique_ptr<Impl> impl) noexcept;
  friend Result<std::shared_ptr<const LoadedPlugin>, LoadError> load_plugin(
      const std::filesystem::path& directory, const LoadOptions& options);

  std::unique_ptr<Impl> impl_;
};

/// What verify_plugin() found: a plugin directory whose manifest, ABI major and signature pass.
struct VerifiedPlugin {
  std::string name;
  std::string version;
  nlohmann::json manifest;
  SignerInfo signer;
};

/// Checks 1 and 3 of loading (manifest, ABI major, signature over manifest.json and the library
/// as they are on disk) without staging or loading anything: no plugin code runs. For installs,
/// before a directory is put where the hub loads plugins from. Thread-safe; blocks on file I/O.
Result<VerifiedPlugin, LoadError> verify_plugin(const std::filesystem::path& directory,
                                                const LoadOptions& options);

/// Loads the plugin in `directory` (see the file comment for the checks, in order). Blocks on
/// file I/O and the dynamic loader; call it from a worker thread. Thread-safe.
Result<std::shared_ptr<const LoadedPlugin>, LoadError> load_plugin(
    const std::filesystem::path& directory, const LoadOptions& options);

}  // namespace helm::plugins
