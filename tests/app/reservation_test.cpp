// The reservation rule (SPEC S7) driven as the daemon drives it, on a real file: the
// fsync rate at steady basal (printed: the figure the issue asks for), the bound on the
// over-count, and a failed fsync granting nothing.
#include <cstdio>

#include <gtest/gtest.h>

#include "tests/app/journal_test_util.hpp"

namespace thecal::test {
namespace {

struct Driver {
  JTempDir dir;
  Harness h;
  app::JournalKeeper keeper{io::real_file_ops(), dir.path, h.board, "/proc/sys/kernel/random/boot_id"};
  std::uint64_t granted = 0;
  std::uint64_t max_overcount = 0;

  /// The daemon's poll: reserve (state + reserve record, one fsync) when less than half
  /// a reservation is left; grant what became durable.
  void poll() {
    const auto size = keeper.reservation_steps(h.st().pump_rate);
    const auto left = static_cast<std::int64_t>(keeper.reserved()) - static_cast<std::int64_t>(h.st().steps_issued);
    if (left >= static_cast<std::int64_t>(size / 2)) return;
    CoreState s;
    h.core->export_state(s, h.now);
    ASSERT_FALSE(keeper.checkpoint(s, s.steps_issued + size));
    max_overcount = std::max(max_overcount, keeper.reserved() - s.steps_issued);
    ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{static_cast<std::int64_t>(keeper.reserved() - granted)}}).ok());
    granted = keeper.reserved();
  }
  void start(const TherapyPlan& plan) {
    ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
    ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
    (void)keeper.recover();
    CoreState s;
    h.core->export_state(s, h.now);
    ASSERT_FALSE(keeper.rewrite(s, keeper.reservation_steps(board_prime_rate()), {}));
    granted = keeper.reserved();
    ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{static_cast<std::int64_t>(granted)}}).ok());
    ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
    run(minutes(20));
    ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  }
  VolumeRate board_prime_rate() const { return h.board.prime_rate; }
  void run(Duration d) {
    const MonoTime end = h.now.mono + d;
    while (h.now.mono < end) {
      h.cycle(seconds(1));
      poll();
      ASSERT_LE(h.st().steps_issued, keeper.reserved()) << "the loop stepped beyond the durable reservation";
    }
  }
};

TEST(Reservation, SizeIsTenMinutesOfDeliveryWithinFourAnd1200StepsAndNeverMoreThanPrimingNeeds) {
  // docs/journal.md: G covers 10 minutes at the current pump rate, at least 4 and at most
  // 1200 steps; while priming, never more than the priming steps still to go (at least 4).
  // The figures below are worked out by hand from those words (0.25 uL per step).
  JTempDir dir;
  const BoardParams board;
  const app::JournalKeeper keeper{io::real_file_ops(), dir.path, board, "/proc/sys/kernel/random/boot_id"};
  EXPECT_EQ(keeper.reservation_steps(uL_per_day(150)), 5u);    // 1.5 mg/day at 10 mg/mL: 1.04 uL
  EXPECT_EQ(keeper.reservation_steps(uL_per_day(3000)), 84u);  // 30 mL/day: 20.8 uL = 83.3 steps
  EXPECT_EQ(keeper.reservation_steps(mL_per_h(1)), 667u);      // priming: 166.7 uL
  EXPECT_EQ(keeper.reservation_steps(mL_per_h(2)), 1200u);     // 333 uL: capped
  EXPECT_EQ(keeper.reservation_steps(uL_per_h(1)), 4u);        // 0.17 uL: the floor
  EXPECT_EQ(keeper.reservation_steps(VolumeRate{}), 4u);
  EXPECT_EQ(keeper.reservation_steps(mL_per_h(1), uL(220)), 667u);  // 880 steps to go: 10 minutes' worth
  EXPECT_EQ(keeper.reservation_steps(mL_per_h(1), uL(10)), 40u);    // the last 40 steps of a prime
  EXPECT_EQ(keeper.reservation_steps(mL_per_h(1), uL(0.25)), 4u);
  EXPECT_EQ(keeper.reservation_steps(uL_per_day(150), uL(0)), 5u);  // not priming
}

