/// @brief SecureBuffer: locked, guard-paged, zeroed-on-release memory for keys and secret
/// plaintext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string_view>

#include "helm/vault/bytes.hpp"

namespace helm::vault {

/// Initialises libsodium exactly once, whichever thread calls first; later calls are free.
/// Throws std::runtime_error if libsodium cannot initialise (no usable CSPRNG): the vault cannot
/// run at all then, so this is a broken invariant rather than an ordinary failure.
void ensure_sodium_initialized();

/// Bytes in sodium_malloc memory: mlock'ed where the RLIMIT_MEMLOCK allows (so never swapped),
/// surrounded by guard pages, wiped with sodium_memzero and released with sodium_free when the
/// buffer dies. Move-only, so the bytes have exactly one owner. Streaming a SecureBuffer prints
/// only its length, never its contents.
/// Each allocation costs several system calls (mmap, mprotect, mlock; about 20 us in the
/// benchmark), so allocate one per secret release or per key, not per byte or in tight loops.
class SecureBuffer {
 public:
  /// An empty buffer that owns no memory.
  SecureBuffer() noexcept = default;
  /// `size` zeroed bytes. Throws std::bad_alloc if sodium_malloc fails (out of memory).
  explicit SecureBuffer(std::size_t size);
  /// A secure copy of `bytes`; the caller remains responsible for wiping its own copy.
  static SecureBuffer copy_of(ByteView bytes);

  ~SecureBuffer();
  SecureBuffer(SecureBuffer&& other) noexcept;
  SecureBuffer& operator=(SecureBuffer&& other) noexcept;
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  std::uint8_t* data() noexcept { return data_; }
  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  std::span<std::uint8_t> span() noexcept { return {data_, size_}; }
  ByteView view() const noexcept { return {data_, size_}; }
  /// The bytes as characters, for handing a secret value to a plugin call. The view lives only as
  /// long as this buffer.
  std::string_view as_chars() const noexcept {
    return {reinterpret_cast<const char*>(data_), size_};
  }

  /// Shrinks the logical size to `new_size` (<= size()), wiping the bytes dropped off the end.
  void truncate(std::size_t new_size) noexcept;

  /// Constant-time comparison of contents (the length itself is not secret).
  bool equals(ByteView other) const noexcept;

  friend std::ostream& operator<<(std::ostream& out, const SecureBuffer& buffer);

 private:
  void release() noexcept;

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace helm::vault
