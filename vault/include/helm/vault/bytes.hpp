/// @brief Byte containers and hex encoding for non-secret vault data (nonces, ciphertexts, hashes).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace helm::vault {

/// Owned bytes that are safe to store and copy: nonces, ciphertexts, digests. Never plaintext.
using Bytes = std::vector<std::uint8_t>;

/// A read-only view of bytes owned elsewhere.
using ByteView = std::span<const std::uint8_t>;

/// Lower-case hex of public bytes. Do not use on key material or plaintext.
std::string to_hex(ByteView bytes);

/// Views the characters of `text` as bytes, without copying.
inline ByteView bytes_of(std::string_view text) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace helm::vault
