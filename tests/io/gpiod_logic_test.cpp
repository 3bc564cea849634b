#include "io/gpiod_logic.hpp"

#include <vector>

#include <gtest/gtest.h>

namespace thecal::io {
namespace {

TEST(Debouncer, ZeroWindowPassesEveryReadingThrough) {
  Debouncer d(Duration{0});
  d.seed(false);
  EXPECT_TRUE(d.update(true, mono_us(0)));
  EXPECT_FALSE(d.update(false, mono_us(1)));
}

TEST(Debouncer, LevelMustHoldForTheWindow) {
  Debouncer d(msec(20));
  d.seed(false);
  EXPECT_FALSE(d.update(true, mono_us(1'000)));
  EXPECT_FALSE(d.update(true, mono_us(20'999)));
  EXPECT_TRUE(d.update(true, mono_us(21'000)));
  // Release bounces: a short glitch back does not count.
  EXPECT_TRUE(d.update(false, mono_us(22'000)));
  EXPECT_TRUE(d.update(true, mono_us(23'000)));
  EXPECT_TRUE(d.update(false, mono_us(24'000)));
  EXPECT_TRUE(d.update(false, mono_us(43'999)));
  EXPECT_FALSE(d.update(false, mono_us(44'000)));
}

TEST(Debouncer, SeedKeepsALevelPresentAtStart) {
  Debouncer d(msec(20));
  d.seed(true);
  EXPECT_TRUE(d.level());
  EXPECT_TRUE(d.update(true, mono_us(0)));
}

TEST(EdgeCounter, CountsEveryEdgeWithoutDeadTime) {
  EdgeCounter c;
  for (std::int64_t t : {10, 11, 12}) c.edge(t);
  EXPECT_EQ(c.count(), 3u);
  EXPECT_EQ(c.bounces(), 0u);
}

TEST(EdgeCounter, DeadTimeDropsBouncesByKernelTimestamp) {
  EdgeCounter c(1'000'000);  // 1 ms
  c.edge(5'000'000);
  c.edge(5'100'000);  // bounce
  c.edge(5'900'000);  // bounce
  c.edge(6'000'000);  // 1 ms after the counted edge
  EXPECT_EQ(c.count(), 2u);
  EXPECT_EQ(c.bounces(), 2u);
  EXPECT_EQ(c.last_ns(), 6'000'000);
}

TEST(StepQueue, IssuesWhatTheCoreAsksWithinTheCap) {
  StepQueue q(4, 16);
  EXPECT_EQ(q.plan(1, true), 1u);
  q.issued(1);
  EXPECT_EQ(q.pending(), 0u);
  EXPECT_EQ(q.total_issued(), 1u);
}

TEST(StepQueue, ABurstIsSpreadOverCyclesNotIssuedAtOnce) {
  StepQueue q(4, 16);
  EXPECT_EQ(q.plan(10, true), 4u);
  q.issued(4);
  EXPECT_EQ(q.plan(0, true), 4u);
  q.issued(4);
  EXPECT_EQ(q.plan(0, true), 2u);
  q.issued(2);
  EXPECT_EQ(q.total_issued(), 10u);
  EXPECT_EQ(q.total_dropped(), 0u);
}

TEST(StepQueue, DisablingDropsPendingSteps) {
  StepQueue q(4, 16);
  EXPECT_EQ(q.plan(10, true), 4u);
  q.issued(4);
  EXPECT_EQ(q.plan(3, false), 0u);
  EXPECT_EQ(q.pending(), 0u);
  EXPECT_EQ(q.total_dropped(), 9u);
  EXPECT_EQ(q.plan(0, true), 0u) << "nothing left over after a disable";
}

TEST(StepQueue, PendingIsBounded) {
  StepQueue q(4, 16);
  EXPECT_EQ(q.plan(100, true), 4u);
  EXPECT_EQ(q.pending(), 16u);
  EXPECT_EQ(q.total_dropped(), 84u);
}

// A fake line and clock: each write costs `write_ns` of fake time, busy-waiting reads
// advance it by 100 ns.
struct FakeHw {
  std::int64_t t = 0;
  std::int64_t write_ns = 1000;
  int fail_at = -1;  // the nth write fails
  std::vector<std::pair<std::int64_t, bool>> edges;
  bool set(bool v) {
    if (static_cast<int>(edges.size()) == fail_at) return false;
    t += write_ns;
    edges.emplace_back(t, v);
    return true;
  }
  std::int64_t clock() { return t += 100; }
};

TEST(PulseTrain, EveryPulseMeetsTheMinimumHighAndLowTime) {
  FakeHw hw;
  bool ok = false;
  const PulseTiming timing{1900, 1900};  // DRV8825
  const auto n = pulse_train(5, timing, 1'000'000, [&](bool v) { return hw.set(v); }, [&] { return hw.clock(); }, ok);
  EXPECT_TRUE(ok);
  ASSERT_EQ(n, 5u);
  ASSERT_EQ(hw.edges.size(), 10u);
  for (std::size_t i = 0; i + 1 < hw.edges.size(); ++i) {
    EXPECT_EQ(hw.edges[i].second, i % 2 == 0);
    // The level set at edge i holds until edge i+1 is being written.
    const std::int64_t held = hw.edges[i + 1].first - hw.write_ns - hw.edges[i].first;
    EXPECT_GE(held, 1900) << "edge " << i;
  }
}

TEST(PulseTrain, StopsAtTheBudgetAfterACompletePulse) {
  FakeHw hw;
  bool ok = false;
  const auto n = pulse_train(1000, PulseTiming{2000, 2000}, 50'000, [&](bool v) { return hw.set(v); },
                             [&] { return hw.clock(); }, ok);
  EXPECT_TRUE(ok);
  EXPECT_GT(n, 5u);
  EXPECT_LT(n, 20u);
  EXPECT_EQ(hw.edges.size(), 2 * n);
  EXPECT_FALSE(hw.edges.back().second) << "the step line is left low";
}

TEST(PulseTrain, AFailedWriteStopsAtOnce) {
  FakeHw hw;
  hw.fail_at = 3;  // the second pulse's falling edge
  bool ok = true;
  const auto n = pulse_train(5, PulseTiming{}, 1'000'000, [&](bool v) { return hw.set(v); }, [&] { return hw.clock(); }, ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(n, 1u);
}

}  // namespace
}  // namespace thecal::io
