// SPEC S7 on the real policy code (app::Durability inside app::PumpService): the loop never
// steps past a durable reservation, checkpoints are rare at steady basal, and a journal that
// fails at run time (ENOSPC on write, EIO on fsync) stops delivery with storage_fault.
#include <gtest/gtest.h>

#include "tests/app/service_fixture.hpp"

namespace thecal::test {
namespace {

TEST(Durability, TheLoopNeverStepsPastADurableReservation) {
  Unit u;
  u.ready(bolus_yaml());
  std::uint64_t checks = 0;
  const auto check = [&] {
    ++checks;
    const auto& core = *u.loop.h.core;
    ASSERT_LE(core.status().steps_issued, u.ops.durable_reservation()) << "after " << checks << " cycles";
    // What the core may still step: never beyond what is on disk.
    ASSERT_LE(core.status().steps_issued + static_cast<std::uint64_t>(core.budget().count), u.ops.durable_reservation())
        << "after " << checks << " cycles";
  };
  // Basal, a patient bolus (a higher rate, so reservations grow), a suspend and a resume.
  u.run(hours(1), seconds(1), check);
  ASSERT_TRUE(u.call([&](auto d) { u.service->request_bolus(patient(), d); }).ok());
  u.run(minutes(30), msec(250), check);
  ASSERT_TRUE(u.call([&](auto d) { u.service->suspend(clinician(), Duration{0}, d); }).ok());
  u.run(minutes(5), seconds(1), check);
  ASSERT_TRUE(u.call([&](auto d) { u.service->resume(clinician(), d); }).ok());
  u.run(hours(2), seconds(1), check);
  EXPECT_GT(u.loop.h.core->status().steps_issued, 800U);  // it did deliver: ~4.2 steps/min + 400 bolus steps
  EXPECT_EQ(u.logged("budget_exhausted"), 0U) << "reservations came too late: delivery was held back";
  // What a restart would find on disk covers everything issued.
  app::JournalKeeper again(io::real_file_ops(), u.dir.path, u.loop.h.board, "/proc/sys/kernel/random/boot_id");
  const app::Recovery rec = again.recover();
  ASSERT_EQ(rec.kind, app::Recovery::Kind::restored) << rec.explanation;
  EXPECT_GE(rec.reserved, u.loop.h.core->status().steps_issued);
}

TEST(Durability, AStalledMainThreadLeavesTheLoopAtTheDurableReservation) {
  Unit u;
  u.ready(continuous_yaml());
  u.run(minutes(30), seconds(1));
  // The main thread stops polling (a slow disk, a flood): the loop goes on alone.
  for (int i = 0; i < 2 * 3600; ++i) u.loop.cycle(seconds(1));
  const std::uint64_t durable = u.ops.durable_reservation();
  EXPECT_EQ(u.loop.h.core->status().steps_issued, durable) << "the loop should use up exactly what is durable";
  EXPECT_EQ(u.loop.h.count(EventType::budget_exhausted), 1U);
  // Once the main thread is back, delivery goes on.
  u.run(minutes(30), seconds(1));
  EXPECT_GT(u.loop.h.core->status().steps_issued, durable + 50);
  EXPECT_LE(u.loop.h.core->status().steps_issued, u.ops.durable_reservation());
}

TEST(Durability, SteadyBasalCheckpointsAtMostOncePerMinute) {
  Unit u;
  u.ready(continuous_yaml());
  const std::uint64_t fsyncs_before = u.service->journal_writes();
  const std::uint64_t steps_before = u.loop.h.core->status().steps_issued;
  const int minutes_run = 12 * 60;
  u.run(minutes(minutes_run), seconds(1));
  const std::uint64_t fsyncs = u.service->journal_writes() - fsyncs_before;
  const std::uint64_t steps = u.loop.h.core->status().steps_issued - steps_before;
  // 1.5 mg/day at 1 mg/mL is 6000 steps a day: 3000 in 12 h.
  EXPECT_NEAR(static_cast<double>(steps), 3000.0, 2.0);
  EXPECT_GT(fsyncs, 0U);
  EXPECT_LE(static_cast<double>(fsyncs) / minutes_run, 1.0) << fsyncs << " fsyncs in " << minutes_run << " min";
  EXPECT_EQ(u.logged("budget_exhausted"), 0U);
  std::cout << "[ figures  ] " << fsyncs << " fsyncs in " << minutes_run << " simulated minutes ("
            << static_cast<double>(fsyncs) / minutes_run << "/min), " << steps << " steps\n";
}

/// Runs until the journal fails at its next write, then checks SPEC S7's answer.
void expect_storage_fault_stops_delivery(Unit& u) {
  // The failure shows at the next write: a checkpoint due when half a reservation is used
  // up (about 5 simulated minutes at this rate).
  int cycles = 0;
  while (!u.alarm(AlarmCode::storage_fault) && cycles < 3600) {
    u.run(seconds(1));
    ++cycles;
  }
  ASSERT_TRUE(u.alarm(AlarmCode::storage_fault)) << "no storage_fault within an hour of a failing journal";
  EXPECT_EQ(u.service->status().state, PumpState::stopped);
  ASSERT_FALSE(u.heard.raised.empty());
  EXPECT_EQ(u.heard.raised.back().first, AlarmCode::storage_fault);
  const std::uint64_t durable = u.ops.durable_reservation();
  const std::uint64_t issued = u.loop.h.core->status().steps_issued;
  EXPECT_LE(issued, durable);
  u.run(hours(1), seconds(10));
  EXPECT_EQ(u.loop.h.core->status().steps_issued, issued) << "it delivered with a failing journal";
  // A programming act now is applied but cannot be made durable: the caller is told so.
  const auto r = u.call([&](auto d) { u.service->acknowledge_alarm(clinician(), "storage_fault", d); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, app::ErrorCode::invalid_state);
  EXPECT_NE(r.error->message.find("could not be made durable"), std::string::npos) << r.error->message;
}

TEST(Durability, DiskFullAtRunTimeRaisesStorageFaultAndStopsDelivery) {
  Unit u;
  u.ready(continuous_yaml());
  u.run(minutes(20), seconds(1));
  u.ops.write_errno = ENOSPC;
  expect_storage_fault_stops_delivery(u);
}

TEST(Durability, AnFsyncErrorAtRunTimeRaisesStorageFaultAndStopsDelivery) {
  Unit u;
  u.ready(continuous_yaml());
  u.run(minutes(20), seconds(1));
  u.ops.fsync_errno = EIO;
  expect_storage_fault_stops_delivery(u);
}

TEST(Durability, AHealedJournalIsRewrittenAndGrantsAgainAfterResume) {
  Unit u;
  u.ready(continuous_yaml());
  u.ops.fsync_errno = EIO;
  expect_storage_fault_stops_delivery(u);
  u.ops.fsync_errno = 0;
  // The rewrite is retried every 10 s of the service's clock (not the simulated one).
  u.mono_us += app::Durability::kRewriteRetryUs;
  u.run(seconds(2));
  EXPECT_TRUE(u.journal.healthy());
  const auto resumed = u.call([&](auto d) { u.service->resume(clinician(), d); });
  ASSERT_TRUE(resumed.ok()) << resumed.error->message;
  const std::uint64_t issued = u.loop.h.core->status().steps_issued;
  u.run(minutes(30), seconds(1));
  EXPECT_GT(u.loop.h.core->status().steps_issued, issued + 100);
  EXPECT_LE(u.loop.h.core->status().steps_issued, u.ops.durable_reservation());
}

TEST(Durability, RecoveryAtStartGrantsOnlyTheFirstDurableReservation) {
  Unit first;
  first.ready(continuous_yaml());
  first.run(hours(1), seconds(1));
  const std::uint64_t issued = first.loop.h.core->status().steps_issued;
  // A second unit on the same state directory is the same pump after a crash.
  SyncChannel loop;
  app::EventLog events{1000, false};
  app::JournalKeeper journal(io::real_file_ops(), first.dir.path, loop.h.board, "/proc/sys/kernel/random/boot_id");
  const app::Recovered rec = app::recover_state(journal, *loop.h.core, loop.h.now, events);
  EXPECT_TRUE(rec.restored_plan);
  EXPECT_FALSE(rec.storage_fault);
  EXPECT_EQ(loop.h.core->state(), PumpState::infusing);
  EXPECT_GE(loop.h.core->status().steps_issued, issued);  // the unconfirmed part counts as pumped
  EXPECT_EQ(static_cast<std::uint64_t>(rec.granted_steps), journal.reserved());
  EXPECT_GT(journal.reserved(), loop.h.core->status().steps_issued);
}

}  // namespace
}  // namespace thecal::test
