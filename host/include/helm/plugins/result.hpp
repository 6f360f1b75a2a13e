/// @brief Result<T, E>: a value or a typed error, returned wherever plugin loading or a plugin
/// call fails in an ordinary way.
#pragma once

#include <optional>
#include <utility>
#include <variant>

namespace helm::plugins {

/// Holds either a T or an E (a minimal stand-in for C++23 std::expected). Reading the value of
/// an error (or the error of a value) is a programming error and throws std::bad_variant_access.
template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(E error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { return std::get<1>(state_); }
  E&& error() && { return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, E> state_;
};

/// Success without a value, or an E.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(E error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool has_value() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  /// Precondition: !has_value().
  const E& error() const& { return error_.value(); }

 private:
  std::optional<E> error_;
};

}  // namespace helm::plugins
