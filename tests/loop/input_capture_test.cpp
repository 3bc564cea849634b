// What the flight recorder keeps from the dosing thread (loop/InputCapture) and the loop
// time it relies on (loop/LoopClock): steady cycles keep nothing, every exception is one
// record, an encoder out of phase costs at most two; the clocks move by equal steps.
#include <vector>

#include <gtest/gtest.h>

#include "loop/input_capture.hpp"
#include "loop/loop_clock.hpp"

namespace thecal::loop {
namespace {

struct Kept {
  std::vector<io::LoopInput> v;
  void operator()(const io::LoopInput& r) { v.push_back(r); }
};

TEST(InputCapture, SteadyCyclesKeepNothingAndEachExceptionIsOneRecord) {
  InputCapture cap(8);
  Kept k;
  Status st;
  Now now{mono_us(1'000'000), wall_us(1'790'000'000'000'000)};
  const Duration p = msec(1);
  SensorInputs in;
  auto cycle = [&](std::uint32_t steps) {
    cap.begin_cycle(now, p, st, k);
    cap.sensors(in, st, k);
    cap.end_cycle(steps);
    now = Now{now.mono + p, now.wall + p};
  };
  cycle(0);
  ASSERT_EQ(k.v.size(), 1U);  // the first cycle's clock
  EXPECT_EQ(k.v[0].kind, io::RecKind::clock);
  EXPECT_EQ(k.v[0].period, p);
  // 1000 steady cycles, stepping, with an ideal encoder: nothing.
  std::uint64_t steps = 0;
  for (int i = 0; i < 1000; ++i) {
    in.encoder_pulses = steps / 8;
    const std::uint32_t s = i % 3 == 0 ? 1 : 0;
    cycle(s);
    steps += s;
  }
  EXPECT_EQ(k.v.size(), 1U);
  // A late cycle: one clock record, then steady again.
  now = Now{now.mono + msec(3), now.wall + msec(3)};
  in.encoder_pulses = steps / 8;
  cycle(0);
  ASSERT_EQ(k.v.size(), 2U);
  EXPECT_EQ(k.v[1].kind, io::RecKind::clock);
  EXPECT_EQ(k.v[1].cycle, 1001U);
  cycle(0);
  EXPECT_EQ(k.v.size(), 2U);
  // A wall-clock step: one record.
  now.wall += hours(1);
  cycle(0);
  ASSERT_EQ(k.v.size(), 3U);
  EXPECT_EQ(to_usec(k.v[2].now.wall) - to_usec(k.v[2].now.mono), to_usec(k.v[1].now.wall) - to_usec(k.v[1].now.mono) + to_usec(mono_us(0) + hours(1)));
  // A sensor change: one record; its end: one more.
  in.occlusion = true;
  cycle(0);
  cycle(0);
  in.occlusion = false;
  cycle(0);
  ASSERT_EQ(k.v.size(), 5U);
  EXPECT_TRUE(k.v[3].in.occlusion);
  EXPECT_FALSE(k.v[4].in.occlusion);
  // A commanded period change (time scale): one record with the new period.
  cap.begin_cycle(now, msec(2), st, k);
  cap.end_cycle(0);
  ASSERT_EQ(k.v.size(), 6U);
  EXPECT_EQ(k.v[5].period, msec(2));
}

TEST(InputCapture, AnEncoderOutOfPhaseCostsAtMostTwoRecordsThenNone) {
  for (std::uint64_t phase = 1; phase < 8; ++phase) {
    InputCapture cap(8);
    Kept k;
    Status st;
    Now now{mono_us(1'000'000), wall_us(1'000'000)};
    std::uint64_t real_steps = phase;  // the real encoder is `phase` steps ahead
    for (int i = 0; i < 400; ++i) {
      cap.begin_cycle(now, msec(1), st, k);
      SensorInputs in;
      in.encoder_pulses = real_steps / 8;
      cap.sensors(in, st, k);
      cap.end_cycle(1);
      ++real_steps;
      now = Now{now.mono + msec(1), now.wall + msec(1)};
    }
    std::size_t sensors = 0;
    for (const auto& r : k.v) sensors += r.kind == io::RecKind::sensors ? 1 : 0;
    EXPECT_LE(sensors, 2U) << "phase " << phase;
  }
}

TEST(InputCapture, AClockHeldForManyCyclesIsOneRecordAndItsReleaseOneMore) {
  InputCapture cap(8);
  Kept k;
  Status st;
  Now now{mono_us(0), wall_us(0)};
  const Duration p = seconds(20);  // 1 ms at 20000x
  auto cycle = [&] {
    cap.begin_cycle(now, p, st, k);
    cap.end_cycle(0);
  };
  cycle();
  now = Now{now.mono + p, now.wall + p};
  cycle();
  ASSERT_EQ(k.v.size(), 1U);
  for (int i = 0; i < 500; ++i) cycle();  // the simulated world waits for a grant
  ASSERT_EQ(k.v.size(), 2U);
  EXPECT_EQ(k.v[1].period, Duration{0});
  now = Now{now.mono + seconds(3), now.wall + seconds(3)};  // released, slowed
  cycle();
  now = Now{now.mono + p, now.wall + p};
  cycle();
  ASSERT_EQ(k.v.size(), 3U);
  EXPECT_EQ(k.v[2].period, p);
}

TEST(InputCapture, ACheckpointEveryTenMinutesOfPumpTime) {
  InputCapture cap(8);
  Kept k;
  Status st;
  Now now{mono_us(0), wall_us(0)};
  for (int i = 0; i < 3600; ++i) {  // one hour at 1 s
    cap.begin_cycle(now, seconds(1), st, k);
    cap.end_cycle(0);
    now = Now{now.mono + seconds(1), now.wall + seconds(1)};
  }
  EXPECT_EQ(k.v.size(), 6U);  // the first cycle and one each 10 min
}

TEST(LoopClock, CyclesOneDeadlineApartMoveBothClocksByEqualSteps) {
  // The simulated clock at a fractional scale: every 1 ms cycle moves it by the same 3,700 us.
  LoopClock sim(true, 3.7);
  const std::int64_t r0 = real_monotonic_us();
  Now prev = sim.now(r0, 3.7);
  for (int i = 1; i <= 1000; ++i) {
    const Now n = sim.now(r0 + 1000LL * i, 3.7);
    ASSERT_EQ(n.mono - prev.mono, usec(3700)) << i;
    ASSERT_EQ(n.wall - prev.wall, usec(3700)) << i;
    prev = n;
  }
  // The real clock: monotonic is the deadline given, wall follows it to the microsecond
  // while the system's wall clock moves by less than 1 ms against it.
  LoopClock real(false, 1.0);
  const std::int64_t d0 = real_monotonic_us();
  const Now a = real.now(d0, 1.0);
  const Now b = real.now(d0 + 1000, 1.0);
  EXPECT_EQ(a.mono, mono_us(d0));
  EXPECT_EQ(b.mono - a.mono, usec(1000));
  EXPECT_EQ(b.wall - a.wall, usec(1000));
}

}  // namespace
}  // namespace thecal::loop
