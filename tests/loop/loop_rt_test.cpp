// SPEC 7 / issue 8: "no heap allocation and no page fault in the loop after start".
// The real DosingLoop (SCHED_FIFO, absolute clock_nanosleep) runs the real PumpCore on the
// simulated plant for a few seconds while commands, boluses, faults and alarms flow; every
// heap call of the loop thread (interposed malloc/free, tests/daemon/alloc_counter.cpp) and
// its page faults (getrusage RUSAGE_THREAD / procfs, DosingLoop::page_faults) are counted.
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "control/pump_core.hpp"
#include "loop/dosing_loop.hpp"
#include "loop/loop_clock.hpp"
#include "io/recording.hpp"
#include "io/sim_plant.hpp"
#include "replay/replay.hpp"
#include "tests/support/alloc_counter.hpp"

namespace thecal::loop {
namespace {

TherapyPlan bolus_plan() {
  TherapyPlan p;
  p.id = "loop-rt-test";
  p.drug = "morphine";
  p.phase = Phase::maintenance;
  p.concentration = mg_per_mL(10);
  p.reservoir_capacity = mL(20);
  p.low_alarm = mL(2);
  p.catheter_volume = uL(220);
  p.basal_mode = BasalMode::continuous;
  p.continuous_rate = mg_per_day(1.5);
  p.max_daily_dose = mg(3);
  p.patient_bolus = PatientBolusRule{mg(0.1), minutes(10), hours(3), 4};
  return p;
}

class LoopRt : public ::testing::Test {
 protected:
  void SetUp() override {
    // As thecald's main() does before it starts the dosing thread.
    ASSERT_EQ(mlockall(MCL_CURRENT | MCL_FUTURE), 0)
        << "mlockall: " << strerrordesc_np(errno) << " (needs CAP_IPC_LOCK or a large RLIMIT_MEMLOCK, like thecald)";
  }
  void TearDown() override { (void)munlockall(); }

  BoardParams board;
  Now t0{mono_us(real_monotonic_us()), wall_us(real_wall_us())};
  PumpCore core{board, t0};
  io::SimPlant plant{board};
  std::uint64_t next_id = 0;

  static LoopOptions options() {
    LoopOptions o;
    o.period = msec(1);
    o.priority = 80;
    o.simulated = true;
    o.time_scale = 600;  // priming (220 uL at 1 mL/h) takes about 1.3 s
    o.record = true;     // the flight recorder's capture runs too (S15): no allocation either
    return o;
  }

