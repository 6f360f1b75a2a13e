#include "helm/vault/secure_buffer.hpp"

#include <sodium.h>

#include <cstring>
#include <new>
#include <ostream>
#include <stdexcept>
#include <utility>

namespace helm::vault {

void ensure_sodium_initialized() {
  // A function-local static is initialised exactly once even under concurrent first calls.
  static const bool initialized = sodium_init() >= 0;
  if (!initialized) {
    throw std::runtime_error("libsodium failed to initialise; the vault cannot run without it");
  }
}

SecureBuffer::SecureBuffer(std::size_t size) {
  ensure_sodium_initialized();
  if (size == 0) {
    return;
  }
  data_ = static_cast<std::uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) {
    throw std::bad_alloc();
  }
  size_ = size;
  capacity_ = size;
  sodium_memzero(data_, capacity_);
}

SecureBuffer SecureBuffer::copy_of(ByteView bytes) {
  SecureBuffer buffer(bytes.size());
  if (!bytes.empty()) {
    std::memcpy(buffer.data_, bytes.data(), bytes.size());
  }
  return buffer;
}

SecureBuffer::~SecureBuffer() {
  release();
}

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void SecureBuffer::truncate(std::size_t new_size) noexcept {
  if (new_size >= size_) {
    return;
  }
  sodium_memzero(data_ + new_size, size_ - new_size);
  size_ = new_size;
}

bool SecureBuffer::equals(ByteView other) const noexcept {
  if (other.size() != size_) {
    return false;
  }
  if (size_ == 0) {
    return true;
  }
  return sodium_memcmp(data_, other.data(), size_) == 0;
}

void SecureBuffer::release() noexcept {
  if (data_ == nullptr) {
    return;
  }
  // sodium_free wipes too; the explicit wipe keeps the guarantee independent of that detail.
  sodium_memzero(data_, capacity_);
  sodium_free(data_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
}

std::ostream& operator<<(std::ostream& out, const SecureBuffer& buffer) {
  return out << "SecureBuffer(" << buffer.size() << " bytes, redacted)";
}

}  // namespace helm::vault
