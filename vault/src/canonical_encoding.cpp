#include "helm/vault/canonical_encoding.hpp"

#include <limits>
#include <stdexcept>

namespace helm::vault {

namespace {

void put_be(Bytes& out, std::uint64_t value, int width) {
  for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>((value >> shift) & 0xffU));
  }
}

}  // namespace

CanonicalEncoder& CanonicalEncoder::add_bytes(ByteView bytes) {
  // Callers bound every field far below 4 GiB; exceeding it is a programming error.
  if (bytes.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("canonical field longer than 4 GiB");
  }
  put_be(out_, bytes.size(), 4);
  out_.insert(out_.end(), bytes.begin(), bytes.end());
  return *this;
}

CanonicalEncoder& CanonicalEncoder::add_u32(std::uint32_t value) {
  put_be(out_, 4, 4);
  put_be(out_, value, 4);
  return *this;
}

CanonicalEncoder& CanonicalEncoder::add_u64(std::uint64_t value) {
  put_be(out_, 8, 4);
  put_be(out_, value, 8);
  return *this;
}

CanonicalEncoder& CanonicalEncoder::add_i64(std::int64_t value) {
  return add_u64(static_cast<std::uint64_t>(value));
}

}  // namespace helm::vault
