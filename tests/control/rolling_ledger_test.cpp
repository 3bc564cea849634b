#include "control/rolling_ledger.hpp"

#include <gtest/gtest.h>

namespace thecal {
namespace {

TEST(RollingLedger, SumsTheLastDay) {
  RollingLedger l;
  const MonoTime t0 = mono_us(0) + hours(100);
  l.add(t0, mcg(10));
  l.add(t0 + hours(12), mcg(20));
  EXPECT_NEAR(to_mcg(l.sum(t0 + hours(12))), 30.0, 1e-12);
  // The first entry leaves the window only after its whole minute is 24 h old.
  EXPECT_NEAR(to_mcg(l.sum(t0 + hours(24))), 30.0, 1e-12);
  EXPECT_NEAR(to_mcg(l.sum(t0 + hours(24) + minutes(1))), 20.0, 1e-12);
  EXPECT_NEAR(to_mcg(l.sum(t0 + hours(40))), 0.0, 1e-12);
}

TEST(RollingLedger, NeverUnderCounts) {
  // Every point in time: ledger sum >= exact sum over (now - 24 h, now].
  RollingLedger l;
  std::vector<std::pair<MonoTime, double>> log;
  MonoTime t = mono_us(0);
  for (int i = 0; i < 5000; ++i) {
    t += seconds(37 * (i % 11) + 1);
    l.add(t, mcg(1.0 + i % 3));
    log.emplace_back(t, 1.0 + i % 3);
    double exact = 0;
    for (const auto& [when, m] : log) {
      if (when > t - hours(24)) exact += m;
    }
    ASSERT_GE(to_mcg(l.sum(t)) + 1e-9, exact);
  }
}

TEST(RollingLedger, WhenRoomFor) {
  RollingLedger l;
  const MonoTime t0 = mono_us(0) + hours(1);
  l.add(t0, mcg(90));
  const MonoTime now = t0 + hours(1);
  EXPECT_EQ(l.when_room_for(now, mcg(10), mcg(100)), now);
  const MonoTime later = l.when_room_for(now, mcg(20), mcg(100));
  EXPECT_GT(later, t0 + hours(24));
  EXPECT_LE(later, t0 + hours(24) + minutes(1));
  EXPECT_NEAR(to_mcg(l.sum(later)), 0.0, 1e-12);
}

}  // namespace
}  // namespace thecal
