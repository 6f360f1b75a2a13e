#include "helm/agent/backoff.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace helm::agent {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, CeilingDoublesFromOneSecondToFiveMinutesAndDrawsStayBelowIt) {
  Backoff backoff(42);
  milliseconds expected_ceiling{1000};
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(backoff.ceiling(), expected_ceiling);
    const auto delay = backoff.next();
    EXPECT_GE(delay.count(), 0);
    EXPECT_LE(delay, expected_ceiling);
    expected_ceiling = std::min(expected_ceiling * 2, milliseconds{300000});
  }
  EXPECT_EQ(backoff.ceiling(), milliseconds{300000});
}

TEST(Backoff, FullJitterIsUniformOverZeroToTheCeiling) {
  Backoff backoff(7);
  for (int i = 0; i < 12; ++i)
    (void)backoff.next();  // reach the cap
  ASSERT_EQ(backoff.ceiling(), Backoff::kCap);
  constexpr int kDraws = 20000;
  double sum = 0;
  int low = 0;
  int high = 0;
  for (int i = 0; i < kDraws; ++i) {
    const double d = static_cast<double>(backoff.next().count());
    sum += d;
    if (d < 0.1 * Backoff::kCap.count()) ++low;
    if (d > 0.9 * Backoff::kCap.count()) ++high;
  }
  const double mean = sum / kDraws;
  EXPECT_NEAR(mean, Backoff::kCap.count() / 2.0, Backoff::kCap.count() * 0.02);
  // About 10 % in each tail: not "ceiling minus a little", not always tiny.
  EXPECT_NEAR(low, kDraws / 10, kDraws / 50);
  EXPECT_NEAR(high, kDraws / 10, kDraws / 50);
}

TEST(Backoff, ResetsOnlyAfterAConnectionStayedUpAMinute) {
  Backoff backoff(1);
  for (int i = 0; i < 5; ++i)
    (void)backoff.next();
  const auto raised = backoff.ceiling();
  ASSERT_GT(raised, Backoff::kBase);
  backoff.connection_ended(milliseconds{59999});
  EXPECT_EQ(backoff.ceiling(), raised);
  backoff.connection_ended(milliseconds{60000});
  EXPECT_EQ(backoff.ceiling(), Backoff::kBase);
}

TEST(Backoff, HubRestartStartsFromTheLongerBaseButNeverLowersTheCeiling) {
  Backoff backoff(3);
  backoff.use_long_base();
  EXPECT_EQ(backoff.ceiling(), Backoff::kLongBase);
  EXPECT_LE(backoff.next(), Backoff::kLongBase);
  for (int i = 0; i < 10; ++i)
    (void)backoff.next();
  backoff.use_long_base();
  EXPECT_EQ(backoff.ceiling(), Backoff::kCap);
}

}  // namespace
}  // namespace helm::agent
