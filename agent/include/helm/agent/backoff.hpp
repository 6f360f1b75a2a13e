/// @brief Reconnect delays: exponential ceiling with full jitter, reset after a stable connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace helm::agent {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;

  static constexpr Duration kBase{1000};
  static constexpr Duration kLongBase{10000};  // after close 1012 (hub restarting)
  static constexpr Duration kCap{300000};
  static constexpr Duration kStableAfter{60000};

  explicit Backoff(std::uint64_t seed = std::random_device{}());

  /// The next delay: a uniform draw in [0, ceiling], after which the ceiling doubles (to kCap).
  Duration next();
  /// The ceiling the next draw uses.
  Duration ceiling() const { return ceiling_; }

  /// A connection ended after being up for `uptime`; resets the ceiling if it was stable.
  void connection_ended(Duration uptime);
  /// The hub is restarting: start again from the longer base (never lowers a higher ceiling).
  void use_long_base();
  void reset() { ceiling_ = kBase; }

 private:
  Duration ceiling_ = kBase;
  std::mt19937_64 rng_;
};

}  // namespace helm::agent
