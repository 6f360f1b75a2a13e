#include "helm/signing/plugin_bundle.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <set>

namespace helm::signing {

namespace {

constexpr std::size_t kBlock = 512;

// ustar header fields: offset and length.
struct Field {
  std::size_t offset;
  std::size_t size;
};
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr std::size_t kTypeflag = 156;
constexpr Field kMagic{257, 6};
constexpr Field kVersion{263, 2};
constexpr Field kPrefix{345, 155};

SigningError malformed(std::string message) {
  return {SigningErrorCode::kMalformedBundle, "the plugin bundle " + std::move(message)};
}

/// A NUL-terminated (or full-width) text field.
std::string text_field(std::string_view block, Field field) {
  const std::string_view raw = block.substr(field.offset, field.size);
  return std::string(raw.substr(0, std::min(raw.find('\0'), raw.size())));
}

/// An octal number field (leading spaces, digits, then NUL or space). False when malformed,
/// including GNU's base-256 form, which no bundle within the limits needs.
bool octal_field(std::string_view block, Field field, std::uint64_t& out) {
  const std::string_view raw = block.substr(field.offset, field.size);
  std::size_t i = 0;
  while (i < raw.size() && raw[i] == ' ')
    ++i;
  std::uint64_t value = 0;
  std::size_t digits = 0;
  for (; i < raw.size() && raw[i] >= '0' && raw[i] <= '7'; ++i, ++digits) {
    if (value > (UINT64_MAX >> 3)) return false;
    value = (value << 3) | static_cast<std::uint64_t>(raw[i] - '0');
  }
  for (; i < raw.size(); ++i) {
    if (raw[i] != '\0' && raw[i] != ' ') return false;
  }
  out = value;
  return digits > 0;
}

std::uint64_t header_checksum(std::string_view block) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    const bool in_checksum = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.size;
    sum += in_checksum ? static_cast<unsigned char>(' ') : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

bool plain_file_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

void put_octal(std::string& block, Field field, std::uint64_t value) {
  // field.size - 1 digits, zero-padded, then NUL.
  std::string digits(field.size - 1, '0');
  for (std::size_t i = digits.size(); i-- > 0 && value != 0; value >>= 3) {
    digits[i] = static_cast<char>('0' + (value & 7));
  }
  block.replace(field.offset, digits.size(), digits);
  block[field.offset + digits.size()] = '\0';
}

}  // namespace

Result<std::vector<BundleFile>> read_bundle(std::string_view archive, const BundleLimits& limits) {
  if (archive.empty()) return malformed("is empty");
  if (archive.size() % kBlock != 0) {
    return malformed("is not a tar archive: its size is not a multiple of 512 bytes");
  }
  std::vector<BundleFile> files;
  std::set<std::string, std::less<>> names;
  std::size_t total = 0;
  std::size_t at = 0;
  for (;;) {
    if (at + kBlock > archive.size()) {
      return malformed("is cut short: the archive has no end-of-archive block");
    }
    const std::string_view block = archive.substr(at, kBlock);
    if (all_zero(block)) {
      // End of archive: whatever follows must be zero padding.
      if (!all_zero(archive.substr(at))) {
        return malformed("has data after its end-of-archive block");
      }
      break;
    }
    std::uint64_t stored_checksum = 0;
    if (!octal_field(block, kChecksum, stored_checksum) ||
        stored_checksum != header_checksum(block)) {
      return malformed("is not a tar archive, or is damaged: a header checksum does not match");
    }
    const std::string magic = text_field(block, kMagic);
    if (magic != "ustar" && magic != "ustar ") {
      return malformed("is not a ustar archive (make it with `helm-plugin pack`)");
    }
    std::string name = text_field(block, kName);
    if (const std::string prefix = text_field(block, kPrefix); !prefix.empty()) {
      name = prefix + "/" + name;
    }
    std::uint64_t size = 0;
    if (!octal_field(block, kSize, size)) {
      return malformed("has a member whose size field is not an octal number");
    }
    const char type = block[kTypeflag];
    at += kBlock;
    const std::uint64_t padded = (size + kBlock - 1) / kBlock * kBlock;
    if (padded > archive.size() - at) {
      return malformed("is cut short: member \"" + name + "\" needs " + std::to_string(size) +
                       " bytes that are not there");
    }

    std::string_view bare = name;
    while (bare.rfind("./", 0) == 0)
      bare.remove_prefix(2);
    if (type == '5') {
      if (bare.empty() || bare == "." || name == "./") {
        at += padded;
        continue;
      }
      return malformed("holds a directory (\"" + name +
                       "\"); a bundle holds only manifest.json, the library and signature at its "
                       "top level");
    }
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      return malformed(
          "uses pax or GNU extended headers; write it with `helm-plugin pack` (or "
          "`tar --format=ustar`)");
    }
    if (type != '0' && type != '\0') {
      return malformed("holds \"" + name +
                       "\", which is not a regular file (links and devices are refused)");
    }
    if (!plain_file_name(bare)) {
      return malformed("holds \"" + name +
                       "\"; member names must be plain file names at the top level");
    }
    if (names.count(bare) != 0) {
      return malformed("holds \"" + std::string(bare) + "\" twice");
    }
    if (files.size() + 1 > limits.max_files) {
      return malformed("holds more than " + std::to_string(limits.max_files) +
                       " files; it must hold only manifest.json, the library and signature");
    }
    if (size > limits.max_total_bytes - std::min<std::size_t>(total, limits.max_total_bytes)) {
      return malformed("is larger than the limit of " + std::to_string(limits.max_total_bytes) +
                       " bytes");
    }
    total += static_cast<std::size_t>(size);
    names.emplace(bare);
    files.push_back({std::string(bare), std::string(archive.substr(at, size))});
    at += padded;
  }
  return files;
}

Result<std::string> write_bundle(const std::vector<BundleFile>& files) {
  std::string out;
  std::set<std::string, std::less<>> names;
  for (const BundleFile& file : files) {
    if (!plain_file_name(file.name) || file.name.size() > kName.size) {
      return malformed("cannot hold \"" + file.name +
                       "\": names must be plain file names of at most 100 bytes");
    }
    if (!names.insert(file.name).second)
      return malformed("cannot hold \"" + file.name + "\" twice");
    std::string block(kBlock, '\0');
    std::memcpy(block.data() + kName.offset, file.name.data(), file.name.size());
    put_octal(block, kMode, 0644);
    put_octal(block, kUid, 0);
    put_octal(block, kGid, 0);
    put_octal(block, kSize, file.content.size());
    put_octal(block, kMtime, 0);
    block[kTypeflag] = '0';
    std::memcpy(block.data() + kMagic.offset, "ustar", 6);  // with its NUL
    std::memcpy(block.data() + kVersion.offset, "00", 2);
    // The checksum counts its own field as spaces; written as six digits, NUL, space.
    put_octal(block, Field{kChecksum.offset, 7}, header_checksum(block));
    block[kChecksum.offset + 7] = ' ';
    out += block;
    out += file.content;
    out.append((kBlock - file.content.size() % kBlock) % kBlock, '\0');
  }
  out.append(2 * kBlock, '\0');
  return out;
}

}  // namespace helm::signing