  // Posts a command and waits for its reply, draining events and statuses meanwhile as
  // the D-Bus thread does.
  Reply send(DosingLoop& loop, Command c) {
    c.id = ++next_id;
    c.caller = {1000, true};
    EXPECT_TRUE(loop.post(c));
    Reply got;
    bool have = false;
    for (int i = 0; i < 5000 && !have; ++i) {
      pump(loop);
      loop.drain_replies([&](const Reply& r) {
        if (r.id == c.id) {
          got = r;
          have = true;
        }
      });
      if (!have) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(have) << "no reply to " << to_string(c.kind);
    return got;
  }
  void pump(DosingLoop& loop) {
    // As thecald's channel: events, then the inputs (a command's plan is still ours), encoded.
    loop.drain_events([&](const Event& e) {
      ++events;
      if (e.type == EventType::wall_clock_jump) ++wall_jumps;
      recording += io::encode_event(e);
      ++records;
    });
    loop.drain_inputs([&](const io::LoopInput& in) {
      recording += in.kind == io::RecKind::gap ? io::encode_gap(in.cycle) : io::encode_input(in);
      ++records;
      ++inputs;
    });
    Status s;
    if (loop.latest_status(s)) last = s;
  }
  /// Drains the loop (as the D-Bus thread does) until it has run `n` more cycles or, with
  /// `until`, until that holds of the last status too; false at the deadline.
  template <class Pred>
  bool run_cycles(DosingLoop& loop, std::uint64_t n, Pred until) {
    const std::uint64_t target = loop.diagnostics().cycles + n;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      pump(loop);
      if (loop.diagnostics().cycles >= target && until(last)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling interval, not a wait
    }
    return false;
  }
  bool run_cycles(DosingLoop& loop, std::uint64_t n) {
    return run_cycles(loop, n, [](const Status&) { return true; });
  }
  std::uint64_t events = 0;
  std::uint64_t wall_jumps = 0;
  Status last;
  std::string recording;
  std::uint64_t records = 0;
  std::uint64_t inputs = 0;
  /// The start record, as thecald writes it before the loop runs.
  void begin_recording() {
    auto s = std::make_unique<CoreState>();
    core.export_state(*s, t0);
    recording = io::recording_header() + io::encode_start(board, t0, core.budget().count, *s, core.events_pending());
    records = 1;
  }
  /// S15 on the real thread: what the loop recorded (scaled simulated clock with its holds,
  /// time-scale changes, refills, alarms) replays bit for bit through the same core, and the
  /// independent checker finds no violation.
  void expect_replays_exactly(DosingLoop& loop, std::uint64_t steps_before_refill) {
    pump(loop);
    const io::Scan scan = io::scan_recording(recording + io::encode_end(records));
    ASSERT_TRUE(scan.has_end) << scan.problem;
    const replay::Result r = replay::replay(scan);
    ASSERT_FALSE(r.divergence) << r.divergence->input << ": " << r.divergence->what;
    EXPECT_TRUE(r.violations.empty()) << r.violations.front().rule << ": " << r.violations.front().what;
    EXPECT_EQ(r.problem, "");
    EXPECT_EQ(r.inputs, inputs);
    EXPECT_GE(r.inputs, 12u);  // 11 commands and the first clock at least
    EXPECT_GT(r.events_checked, 10u);
    // The loop ran past its last input; the replay stops at it, with every step commanded
    // until then (a stalled motor did not turn for some: the plant saw fewer).
    EXPECT_LE(r.steps, core.status().steps_issued);
    EXPECT_GT(r.steps, steps_before_refill);
  }
};

TEST_F(LoopRt, NoHeapCallAndNoPageFaultInTheLoopAfterStart) {
  const bool counting = test::heap_counting_available();
  DosingLoop loop(core, plant, options());
  const TherapyPlan plan = bolus_plan();

  // Every heap call of the dosing thread, from its creation on.
  test::watch_from_this_thread();
  ASSERT_FALSE(loop.start().has_value());
  while (!loop.running()) {
  }

  ASSERT_TRUE(send(loop, {.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::prime, .volume = uL(220)}).ok());
  ASSERT_TRUE(run_cycles(loop, 1, [](const Status& st) { return st.catheter_primed && st.state == PumpState::idle; }))
      << "priming did not finish";
  ASSERT_TRUE(send(loop, {.kind = CommandKind::start}).ok());
  ASSERT_TRUE(run_cycles(loop, 300));
  // Boluses (granted or refused, whatever this core's version does with them) and their
  // replies cross the queues too.
  (void)send(loop, {.kind = CommandKind::patient_bolus});
  ASSERT_TRUE(run_cycles(loop, 300));
  (void)send(loop, {.kind = CommandKind::patient_bolus});
  (void)send(loop, {.kind = CommandKind::clinician_bolus, .dose = mcg(20), .duration = minutes(5)});
  ASSERT_TRUE(run_cycles(loop, 300));
  // A high alarm: stop, buzzer, latch; then acknowledge and resume.
  plant.inject(io::SimFault::occlusion, true);
  EXPECT_TRUE(run_cycles(loop, 300, [](const Status& st) { return st.state == PumpState::stopped; }));
  EXPECT_EQ(last.state, PumpState::stopped);
  plant.inject(io::SimFault::occlusion, false);
  EXPECT_TRUE(send(loop, {.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion}).ok());
  EXPECT_TRUE(send(loop, {.kind = CommandKind::resume}).ok());
  ASSERT_TRUE(run_cycles(loop, 300));
  EXPECT_TRUE(send(loop, {.kind = CommandKind::suspend, .duration = minutes(30)}).ok());
  ASSERT_TRUE(run_cycles(loop, 500));

  const std::uint64_t heap_calls = test::other_thread_heap_calls();
  const LoopFaults faults = loop.page_faults();
  const LoopDiagnostics d = loop.diagnostics();
  loop.stop();

  EXPECT_GE(d.cycles, 1700u) << "the cycles waited for above";
  EXPECT_GT(events, 5u);
  EXPECT_GT(plant.steps_seen(), 880u) << "priming and delivery stepped the motor";
  if (counting) {
    EXPECT_EQ(heap_calls, 0u) << "heap calls by the dosing thread after start";
  }
  ASSERT_TRUE(faults.valid);
  EXPECT_EQ(faults.minor, 0) << "minor page faults in the dosing thread after start";
  EXPECT_EQ(faults.major, 0) << "major page faults in the dosing thread after start";
  const LoopFaults after = loop.page_faults();
  EXPECT_TRUE(after.valid) << "the last sample is kept after the thread ended";
  std::printf("loop: %llu cycles, %llu overruns, latency max %llu ns, RT %s; heap calls %llu; page faults %lld/%lld\n",
              static_cast<unsigned long long>(d.cycles), static_cast<unsigned long long>(d.overruns),
              static_cast<unsigned long long>(d.latency.max_ns), d.realtime ? "yes" : "no",
              static_cast<unsigned long long>(heap_calls), static_cast<long long>(faults.minor),
              static_cast<long long>(faults.major));
}

// The same promise through the rest of a pump's working life at 20,000x: flex steps every
// hour, a periodic dose every two hours, a refill with a new concentration (the bridge), a
// stall alarm while a dose runs, its acknowledgement and resume, and wall-clock steps
// forward and back (S8: logged, guarded).  Every one of those paths runs in the dosing
// thread: none may allocate or fault.
TEST_F(LoopRt, NoHeapCallAndNoPageFaultThroughFlexPeriodicDosesARefillAlarmsAndWallJumps) {
  const bool counting = test::heap_counting_available();
  DosingLoop loop(core, plant, options());
  TherapyPlan plan = bolus_plan();
  plan.id = "loop-rt-flex";
  plan.basal_mode = BasalMode::flex;
  plan.max_daily_dose = mg(10);
  for (int h = 0; h < 24; ++h) plan.flex_steps.push_back({hours(h), mg_per_day(h % 2 == 0 ? 1.0 : 2.0)});
  for (int h = 1; h < 24; h += 2) plan.periodic.push_back({hours(h), mcg(50), minutes(20)});
  TherapyPlan stronger = plan;
  stronger.id = "loop-rt-flex-20";
  stronger.concentration = mg_per_mL(20);

  begin_recording();
  test::watch_from_this_thread();
  ASSERT_FALSE(loop.start().has_value());
  while (!loop.running()) {
  }
  ASSERT_TRUE(send(loop, {.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::grant_budget, .steps = Steps{10'000'000}}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::prime, .volume = uL(220)}).ok());
  ASSERT_TRUE(run_cycles(loop, 1, [](const Status& st) { return st.catheter_primed && st.state == PumpState::idle; }))
      << "priming did not finish";
  ASSERT_TRUE(send(loop, {.kind = CommandKind::start}).ok());
  loop.set_time_scale(20'000);
  // Six simulated hours: six flex steps and three periodic doses.
  const WallTime started = last.wall;
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status& st) { return st.wall - started >= hours(6); }));
  const std::uint64_t steps_before_refill = plant.steps_seen();
  // The refill with a new concentration (a suspended pump; the bridge follows the tip).
  ASSERT_TRUE(send(loop, {.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::refill, .plan = &stronger, .volume = mL(20), .withdrawn = last.reservoir}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::resume}).ok());
  const WallTime refilled = last.wall;
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status& st) { return st.wall - refilled >= hours(6); }));
  EXPECT_NEAR(to_mg_per_mL(last.concentration), 20.0, 1e-9);
  // The wall clock steps 3 h forward, then 5 h back (an NTP step, a manual set): each is
  // logged, and flex steps and periodic doses go on by the new clock.
  loop.step_sim_wall(hours(3));
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status&) { return wall_jumps >= 1; })) << "the forward step is logged";
  loop.step_sim_wall(-hours(5));
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status&) { return wall_jumps >= 2; })) << "the backward step is logged";
  const WallTime stepped = last.wall;
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status& st) { return st.wall - stepped >= hours(3); }));
  // A stall while stepping: high alarm, stop; acknowledge, clear, resume.
  plant.inject(io::SimFault::motor_stall, true);
  EXPECT_TRUE(run_cycles(loop, 1, [](const Status& st) { return st.state == PumpState::stopped; }));
  plant.inject(io::SimFault::motor_stall, false);
  EXPECT_TRUE(send(loop, {.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::motor_stall}).ok());
  EXPECT_TRUE(send(loop, {.kind = CommandKind::resume}).ok());
  ASSERT_TRUE(run_cycles(loop, 500));

  const std::uint64_t heap_calls = test::other_thread_heap_calls();
  const LoopFaults faults = loop.page_faults();
  loop.stop();
  EXPECT_GT(steps_before_refill, 880u + 100u) << "six hours of flex basal and periodic doses stepped the motor";
  EXPECT_GT(plant.steps_seen(), steps_before_refill) << "and the bridge after the refill";
  EXPECT_GT(events, 10u);
  EXPECT_EQ(wall_jumps, 2u) << "each wall-clock step logged once";
  if (counting) {
    EXPECT_EQ(heap_calls, 0u) << "heap calls by the dosing thread after start";
  }
  ASSERT_TRUE(faults.valid);
  EXPECT_EQ(faults.minor, 0) << "minor page faults in the dosing thread after start";
  EXPECT_EQ(faults.major, 0) << "major page faults in the dosing thread after start";
  expect_replays_exactly(loop, steps_before_refill);
}

