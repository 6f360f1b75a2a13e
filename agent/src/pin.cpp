#include "helm/agent/pin.hpp"

#include <openssl/sha.h>

#include <cctype>

namespace helm::agent {

std::optional<CertPin> parse_pin(std::string_view text) {
  CertPin pin{};
  std::size_t nibbles = 0;
  for (const char c : text) {
    if (c == ':' || c == ' ') continue;
    int value = 0;
    if (c >= '0' && c <= '9') {
      value = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      value = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      value = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    if (nibbles >= pin.size() * 2) return std::nullopt;
    auto& byte = pin[nibbles / 2];
    byte = static_cast<std::uint8_t>(nibbles % 2 == 0 ? value << 4 : byte | value);
    ++nibbles;
  }
  if (nibbles != pin.size() * 2) return std::nullopt;
  return pin;
}

std::string format_pin(const CertPin& pin) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(pin.size() * 2);
  for (const auto byte : pin) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xf]);
  }
  return out;
}

CertPin sha256_of(std::span<const std::uint8_t> der) {
  CertPin out{};
  SHA256(der.data(), der.size(), out.data());
  return out;
}

}  // namespace helm::agent
