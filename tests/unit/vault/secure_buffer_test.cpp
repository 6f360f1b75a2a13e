#include "helm/vault/secure_buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace helm::vault {
namespace {

static_assert(!std::is_copy_constructible_v<SecureBuffer>);
static_assert(!std::is_copy_assignable_v<SecureBuffer>);
static_assert(std::is_nothrow_move_constructible_v<SecureBuffer>);
static_assert(std::is_nothrow_move_assignable_v<SecureBuffer>);

TEST(SecureBufferTest, AllocatesZeroedBytesOfTheRequestedSize) {
  const SecureBuffer buffer(48);
  ASSERT_EQ(buffer.size(), 48U);
  ASSERT_NE(buffer.data(), nullptr);
  EXPECT_TRUE(std::all_of(buffer.view().begin(), buffer.view().end(),
                          [](std::uint8_t byte) { return byte == 0; }));
}

TEST(SecureBufferTest, ZeroSizedBufferOwnsNothing) {
  const SecureBuffer buffer(0);
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.data(), nullptr);
}

TEST(SecureBufferTest, MoveTransfersOwnershipAndEmptiesTheSource) {
  SecureBuffer source = SecureBuffer::copy_of(bytes_of("hunter2"));
  const std::uint8_t* address = source.data();
  SecureBuffer target(std::move(source));
  EXPECT_EQ(target.data(), address);
  EXPECT_EQ(target.as_chars(), "hunter2");
  EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): pinning moved-from state
  EXPECT_EQ(source.data(), nullptr);

  SecureBuffer other(4);
  other = std::move(target);
  EXPECT_EQ(other.as_chars(), "hunter2");
  EXPECT_TRUE(target.empty());  // NOLINT(bugprone-use-after-move)
}

TEST(SecureBufferTest, StreamingPrintsTheLengthButNeverTheContents) {
  const SecureBuffer buffer = SecureBuffer::copy_of(bytes_of("correct horse battery"));
  std::ostringstream out;
  out << buffer;
  EXPECT_EQ(out.str().find("horse"), std::string::npos);
  EXPECT_NE(out.str().find("21 bytes"), std::string::npos);
  EXPECT_NE(out.str().find("redacted"), std::string::npos);
}

TEST(SecureBufferTest, TruncateWipesTheBytesDroppedOffTheEnd) {
  SecureBuffer buffer = SecureBuffer::copy_of(bytes_of("abcdefgh"));
  const std::uint8_t* data = buffer.data();
  buffer.truncate(3);
  EXPECT_EQ(buffer.as_chars(), "abc");
  // The dropped bytes are still inside the allocation, so reading them is defined.
  EXPECT_TRUE(std::all_of(data + 3, data + 8, [](std::uint8_t byte) { return byte == 0; }));
}

TEST(SecureBufferTest, EqualsComparesLengthAndContents) {
  const SecureBuffer buffer = SecureBuffer::copy_of(bytes_of("same"));
  EXPECT_TRUE(buffer.equals(bytes_of("same")));
  EXPECT_FALSE(buffer.equals(bytes_of("sane")));
  EXPECT_FALSE(buffer.equals(bytes_of("same!")));
  EXPECT_TRUE(SecureBuffer().equals(ByteView{}));
}

TEST(SecureBufferTest, SodiumInitialisesOnceUnderConcurrentFirstUse) {
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([] {
      ensure_sodium_initialized();
      const SecureBuffer buffer(16);
      EXPECT_EQ(buffer.size(), 16U);
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
}

}  // namespace
}  // namespace helm::vault