TEST_F(LoopRt, NoHeapCallAndNoPageFaultWithAnAdmixtureThroughARefillAndItsHoldBack) {
  // Issue 16: the per-drug catheter, ledgers, S1 hold-back and slot binding in the loop.
  const bool counting = test::heap_counting_available();
  DosingLoop loop(core, plant, options());
  TherapyPlan plan = bolus_plan();
  plan.id = "loop-rt-admixture";
  plan.max_daily_dose = mg(10);
  // Bupivacaine's own limit is reached within the run: S1 holds back for it.
  plan.admixture.push_back(AdmixtureDrug{FixedString<32>{"bupivacaine"}, mg_per_mL(5), mg(0.5)});
  TherapyPlan stronger = plan;
  stronger.id = "loop-rt-admixture-2";
  stronger.admixture[0].concentration = mg_per_mL(7.5);
  stronger.admixture.push_back(AdmixtureDrug{FixedString<32>{"clonidine"}, mcg_per_mL(50), mcg(300)});

  begin_recording();
  test::watch_from_this_thread();
  ASSERT_FALSE(loop.start().has_value());
  while (!loop.running()) {
  }
  ASSERT_TRUE(send(loop, {.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::grant_budget, .steps = Steps{10'000'000}}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::prime, .volume = uL(220)}).ok());
  ASSERT_TRUE(run_cycles(loop, 1, [](const Status& st) { return st.catheter_primed && st.state == PumpState::idle; }))
      << "priming did not finish";
  ASSERT_TRUE(send(loop, {.kind = CommandKind::start}).ok());
  loop.set_time_scale(20'000);
  const WallTime started = last.wall;
  ASSERT_TRUE(run_cycles(loop, 1, [&](const Status& st) { return st.wall - started >= hours(3); }));
  const std::uint64_t steps_before_refill = plant.steps_seen();
  ASSERT_TRUE(send(loop, {.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::refill, .plan = &stronger, .volume = mL(20), .withdrawn = last.reservoir}).ok());
  ASSERT_TRUE(send(loop, {.kind = CommandKind::resume}).ok());
  EXPECT_TRUE(run_cycles(loop, 1, [](const Status& st) { return st.daily_limit_hold; })) << "no hold-back";
  ASSERT_TRUE(run_cycles(loop, 500));

  const std::uint64_t heap_calls = test::other_thread_heap_calls();
  const LoopFaults faults = loop.page_faults();
  loop.stop();
  EXPECT_GT(steps_before_refill, 100u);
  ASSERT_EQ(last.drugs.size(), 3u);
  EXPECT_LE(to_mcg(last.drugs[1].delivered_24h), 500.0);
  if (counting) {
    EXPECT_EQ(heap_calls, 0u) << "heap calls by the dosing thread after start";
  }
  ASSERT_TRUE(faults.valid);
  EXPECT_EQ(faults.minor, 0) << "minor page faults in the dosing thread after start";
  EXPECT_EQ(faults.major, 0) << "major page faults in the dosing thread after start";

  expect_replays_exactly(loop, steps_before_refill);
}

// The counter itself must see a heap call from another thread, or the test above proves
// nothing.
TEST(AllocCounter, SeesAnotherThreadsAllocation) {
  ASSERT_TRUE(test::heap_counting_available()) << "built with a sanitizer: this binary is not registered then";
  test::watch_from_this_thread();
  std::thread t([] {
    void* p = std::malloc(64);  // NOLINT: the point is to allocate
    asm volatile("" : : "r"(p) : "memory");
    std::free(p);  // NOLINT
  });
  t.join();
  EXPECT_GE(test::other_thread_heap_calls(), 2u);
}

}  // namespace
}  // namespace thecal::loop
