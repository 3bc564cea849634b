// The flight recorder's figures (SPEC 7, issue 15 item 7): recorder bytes per day of pump
// time at steady basal with a few programming acts, and the replay time of a 30-day
// recording at the 1 kHz loop.
//
// The 30 days are made as the dosing thread records them: a 1 ms loop, the flex example
// with its periodic dose, the daemon's own inputs (a journal grant and a checkpoint export
// every 7 minutes, as thecald does at steady basal), a patient bolus a day and a clinician
// bolus a week, and the capture's checkpoint clock record every 10 min.  Between inputs the
// maker jumps the quiet cycles with PumpCore::fast_forward (whose equality with 1 kHz
// ticking is tested bit for bit in tests/control/fast_forward_test.cpp): ticking 2.6 billion
// cycles here would take longer than the whole bench.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "bench/common.hpp"
#include "bench/core_bench.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/pump_core.hpp"
#include "io/atomic_file.hpp"
#include "io/recording.hpp"
#include "replay/replay.hpp"

namespace thecal::bench {

namespace {

struct Maker {
  BoardParams board;
  Duration period = msec(1);
  std::unique_ptr<PumpCore> core;
  IdealPlant plant{};
  Now now{mono_us(1'000'000'000), wall_us(1'790'000'000'000'000)};
  std::uint64_t cycle = 0;
  std::string bytes;
  std::uint64_t records = 0;
  std::uint64_t inputs = 0;
  std::uint64_t id = 0;