TEST(Reservation, SteadyBasalCostsAtMostOneFsyncPerMinute) {
  Driver d;
  const TherapyPlan plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10), mg(3));
  d.start(plan);
  const auto f0 = d.keeper.fsyncs();
  const auto s0 = d.h.st().steps_issued;
  d.run(hours(24));
  const double per_min = static_cast<double>(d.keeper.fsyncs() - f0) / (24 * 60);
  std::printf("[ figure ] steady basal 1.5 mg/day at 10 mg/mL: %llu fsyncs in 24 h = %.4f fsync/min (target <= 1), "
              "max over-count %llu steps = %.2f uL\n",
              static_cast<unsigned long long>(d.keeper.fsyncs() - f0), per_min,
              static_cast<unsigned long long>(d.max_overcount), 0.25 * static_cast<double>(d.max_overcount));
  EXPECT_LE(per_min, 1.0);
  EXPECT_EQ(d.h.count(EventType::budget_exhausted), 0u);
  // Basal delivered as programmed: 150 uL/day within a step.
  EXPECT_NEAR(0.25 * static_cast<double>(d.h.st().steps_issued - s0), 150.0, 0.5);
  EXPECT_LE(d.max_overcount, app::JournalKeeper::kMaxReservationSteps);
}

TEST(Reservation, HighestBasalRateStillBelowOneFsyncPerMinute) {
  Driver d;
  // 30 mg/day at 1 mg/mL: 30 mL/day, about 83 steps a minute.
  TherapyPlan plan = continuous_plan(mg_per_day(30), mg_per_mL(1), mg(40));
  d.start(plan);
  const auto f0 = d.keeper.fsyncs();
  d.run(hours(6));
  const double per_min = static_cast<double>(d.keeper.fsyncs() - f0) / (6 * 60);
  std::printf("[ figure ] basal 30 mL/day: %.4f fsync/min, max over-count %llu steps\n", per_min,
              static_cast<unsigned long long>(d.max_overcount));
  EXPECT_LE(per_min, 1.0);
  EXPECT_EQ(d.h.count(EventType::budget_exhausted), 0u);
}

TEST(Reservation, WithoutADurableReservationTheLoopDoesNotStep) {
  Harness h;
  const TherapyPlan plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10), mg(3));
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{880}}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
  h.run(minutes(20), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{5}}).ok());
  h.run(hours(2), seconds(1));
  EXPECT_EQ(h.st().steps_issued, 885u);
  EXPECT_EQ(h.count(EventType::budget_exhausted), 1u);
}

class FailingFsync : public io::FileOps {
 public:
  bool fail = false;
  int fsync(int fd) override { return fail ? -EIO : io::FileOps::fsync(fd); }
};

TEST(Reservation, AFailedFsyncReservesNothing) {
  JTempDir dir;
  FailingFsync ops;
  Harness h;
  app::JournalKeeper keeper(ops, dir.path, h.board, "/proc/sys/kernel/random/boot_id");
  (void)keeper.recover();
  CoreState s;
  h.core->export_state(s, h.now);
  ASSERT_FALSE(keeper.rewrite(s, 16, {}));
  EXPECT_EQ(keeper.reserved(), 16u);
  ops.fail = true;
  const auto e = keeper.checkpoint(s, 500);
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("Input/output error"), std::string::npos) << *e;
  EXPECT_EQ(keeper.reserved(), 16u) << "nothing may be granted on a failed fsync";
  EXPECT_FALSE(keeper.healthy());
  ops.fail = false;
  EXPECT_TRUE(keeper.checkpoint(s, 500)) << "poisoned until rewritten";
  ASSERT_FALSE(keeper.rewrite(s, 500, {}));
  EXPECT_TRUE(keeper.healthy());
  EXPECT_EQ(keeper.reserved(), 500u);
}

}  // namespace
}  // namespace thecal::test
