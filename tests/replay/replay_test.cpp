// S15 on a whole scenario: the real core and the real simulated plant driven cycle by cycle
// as loop/DosingLoop drives them, the inputs kept by the loop's own InputCapture; the
// recording replayed by replay::replay() must match bit for bit, and a recording with one
// input changed or missing must diverge at the input where the difference shows.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/sim_plant.hpp"
#include "loop/input_capture.hpp"
#include "replay/replay.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal::replay {
namespace {

struct Rig {
  BoardParams board;
  Duration period = msec(100);
  Now now{mono_us(1'000'000), wall_us(1'790'000'000'000'000)};
  std::unique_ptr<PumpCore> core;
  std::unique_ptr<io::SimPlant> plant;
  std::unique_ptr<loop::InputCapture> cap;
  std::string bytes;
  std::uint64_t records = 0;
  std::uint64_t inputs = 0;
  std::uint64_t steps = 0;
  std::uint64_t cycles = 0;
  std::vector<Command> queue;
  std::vector<Reply> replies;
  std::uint64_t id = 0;
  // Tampering: change an input before it is written, or drop it.
  std::function<void(io::LoopInput&)> tamper;
  std::function<bool(const io::LoopInput&)> drop;

  Rig() {
    board.loop_period = period;
    core = std::make_unique<PumpCore>(board, now);
    plant = std::make_unique<io::SimPlant>(board);
    cap = std::make_unique<loop::InputCapture>(board.steps_per_encoder_pulse);
    // As thecald's recovery: an alarm raised on the core directly (its event still pending,
    // logged at the first cycle), the state exported, the budget granted.
    Command alarm;
    alarm.kind = CommandKind::raise_alarm;
    alarm.caller = {kSystemUid, false};
    alarm.alarm = AlarmCode::restart;
    (void)core->apply(alarm, now);
    auto s = std::make_unique<CoreState>();
    core->export_state(*s, now);
    Command g;
    g.kind = CommandKind::grant_budget;
    g.caller = {kSystemUid, false};
    g.steps = Steps{10'000'000};
    (void)core->apply(g, now);
    EXPECT_EQ(core->events_pending(), 1U);
    bytes = io::recording_header() + io::encode_start(board, now, core->budget().count, *s, core->events_pending());
    ++records;
  }

  void send(Command c, std::uint32_t uid = 1000, bool clinician = true) {
    c.id = ++id;
    c.caller = {uid, clinician};
    queue.push_back(c);
  }

  void cycle(Duration advance) {
    now = Now{now.mono + advance, now.wall + advance};
    auto sink = [this](const io::LoopInput& in) {
      if (drop && drop(in)) return;
      io::LoopInput r = in;
      if (tamper) tamper(r);
      bytes += io::encode_input(r);
      ++records;
      ++inputs;
    };
    cap->begin_cycle(now, period, core->status(), sink);
    for (const auto& c : queue) {
      const std::uint64_t d = io::status_digest(core->status());
      const Reply r = core->apply(c, now);
      cap->command(c, r, d, sink);
      replies.push_back(r);
    }
    queue.clear();
    const SensorInputs in = plant->read(now.mono);
    cap->sensors(in, core->status(), sink);
    Actuation out;
    core->tick(now, in, out);
    plant->write(out, now.mono);
    cap->end_cycle(out.steps);
    core->drain_events([this](const Event& e) {
      bytes += io::encode_event(e);
      ++records;
    });
    steps += out.steps;
    ++cycles;
  }
  void run(Duration d) {
    for (Duration t{0}; t < d; t += period) cycle(period);
  }
  [[nodiscard]] std::string recording() const { return bytes + io::encode_end(records); }
};

TherapyPlan plan() {
  TherapyPlan p = test::flex_plan(mg(3));
  p.periodic.push_back({hours(12), mg(0.1), minutes(30)});
  p.patient_bolus = PatientBolusRule{mg(0.1), minutes(10), hours(3), 4};
  return p;
}

/// Load, fill, prime and start.
void start_infusing(Rig& r, const TherapyPlan& p) {
  r.send(Command{.kind = CommandKind::load_prescription, .plan = &p});
  r.send(Command{.kind = CommandKind::refill, .volume = mL(20), .withdrawn = uL(0)});
  r.run(seconds(1));
  r.send(Command{.kind = CommandKind::prime, .volume = uL(220)});
  r.run(minutes(20));
  r.send(Command{.kind = CommandKind::start});
}

/// A day and more of therapy with every kind of input: programming acts, a fault, a
/// wall-clock jump, a late cycle, a change of period (as a time-scale change makes it).
void scenario(Rig& r, const TherapyPlan& p) {
  start_infusing(r, p);
  r.run(hours(2));
  r.send(Command{.kind = CommandKind::clinician_bolus, .dose = mg(0.05), .duration = minutes(10)});
  r.run(minutes(30));
  r.send(Command{.kind = CommandKind::patient_bolus}, 1001, false);
  r.run(minutes(10));
  r.send(Command{.kind = CommandKind::patient_bolus}, 1001, false);  // refused: lockout
  r.run(minutes(5));
  r.plant->inject(io::SimFault::occlusion, true);
  r.run(minutes(1));
  r.plant->inject(io::SimFault::occlusion, false);
  r.run(seconds(10));
  r.send(Command{.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion});
  r.run(seconds(1));
  r.send(Command{.kind = CommandKind::resume});
  r.run(hours(1));
  r.now.wall += hours(2);  // an NTP step
  r.run(hours(1));
  r.cycle(r.period * 3);  // a late cycle
  for (int i = 0; i < 50; ++i) r.cycle(Duration{0});  // the simulator's clock held for a grant
  r.period = msec(200);   // the time scale doubled
  r.run(hours(22) + minutes(7));
  r.send(Command{.kind = CommandKind::export_state});  // the last input: the end of the run
  r.cycle(r.period);
}

std::size_t count_refused(const Rig& r) {
  std::size_t n = 0;
  for (const auto& x : r.replies) n += x.ok() ? 0 : 1;
  return n;
}

TEST(Replay, AWholeScenarioReplaysBitForBitAndFast) {
  const TherapyPlan p = plan();
  Rig r;
  scenario(r, p);
  ASSERT_EQ(count_refused(r), 1U);  // the second patient bolus, in lockout
  ASSERT_GT(r.steps, 1000U);
  const io::Scan scan = io::scan_recording(r.recording());
  ASSERT_TRUE(scan.has_end) << scan.problem;
  const Result res = replay(scan);
  ASSERT_FALSE(res.divergence) << res.divergence->input << ": " << res.divergence->what;
  EXPECT_TRUE(res.violations.empty()) << res.violations.front().rule << " " << res.violations.front().what;
  EXPECT_EQ(res.problem, "");
  EXPECT_EQ(res.runs, 1U);
  EXPECT_EQ(res.inputs, r.inputs);
  EXPECT_EQ(res.cycles, r.cycles);
  EXPECT_EQ(res.steps, r.steps);
  EXPECT_GT(res.events_checked, 20U);
  // The replay jumped most cycles (fast-forward); the recording is small.
  EXPECT_LT(res.computed_cycles * 5, res.cycles);
  EXPECT_LT(r.bytes.size(), 64U * 1024U) << r.bytes.size();
  // Every kind of input was kept: clock (start, wall jump, late cycle, period), commands, sensors.
  std::size_t clocks = 0, sensors = 0, commands = 0;
  for (const auto& x : scan.records) {
    clocks += x.kind == io::RecKind::clock ? 1 : 0;
    sensors += x.kind == io::RecKind::sensors ? 1 : 0;
    commands += x.kind == io::RecKind::command ? 1 : 0;
  }
  EXPECT_GE(clocks, 5U + 26U * 6U);  // and one every 10 min
  EXPECT_GE(sensors, 2U);
  EXPECT_EQ(commands, 10U);
}

TEST(Replay, AStopReaching48HoursReplaysWithItsRiskEvents) {
  // S14 through the recorder: suspended for 50 h at 20 s cycles (a 20,000x time scale), then
  // resumed: the 48 h mark and the resume's entry are in the recording, and the replay
  // (fast-forward between the recorded inputs) reproduces them bit for bit.
  const TherapyPlan p = plan();
  Rig r;
  start_infusing(r, p);
  r.run(hours(1));
  r.send(Command{.kind = CommandKind::suspend});
  r.cycle(r.period);
  r.period = seconds(20);
  r.run(hours(50));
  r.period = msec(100);
  r.send(Command{.kind = CommandKind::resume});
  r.run(hours(1));
  r.send(Command{.kind = CommandKind::export_state});
  r.cycle(r.period);
  const io::Scan scan = io::scan_recording(r.recording());
  ASSERT_TRUE(scan.has_end) << scan.problem;
  std::size_t risk_records = 0;
  for (const auto& x : scan.records) {
    risk_records += x.kind == io::RecKind::event && x.event_type == EventType::risk_event ? 1 : 0;
  }
  EXPECT_EQ(risk_records, 2U);  // the mark, then the resume after it
  const Result res = replay(scan);
  ASSERT_FALSE(res.divergence) << res.divergence->input << ": " << res.divergence->what;
  EXPECT_TRUE(res.violations.empty()) << res.violations.front().rule << " " << res.violations.front().what;
  EXPECT_EQ(res.problem, "");
  EXPECT_EQ(res.steps, r.steps);
  EXPECT_EQ(res.cycles, r.cycles);
}

TEST(Replay, AChangedCommandDivergesAtThatCommand) {
  const TherapyPlan p = plan();
  Rig r;
  r.tamper = [](io::LoopInput& in) {
    if (in.kind == io::RecKind::command && in.cmd.kind == CommandKind::clinician_bolus) in.cmd.dose = mg(0.06);
  };
  scenario(r, p);
  const io::Scan scan = io::scan_recording(r.recording());
  const Result res = replay(scan);
  ASSERT_TRUE(res.divergence);
  const auto& rec = scan.records.at(res.divergence->record);
  EXPECT_EQ(rec.kind, io::RecKind::command);
  EXPECT_EQ(rec.cmd.kind, CommandKind::clinician_bolus);
  EXPECT_NE(res.divergence->input.find("command clinician_bolus by uid 1000"), std::string::npos) << res.divergence->input;
  EXPECT_NE(res.divergence->what.find("60.000000 mcg"), std::string::npos) << res.divergence->what;
}

TEST(Replay, AMissingSensorInputDivergesWhereItsAbsenceShows) {
  const TherapyPlan p = plan();
  Rig r;
  std::uint64_t dropped_cycle = 0;
  r.drop = [&](const io::LoopInput& in) {
    if (in.kind == io::RecKind::sensors && in.in.occlusion && dropped_cycle == 0) {
      dropped_cycle = in.cycle;
      return true;
    }
    return false;
  };
  scenario(r, p);
  ASSERT_GT(dropped_cycle, 0U);
  const io::Scan scan = io::scan_recording(r.recording());
  const Result res = replay(scan);
  ASSERT_TRUE(res.divergence);
  // The first input after the lost one: the occlusion's end, where the pump was stopped
  // and the replay is not.
  const auto& rec = scan.records.at(res.divergence->record);
  EXPECT_GT(rec.cycle, dropped_cycle);
  for (std::size_t i = 0; i < res.divergence->record; ++i) {
    const auto& x = scan.records[i];
    const bool input = x.kind == io::RecKind::clock || x.kind == io::RecKind::command || x.kind == io::RecKind::sensors;
    EXPECT_FALSE(input && x.cycle > dropped_cycle) << "an earlier input after the lost one: record " << i;
  }
  EXPECT_NE(res.divergence->what.find("status"), std::string::npos) << res.divergence->what;
}

TEST(Replay, ARecordingCutShortMatchesAsFarAsItGoesAndSaysSo) {
  const TherapyPlan p = plan();
  Rig r;
  scenario(r, p);
  const std::string whole = r.recording();
  const io::Scan full = io::scan_recording(whole);
  const std::size_t cut = full.offsets[full.offsets.size() / 2] + 3;  // torn inside a record
  const io::Scan scan = io::scan_recording(std::string_view(whole).substr(0, cut));
  EXPECT_NE(scan.problem.find("torn"), std::string::npos);
  const Result res = replay(scan);
  EXPECT_FALSE(res.divergence) << res.divergence->what;
  EXPECT_FALSE(res.complete);
  EXPECT_LT(res.cycles, r.cycles);
}

}  // namespace
}  // namespace thecal::replay
