#include "helm/agent/backoff.hpp"

#include <algorithm>

namespace helm::agent {

Backoff::Backoff(std::uint64_t seed) : rng_(seed) {}

Backoff::Duration Backoff::next() {
  std::uniform_int_distribution<Duration::rep> draw(0, ceiling_.count());
  const Duration delay{draw(rng_)};
  ceiling_ = std::min(kCap, ceiling_ * 2);
  return delay;
}

void Backoff::connection_ended(Duration uptime) {
  if (uptime >= kStableAfter) reset();
}

void Backoff::use_long_base() {
  ceiling_ = std::max(ceiling_, kLongBase);
}

}  // namespace helm::agent
