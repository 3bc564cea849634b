// The dosing loop's wake-up latency statistics (org.thecal.Diagnostics1): 1 us bins up to
// 4.096 ms, 64 us bins up to 69.632 ms, an overflow bin, and an exact per-interval max.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "control/pump_core.hpp"
#include "loop/dosing_loop.hpp"
#include "loop/loop_clock.hpp"
#include "io/sim_plant.hpp"

namespace thecal::loop {
namespace {

using H = LatencyHistogram;

TEST(LatencyHistogram, BinsAre1UsTo4msThen64UsTo70msThenOverflow) {
  EXPECT_EQ(H::bin_of(0), 0u);
  EXPECT_EQ(H::bin_of(999), 0u);
  EXPECT_EQ(H::bin_of(1000), 1u);
  EXPECT_EQ(H::bin_of(4'095'999), 4095u);
  EXPECT_EQ(H::bin_of(4'096'000), 4096u);
  EXPECT_EQ(H::bin_of(4'159'999), 4096u);
  EXPECT_EQ(H::bin_of(4'160'000), 4097u);
  EXPECT_EQ(H::bin_of(69'631'999), H::kBins - 1);
  EXPECT_EQ(H::bin_of(69'632'000), H::kBins);
  EXPECT_EQ(H::bin_of(1'000'000'000), H::kBins);
  for (std::size_t i = 0; i < H::kBins; ++i) {
    ASSERT_EQ(H::bin_of(H::lower_edge_ns(i)), i);
    ASSERT_EQ(H::bin_of(H::upper_edge_ns(i) - 1), i);
  }
}

TEST(LatencyHistogram, QuantilesReachIntoTheCoarseBins) {
  H h;
  h.counts[H::bin_of(20'000)] = 990;     // 20 us
  h.counts[H::bin_of(150'000)] = 9;      // 150 us
  h.counts[H::bin_of(5'000'000)] = 1;    // a 5 ms stall: bin [4.992, 5.056) ms
  h.max_ns = 5'000'321;
  EXPECT_EQ(h.total(), 1000u);
  EXPECT_EQ(h.quantile_ns(0.5), 21'000u);
  EXPECT_EQ(h.quantile_ns(0.99), 21'000u);   // nearest rank: the 990th sample
  EXPECT_EQ(h.quantile_ns(0.995), 151'000u);
  EXPECT_EQ(h.quantile_ns(1.0), 5'000'321u);  // the upper edge, capped at the exact max
  H later = h;
  later.counts[H::bin_of(20'000)] += 100;
  later.counts[H::bin_of(7'000'000)] += 1;   // [6.976, 7.040) ms in the interval
  later.max_ns = 7'000'001;
  const H d = later - h;
  EXPECT_EQ(d.total(), 101u);
  EXPECT_EQ(d.max_ns, 7'000'001u);            // min(upper edge 7.040 ms, overall max)
  H quiet = later;
  quiet.counts[H::bin_of(30'000)] += 5;
  EXPECT_EQ((quiet - later).max_ns, 31'000u);  // bounded by the bin, not the old 7 ms
  H overflow = later;
  overflow.counts[H::kBins] += 1;
  overflow.max_ns = 93'000'000;
  EXPECT_EQ((overflow - later).max_ns, 93'000'000u);
}

TEST(LatencyHistogram, TheLoopCountsEveryCycleAndHandsOutAnExactIntervalMax) {
  BoardParams board;
  const Now t0{mono_us(real_monotonic_us()), wall_us(real_wall_us())};
  PumpCore core(board, t0);
  io::SimPlant plant(board);
  LoopOptions o;
  o.priority = 0;  // no RT needed to count
  o.simulated = true;
  DosingLoop loop(core, plant, o);
  EXPECT_EQ(loop.take_interval_max(), 0u);
  ASSERT_FALSE(loop.start().has_value());
  const auto ran = [&](std::uint64_t n) {  // a deadline, not a duration
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (loop.diagnostics().cycles < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling interval
    }
    return loop.diagnostics().cycles >= n;
  };
  ASSERT_TRUE(ran(150));
  const std::uint64_t first = loop.take_interval_max();
  ASSERT_TRUE(ran(loop.diagnostics().cycles + 100));
  loop.stop();
  const std::uint64_t second = loop.take_interval_max();
  const LoopDiagnostics d = loop.diagnostics();
  EXPECT_GT(d.cycles, 100u);
  EXPECT_EQ(d.latency.total(), d.cycles);
  EXPECT_GT(first, 0u);
  EXPECT_LE(first, d.latency.max_ns);
  EXPECT_LE(second, d.latency.max_ns);
  EXPECT_EQ(std::max(first, second), d.latency.max_ns);
  EXPECT_EQ(loop.take_interval_max(), 0u) << "taken: nothing ran since";
}

}  // namespace
}  // namespace thecal::loop

namespace thecal::loop {
namespace {

TEST(LoopClock, ALimitedSimulatedClockMovesAtMostThatFarAndGoesOnWithoutAJump) {
  LoopClock c(true, 1000.0);
  const std::int64_t r0 = real_monotonic_us();
  const Now a = c.now(r0 + 1'000, 1000.0);
  const Now held = c.now_at_most(r0 + 50'000, 1000.0, Duration{0});  // 49 ms of real time do not count
  EXPECT_EQ(held.mono, a.mono);
  EXPECT_EQ(held.wall, a.wall);
  const Now slowed = c.now_at_most(r0 + 90'000, 1000.0, seconds(3));  // 40 s would pass: 3 s do
  EXPECT_EQ(slowed.mono - a.mono, seconds(3));
  EXPECT_EQ(slowed.wall - a.wall, seconds(3));
  const Now b = c.now_at_most(r0 + 91'000, 1000.0, seconds(5));  // 1 ms real: 1 s, under the limit
  EXPECT_EQ(b.mono - slowed.mono, seconds(1));
  // A scale change after a limited cycle stays continuous too.
  const Now d = c.now(r0 + 92'000, 10.0);
  EXPECT_EQ(d.mono - b.mono, seconds(1));
  EXPECT_EQ(c.now(r0 + 93'000, 10.0).mono - d.mono, msec(10));
  // The real clock ignores limits.
  LoopClock real(false, 1.0);
  EXPECT_GE(to_usec(real.now_at_most(real_monotonic_us(), 1.0, Duration{0}).mono), r0);
}

}  // namespace
}  // namespace thecal::loop
