/// @brief Plugin bundles: the one file a publisher ships and an operator installs
/// (`helm-plugin pack`, `POST /api/v1/plugins`). Shared by the tool and the hub so both agree by
/// construction on what a bundle is.
///
/// A bundle is an uncompressed POSIX tar archive (ustar; GNU tar's default format reads the
/// same) holding exactly three regular files at its top level:
///   - `manifest.json`,
///   - the library the manifest's "library" member names (e.g. `acme-psa.so`),
///   - `signature` (from `helm-plugin sign`) over those two.
/// A leading "./" on member names and a "./" directory member are accepted (what
/// `tar -cf b.tar -C dir .` writes). Anything else is refused with a sentence saying what:
/// directories, links, devices, paths with '/' or "..", duplicate names, extra files, sizes over
/// the limits, bad header checksums, an archive cut short.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "helm/signing/plugin_signature.hpp"

namespace helm::signing {

/// The names every bundle holds besides the library.
inline constexpr std::string_view kBundleManifest = "manifest.json";
inline constexpr std::string_view kBundleSignature = "signature";

struct BundleFile {
  std::string name;     ///< a plain file name: no '/', not "." or ".."
  std::string content;  ///< the bytes
};

struct BundleLimits {
  std::size_t max_files = 3;
  std::size_t max_total_bytes = 64u * 1024 * 1024;  ///< content bytes summed over every file
};

/// Parses `archive` into its files (in archive order). Checks only the archive's shape — names,
/// types, sizes, checksums — not what the files say; a caller checks manifest and signature.
Result<std::vector<BundleFile>> read_bundle(std::string_view archive,
                                            const BundleLimits& limits = {});

/// Writes `files` as a ustar archive (mode 0644, owner 0/0, mtime 0, so the same files always
/// give the same bytes). Names must be plain file names of at most 100 bytes.
Result<std::string> write_bundle(const std::vector<BundleFile>& files);

}  // namespace helm::signing
