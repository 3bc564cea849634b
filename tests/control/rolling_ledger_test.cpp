#include "control/rolling_ledger.hpp"

#include <random>
#include <vector>

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

TEST(RollingLedger, RunningSumMatchesAFullScan) {
  // The O(1) running sum against a brute-force recount of the buckets, through gaps of
  // every size (seconds, hours, more than a day, more than a ring).
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> gap_kind(0, 9);
  RollingLedger l;
  std::vector<std::pair<MonoTime, std::int64_t>> log;
  MonoTime t = mono_us(0) + hours(5);
  for (int i = 0; i < 20000; ++i) {
    const int k = gap_kind(rng);
    t += k < 6 ? seconds(k * 7 + 1) : k < 8 ? minutes(k * 13) : k == 8 ? hours(23) : hours(49);
    const Mass m = mcg(std::uniform_real_distribution<double>(0.0, 5.0)(rng));
    l.add(t, m);
    log.emplace_back(t, RollingLedger::to_pg_ceil(m));
    std::int64_t exact_pg = 0;     // true mass in (t - 24 h, t]
    std::int64_t bucketed_pg = 0;  // what the conservative minute buckets must hold
    const std::int64_t now_min = to_usec(t) / to_usec(RollingLedger::kBucket);
    for (const auto& [when, pg] : log) {
      if (when > t - hours(24)) exact_pg += pg;
      if (to_usec(when) / to_usec(RollingLedger::kBucket) >= now_min - 1440) bucketed_pg += pg;
    }
    ASSERT_EQ(l.sum_pg(t), bucketed_pg) << "i=" << i;
    ASSERT_GE(l.sum_pg(t), exact_pg);
    if (log.size() > 4000) log.erase(log.begin(), log.begin() + 1000);
  }
}

TEST(RollingLedger, RestoreKeepsTheWindowAndNeverUnderCounts) {
  RollingLedger a;
  const MonoTime t0 = mono_us(0) + hours(30);
  for (int i = 0; i < 100; ++i) a.add(t0 + minutes(i * 10), mcg(1));
  const MonoTime t1 = t0 + hours(20);
  RollingLedger b;
  b.restore(a.buckets(), t1);
  EXPECT_EQ(b.sum_pg(t1), a.sum_pg(t1));
  EXPECT_EQ(b.sum_pg(t1 + hours(3)), a.sum_pg(t1 + hours(3)));
  // Restored onto an earlier clock (another boot): buckets from the "future" count now.
  RollingLedger c;
  c.restore(a.buckets(), mono_us(0) + hours(1));
  EXPECT_EQ(c.sum_pg(mono_us(0) + hours(1)), a.sum_pg(t1));
}

TEST(RollingLedger, WhenRoomForNeverFits) {
  RollingLedger l;
  EXPECT_EQ(l.when_room_for(mono_us(0), mcg(200), mcg(100)), MonoTime::max());
}

}  // namespace
}  // namespace thecal
