/// @brief CanonicalEncoder: the deterministic, length-prefixed byte encoding behind AEAD
/// additional data and audit-record hashes.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>

#include "helm/vault/bytes.hpp"

namespace helm::vault {

/// Every field is written as a 4-byte big-endian length followed by its bytes; integers are
/// fixed-width big-endian inside such a field. Because every field carries its length, no two
/// different field sequences encode to the same bytes ("ab","c" differs from "a","bc"). This
/// encoding is a stored format: changing it breaks existing ciphertexts and audit hashes.
class CanonicalEncoder {
 public:
  CanonicalEncoder& add_string(std::string_view text) { return add_bytes(bytes_of(text)); }
  CanonicalEncoder& add_bytes(ByteView bytes);
  CanonicalEncoder& add_u32(std::uint32_t value);
  CanonicalEncoder& add_u64(std::uint64_t value);
  /// Two's complement, big-endian.
  CanonicalEncoder& add_i64(std::int64_t value);

  const Bytes& bytes() const noexcept { return out_; }
  /// Moves the encoded bytes out, leaving the encoder empty.
  Bytes take() noexcept { return std::move(out_); }

 private:
  Bytes out_;
};

}  // namespace helm::vault
