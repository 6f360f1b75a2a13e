/// @brief Certificate pins: SHA-256 of a certificate's DER encoding, parsed from hex.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace helm::agent {

using CertPin = std::array<std::uint8_t, 32>;

/// Parses 64 hex digits; colons, spaces and letter case are ignored. nullopt if malformed.
std::optional<CertPin> parse_pin(std::string_view text);

/// Lower-case hex without separators, the form the state file keeps.
std::string format_pin(const CertPin& pin);

/// SHA-256 of DER bytes.
CertPin sha256_of(std::span<const std::uint8_t> der);

}  // namespace helm::agent