  Maker() {
    core = std::make_unique<PumpCore>(board, now);
    auto s = std::make_unique<CoreState>();
    core->export_state(*s, now);
    bytes = io::recording_header() + io::encode_start(board, now, 0, *s);
    ++records;
    now = Now{now.mono + period, now.wall + period};  // the loop's first cycle comes after the start
  }
  void event_out() {
    core->drain_events([this](const Event& e) {
      bytes += io::encode_event(e);
      ++records;
    });
  }
  std::uint64_t snapshots = 0;
  std::size_t snapshot_bytes = 0;
  /// One cycle with inputs: a clock record (first cycle, checkpoint), a mid-run snapshot
  /// (a new segment, once a day of pump time as thecald does), and commands.
  void active(bool clock, std::vector<Command> cmds, bool snapshot = false) {
    if (clock) {
      io::LoopInput r;
      r.kind = io::RecKind::clock;
      r.cycle = cycle;
      r.digest = io::status_digest(core->status());
      r.now = now;
      r.period = period;
      bytes += io::encode_input(r);
      ++records;
      ++inputs;
    }
    if (snapshot) {
      auto image = std::make_unique<CoreImage>();
      if (!core->export_image(*image)) throw std::runtime_error("recorder bench: events pending at a snapshot");
      io::LoopInput r;
      r.kind = io::RecKind::snapshot;
      r.cycle = cycle;
      r.digest = io::status_digest(core->status());
      r.now = now;
      r.period = period;
      r.in = plant.in;
      r.plant_steps = plant.steps;
      r.image = image.get();
      const std::string rec = io::encode_snapshot(board, r);
      snapshot_bytes += rec.size();
      bytes += rec;
      ++records;
      ++snapshots;
    }
    for (auto& c : cmds) {
      c.id = ++id;
      io::LoopInput r;
      r.kind = io::RecKind::command;
      r.cycle = cycle;
      r.digest = io::status_digest(core->status());
      auto out = std::make_unique<CoreState>();
      if (c.kind == CommandKind::export_state) c.state_out = out.get();
      r.reply = core->apply(c, now);
      r.cmd = c;
      bytes += io::encode_input(r);
      ++records;
      ++inputs;
    }
    Actuation a;
    core->tick(now, plant.in, a);
    plant.execute(a.steps, board.steps_per_encoder_pulse);
    event_out();
  }
  /// Quiet cycles up to (not including) cycle `to`; `now` then is the time of cycle `to`.
  void quiet_until(std::uint64_t to) {
    std::int64_t n = static_cast<std::int64_t>(to - cycle - 1);
    while (n > 0) {
      const FastForward f = core->fast_forward(now, period, n, plant);
      now = f.now;
      n -= f.cycles;
      event_out();
    }
    now = Now{now.mono + period, now.wall + period};
    cycle = to;
  }
};

}  // namespace

Json recorder_bench(const std::string& share, double days) {
  Json out = Json::object();
  out["method"] =
      "a recording made as the dosing thread makes it (1 ms loop, examples/prescription-flex.yaml with its periodic "
      "dose, a journal grant and checkpoint every 7 min as thecald does at steady basal, a patient bolus a day, a "
      "clinician bolus a week, the capture's checkpoint every 10 min, a snapshot of the core a day that starts a new "
      "segment), the quiet cycles between inputs jumped with "
      "the core's exact fast-forward; then replayed whole by thecal-replay's engine (scan, checksums, digests, "
      "events, independent checks)";
  std::string err;
  const auto lib = config::load_drug_library(share + "/config/drugs.yaml");
  const auto text = io::read_file(share + "/examples/prescription-flex.yaml", &err);
  if (!lib.library || !text) throw std::runtime_error("recorder bench: cannot read the example or the library");
  Maker m;
  config::PrescriptionContext pc{&*lib.library, m.board, m.now.wall};
  const auto parsed = config::parse_prescription(*text, "prescription-flex.yaml", pc);
  if (!parsed.plan) throw std::runtime_error("recorder bench: the flex example does not parse");
  const TherapyPlan plan = *parsed.plan;

  const std::uint64_t per_min = 60'000;  // cycles
  const auto total = static_cast<std::uint64_t>(days * 1440.0) * per_min;
  m.active(true, {Command{.kind = CommandKind::grant_budget, .steps = Steps{100}},
                  Command{.kind = CommandKind::load_prescription, .plan = &plan},
                  Command{.kind = CommandKind::refill, .volume = mL(20), .withdrawn = uL(0)}});
  m.quiet_until(1);
  m.active(false, {Command{.kind = CommandKind::grant_budget, .steps = Steps{2'000}},
                   Command{.kind = CommandKind::prime, .volume = uL(220)}});
  m.quiet_until(20 * per_min);
  m.active(false, {Command{.kind = CommandKind::start}});
  std::uint64_t next_grant = m.cycle + 7 * per_min;
  std::uint64_t next_check = m.cycle + 10 * per_min;
  std::uint64_t next_patient = m.cycle + 9ULL * 60ULL * per_min;
  std::uint64_t next_clinician = m.cycle + 3ULL * 1440ULL * per_min;
  std::uint64_t next_snapshot = m.cycle + 1440ULL * per_min;  // io::kSegmentSpan
  const std::uint64_t day1_end = 1440 * per_min;
  std::size_t bytes_day1 = 0;
  while (m.cycle < total) {
    const std::uint64_t next = std::min({next_grant, next_check, next_patient, next_clinician, next_snapshot});
    if (next >= total) break;
    if (bytes_day1 == 0 && next >= day1_end) bytes_day1 = m.bytes.size();
    m.quiet_until(next);
    std::vector<Command> cmds;
    const bool check = next == next_check;
    if (next == next_grant) {
      cmds.push_back(Command{.kind = CommandKind::grant_budget, .steps = Steps{40}});
      cmds.push_back(Command{.kind = CommandKind::export_state});
      next_grant += 7 * per_min;
    }
    if (check) next_check += 10 * per_min;
    if (next == next_patient) {
      cmds.push_back(Command{.kind = CommandKind::patient_bolus, .caller = {1001, false}});
      next_patient += 1440 * per_min;
    }
    if (next == next_clinician) {
      cmds.push_back(Command{.kind = CommandKind::clinician_bolus, .caller = {1000, true}, .dose = mcg(50),
                             .duration = minutes(10)});
      next_clinician += 7ULL * 1440ULL * per_min;
    }
    const bool snap = next == next_snapshot;
    if (snap) next_snapshot += 1440ULL * per_min;
    m.active(check, std::move(cmds), snap);
  }
  m.bytes += io::encode_end(m.records);
  const double made_days = static_cast<double>(m.cycle) / static_cast<double>(1440 * per_min);

  const auto t0 = std::chrono::steady_clock::now();
  const io::Scan scan = io::scan_recording(m.bytes);
  const replay::Result r = replay::replay(scan);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  Json size = Json::object();
  size["bytes_total"] = static_cast<std::int64_t>(m.bytes.size());
  size["days"] = made_days;
  size["bytes_per_day"] = static_cast<double>(m.bytes.size()) / made_days;
  size["bytes_first_day"] = static_cast<std::int64_t>(bytes_day1);
  size["records"] = static_cast<std::int64_t>(m.records);
  size["snapshots"] = static_cast<std::int64_t>(m.snapshots);
  size["snapshot_bytes_each"] = m.snapshots > 0 ? static_cast<double>(m.snapshot_bytes) / static_cast<double>(m.snapshots) : 0.0;
  size["inputs"] = static_cast<std::int64_t>(m.inputs);
  size["target"] = "<= 1 MiB per day at steady basal with a few programming acts";
  size["target_met"] = static_cast<double>(m.bytes.size()) / made_days <= 1024.0 * 1024.0;
  out["size"] = std::move(size);
  Json rep = Json::object();
  rep["seconds"] = secs;
  rep["cycles"] = static_cast<std::int64_t>(r.cycles);
  rep["computed_cycles"] = static_cast<std::int64_t>(r.computed_cycles);
  rep["steps"] = static_cast<std::int64_t>(r.steps);
  rep["events_checked"] = static_cast<std::int64_t>(r.events_checked);
  rep["matched"] = !r.divergence && r.violations.empty() && r.complete;
  rep["target"] = "replay of a 30-day recording < 10 s";
  rep["target_met"] = secs < 10.0 && !r.divergence;
  out["replay"] = std::move(rep);
  out["fsyncs"] =
      "none of its own beyond S7's: the recorder's file is fdatasync'd once after each journal fsync (the journal's "
      "count is journal.steady_basal_simulated), so the device sees at most twice the journal's sync count, each "
      "covering the same interval";
  (void)std::fprintf(stderr, "thecal-bench: recorder: %.0f bytes/day over %.1f days (%llu snapshots of %.0f bytes), replay %.2f s (%llu cycles, %llu computed)%s\n",
      static_cast<double>(m.bytes.size()) / made_days, made_days, static_cast<unsigned long long>(m.snapshots),
      m.snapshots > 0 ? static_cast<double>(m.snapshot_bytes) / static_cast<double>(m.snapshots) : 0.0, secs, static_cast<unsigned long long>(r.cycles),
      static_cast<unsigned long long>(r.computed_cycles), r.divergence ? (" DIVERGED: " + r.divergence->what).c_str() : "");
  if (r.divergence) out["divergence"] = r.divergence->input + ": " + r.divergence->what;
  return out;
}

}  // namespace thecal::bench
