#include "replay/replay.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <memory>

#include "loop/input_capture.hpp"

namespace thecal::replay {

namespace {

std::string iso(WallTime w) {
  const std::int64_t us = to_usec(w);
  const std::time_t s = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1'000'000));
  return buf;
}

std::string describe(const io::Recorded& r, std::size_t index) {
  std::string s = "input #" + std::to_string(index) + " at cycle " + std::to_string(r.cycle) + ": ";
  switch (r.kind) {
    case io::RecKind::clock:
      s += "clock (mono " + std::to_string(to_usec(r.now.mono)) + " us, wall " + iso(r.now.wall) + ", period " +
           std::to_string(r.period.count()) + " us)";
      break;
    case io::RecKind::command:
      s += "command " + std::string(to_string(r.cmd.kind)) + " by uid " + std::to_string(r.cmd.caller.uid);
      if (r.cmd.kind == CommandKind::clinician_bolus) {
        s += " (" + std::to_string(to_mcg(r.cmd.dose)) + " mcg over " + std::to_string(r.cmd.duration.count()) + " us)";
      }
      if (r.cmd.kind == CommandKind::grant_budget) s += " (" + std::to_string(r.cmd.steps.count) + " steps)";
      if (r.cmd.kind == CommandKind::raise_alarm || r.cmd.kind == CommandKind::acknowledge_alarm) {
        s += " (" + std::string(to_string(r.cmd.alarm)) + ")";
      }
      break;
    case io::RecKind::sensors:
      s += "sensors (occlusion " + std::to_string(r.in.occlusion) + ", disconnect " + std::to_string(r.in.disconnect) +
           ", driver_fault " + std::to_string(r.in.driver_fault) + ", low_battery " +
           std::to_string(r.in.low_battery) + ", bolus_button " + std::to_string(r.in.bolus_button) +
           ", hardware_ok " + std::to_string(r.in.hardware_ok) + ", encoder " + std::to_string(r.in.encoder_pulses) +
           ")";
      break;
    case io::RecKind::start: s += "start"; break;
    case io::RecKind::snapshot: s += "snapshot"; break;
    default: s += "other"; break;
  }
  return s;
}

/// One run: a start record and the inputs after it.
class Run {
 public:
  Run(const io::Recorded& start, Result& r, Checker& chk, const Options& opt)
      : r_(r), chk_(chk), opt_(opt), board_(start.board), skip_(start.events_before) {
    core_ = std::make_unique<PumpCore>(board_, start.now);
    if (start.kind == io::RecKind::snapshot) {
      // A segment that begins within a run: the core exactly as it was at the start of
      // that cycle (its clock record, if any, is in the segment before), the cycle open.
      core_->restore_image(*start.image);
      now_ = start.now;
      period_ = start.period;
      cycle_ = static_cast<std::int64_t>(start.cycle);
      plant_.in = start.in;
      plant_.steps = start.plant_steps;
      chk_.begin_run(board_, start.image->state);  // seeded: catheter, reservoir, totals, alarms
      chk_.clock(now_);
      snapshot_digest_ok_ = io::status_digest(core_->status()) == start.digest;
      return;
    }
    (void)core_->restore_state(*start.state, RestoreClock{start.now, Duration{0}}, 0);
    if (start.budget > 0) {
      Command g;
      g.kind = CommandKind::grant_budget;
      g.caller = {kSystemUid, false};
      g.steps = Steps{start.budget};
      (void)core_->apply(g, start.now);
    }
    core_->drain_events([](const Event&) {});
    now_ = start.now;
    chk_.begin_run(board_, *start.state);
  }

  void expect_event(const io::Recorded& e) {
    // The recovery's own events (state_lost, priming interrupted, ...) come first: they
    // happened before the start record's state, which already holds their effect.
    if (skip_ > 0) {
      --skip_;
      return;
    }
    expected_.push_back(e);
  }

  /// False: a snapshot whose image does not give the status recorded with it.
  [[nodiscard]] bool snapshot_ok(std::size_t index) {
    if (snapshot_digest_ok_) return true;
    index_ = index;
    return diverge("the snapshot's image does not give the status recorded with it");
  }

  /// Returns false once diverged.
  bool input(const io::Recorded& rec, std::size_t index) {
    index_ = index;
    rec_ = &rec;
    const auto c = static_cast<std::int64_t>(rec.cycle);
    if (c != cycle_) {
      if (cycle_ >= 0 && !finish_cycle()) return false;
      if (c < cycle_ + 1) return diverge("the recording's cycles go backwards");
      if (cycle_ < 0 && rec.kind != io::RecKind::clock) return diverge("the run's first input is not its clock");
      if (cycle_ >= 0 && c > cycle_ + 1 && !advance(c - cycle_ - 1)) return false;
      if (rec.kind == io::RecKind::clock) {
        now_ = rec.now;
        period_ = rec.period;
        chk_.clock(now_);
      } else {
        now_ = Now{now_.mono + period_, now_.wall + period_};
      }
      cycle_ = c;
    } else if (rec.kind == io::RecKind::clock) {
      return diverge("a clock input after other inputs of its cycle");
    }
    const std::uint64_t d = io::status_digest(core_->status());
    if (d != rec.digest) return diverge("the pump's status before this input differs (steps " +
                                        std::to_string(core_->status().steps_issued) + " here)");
    ++r_.inputs;
    switch (rec.kind) {
      case io::RecKind::command: {
        Command cmd = rec.cmd;
        cmd.plan = rec.plan ? &*rec.plan : nullptr;
        std::unique_ptr<CoreState> in;
        if (rec.state) in = std::make_unique<CoreState>(*rec.state);
        cmd.state_in = in.get();
        auto out = std::make_unique<CoreState>();
        cmd.state_out = rec.state_out ? out.get() : nullptr;
        const PumpState before = core_->state();
        const Reply reply = core_->apply(cmd, now_);
        resumed_ = resumed_ || (reply.ok() && (cmd.kind == CommandKind::resume || cmd.kind == CommandKind::start));
        if (reply.refusal != rec.reply.refusal || reply.dose != rec.reply.dose || reply.ends != rec.reply.ends) {
          return diverge("the reply differs: " + std::string(to_string(reply.refusal)) + ", " +
                         std::to_string(to_mcg(reply.dose)) + " mcg, ends " + std::to_string(to_usec(reply.ends)) +
                         " here; " + std::string(to_string(rec.reply.refusal)) + ", " +
                         std::to_string(to_mcg(rec.reply.dose)) + " mcg, ends " + std::to_string(to_usec(rec.reply.ends)) +
                         " recorded");
        }
        chk_.command(rec, reply, before, now_);
        break;
      }
      case io::RecKind::sensors:
        loop::InputCapture::resync(plant_, rec.in, board_.steps_per_encoder_pulse);
        chk_.sensors(rec.in, rec.cycle, now_);
        break;
      default: break;
    }
    return true;
  }

  /// After the last input: the open cycle, then on to the last recorded event.
  bool finish() {
    if (cycle_ >= 0 && !finish_cycle()) return false;
    while (!expected_.empty() && period_ > Duration{0}) {
      const Duration ahead = expected_.front().now.mono - now_.mono;
      if (ahead <= Duration{0}) break;
      const std::int64_t n = (ahead.count() + period_.count() - 1) / period_.count();
      if (!advance(n)) return false;
    }
    if (!expected_.empty()) {
      const auto& e = expected_.front();
      return diverge("the pump logged " + std::string(to_string(e.event_type)) + " at " + iso(e.now.wall) +
                     "; the replay does not");
    }
    chk_.end_run();
    return true;
  }

 private:
  bool finish_cycle() {
    Actuation out;
    core_->tick(now_, plant_.in, out);
    plant_.execute(out.steps, board_.steps_per_encoder_pulse);
    r_.steps += out.steps;
    ++r_.cycles;
    ++r_.computed_cycles;
    chk_.steps(static_cast<std::uint64_t>(cycle_), static_cast<std::uint64_t>(cycle_), out.steps, now_, resumed_);
    resumed_ = false;
    if (!drain(nullptr)) return false;
    // After the cycle's events; the alarms' pattern (the output's but during TestAlarm).
    chk_.cycle(now_, out.steps, core_->status().buzzer_pattern);
    last_pattern_ = core_->status().buzzer_pattern;
    observe();
    return true;
  }

  bool advance(std::int64_t n) {
    const auto first = static_cast<std::uint64_t>(cycle_ + 1);
    if (period_ <= Duration{0}) {
      // A clock that stands still (the simulator's hold): each cycle as the loop ran it.
      for (std::int64_t i = 0; i < n; ++i) {
        ++cycle_;
        if (!finish_cycle()) return false;
      }
      return true;
    }
    while (n > 0) {
      // The cycles that stepped or changed the buzzer's pattern, with their times, for the
      // checker (S1, S3, S5), in time order with the events.
      log_.last_pattern = last_pattern_;
      const FastForward ff = core_->fast_forward(now_, period_, n, plant_, &log_);
      if (ff.cycles <= 0) return diverge("the fast-forward made no progress");
      last_pattern_ = log_.last_pattern;
      now_ = ff.now;
      n -= ff.cycles;
      cycle_ += ff.cycles;
      r_.cycles += static_cast<std::uint64_t>(ff.cycles);
      r_.computed_cycles += ff.computed;
      r_.steps += ff.steps;
      chk_.steps(first, static_cast<std::uint64_t>(cycle_), ff.steps, now_, false);
      events_.clear();
      if (!drain(&events_)) return false;
      std::uint64_t logged = 0;
      std::size_t e = 0;
      for (std::size_t i = 0; i < log_.size; ++i) {
        const auto& c = log_.entries[i];
        for (; e < events_.size() && events_[e].mono <= c.now.mono; ++e) chk_.event(events_[e]);
        chk_.cycle(c.now, c.steps, c.pattern);
        logged += c.steps;
      }
      for (; e < events_.size(); ++e) chk_.event(events_[e]);
      if (logged != ff.steps) return diverge("the fast-forward's cycle log misses steps");
      chk_.sound(ff.now, core_->status().buzzer_pattern);
      observe();
    }
    return true;
  }

  /// Compares the core's events with the recorded ones; hands them to the checker, or to
  /// `defer` when the caller orders them with the cycles first.
  bool drain(std::vector<Event>* defer) {
    bool ok = true;
    core_->drain_events([&](const Event& e) {
      if (defer != nullptr) defer->push_back(e);
      else chk_.event(e);
      if (!ok) return;
      ++r_.events_checked;
      // Past the last recorded event: the pump's own copy may not have been written yet
      // when the recording was taken (the events of its last cycles).
      if (expected_.empty()) return;
      const auto& x = expected_.front();
      if (io::event_digest(e) != x.digest) {
        ok = diverge("event " + std::string(to_string(e.type)) + " at " + iso(e.when) + " here, " +
                     std::string(to_string(x.event_type)) + " at " + iso(x.now.wall) + " recorded");
        return;
      }
      expected_.pop_front();
    });
    return ok;
  }

  void observe() {
    const Status& s = core_->status();
    chk_.status(s, now_);
    if (!opt_.timeline) return;
    Sample p;
    p.wall = now_.wall;
    p.state = s.state;
    p.mass_rate_mcg_h = to_mcg(s.mass_rate * hours(1));
    p.delivered_24h_mcg = to_mcg(s.delivered_24h);
    p.limit_mcg = to_mcg(s.daily_limit);
    p.reservoir_ul = to_uL(s.reservoir);
    for (std::size_t i = 0; i < kAlarmCount; ++i) {
      if (!s.alarms[i].active) continue;
      ++p.alarms;
      if (priority_of(static_cast<AlarmCode>(i)) == AlarmPriority::high) ++p.high_alarms;
    }
    if (r_.timeline.empty() || r_.timeline.back().wall != p.wall) r_.timeline.push_back(p);
  }

  bool diverge(std::string what) {
    if (!r_.divergence) {
      Divergence d;
      d.record = index_;
      d.cycle = rec_ != nullptr ? rec_->cycle : 0;
      d.wall = now_.wall;
      d.input = rec_ != nullptr ? describe(*rec_, index_) : "the run's start";
      d.what = std::move(what);
      r_.divergence = std::move(d);
    }
    return false;
  }

  Result& r_;
  Checker& chk_;
  const Options& opt_;
  BoardParams board_;
  std::uint64_t skip_;
  std::unique_ptr<PumpCore> core_;
  IdealPlant plant_{};
  Now now_{};
  Duration period_{0};
  std::int64_t cycle_ = -1;
  std::deque<io::Recorded> expected_;
  std::size_t index_ = 0;
  const io::Recorded* rec_ = nullptr;
  bool resumed_ = false;
  CycleLog log_{};
  BuzzerPattern last_pattern_ = BuzzerPattern::off;
  std::vector<Event> events_;
  bool snapshot_digest_ok_ = true;
};

}  // namespace

std::string list_records(const io::Scan& scan) {
  std::string out;
  const auto walls = io::record_walls(scan.records);
  for (std::size_t i = 0; i < scan.records.size(); ++i) {
    const auto& r = scan.records[i];
    std::string line = iso(walls[i]) + "  ";
    switch (r.kind) {
      case io::RecKind::start:
        line += "start: state " + std::string(to_string(r.state->state)) + ", budget " + std::to_string(r.budget) +
                " steps, period " + std::to_string(r.board.loop_period.count()) + " us";
        break;
      case io::RecKind::event:
        line += "  output: event " + std::string(to_string(r.event_type));
        break;
      case io::RecKind::gap: line += "GAP: inputs lost from cycle " + std::to_string(r.cycle); break;
      case io::RecKind::snapshot:
        line += "snapshot at cycle " + std::to_string(r.cycle) + ": state " +
                std::string(to_string(r.image->state.state)) + ", period " + std::to_string(r.period.count()) + " us";
        break;
      default: line += describe(r, i); break;
    }
    out += line + "\n";
  }
  return out;
}

Result replay(const io::Scan& scan, const Options& opt) {
  Result r;
  r.complete = scan.has_end;
  r.problem = scan.problem;
  Checker chk(r.violations);
  const auto& recs = scan.records;
  const auto walls = io::record_walls(recs);
  if (!recs.empty()) {
    r.first = walls.front();
    r.last = walls.back();
  }
  auto begins = [&](std::size_t k) { return recs[k].kind == io::RecKind::start || recs[k].kind == io::RecKind::snapshot; };
  std::size_t i = 0;
  while (i < recs.size() && !begins(i)) ++i;
  if (i > 0 && r.problem.empty()) r.problem = "the recording does not begin with a start or snapshot record";
  while (i < recs.size()) {
    std::size_t j = i + 1;
    while (j < recs.size() && !begins(j)) ++j;
    ++r.runs;
    Run run(recs[i], r, chk, opt);
    if (!run.snapshot_ok(i)) break;
    for (std::size_t k = i + 1; k < j; ++k) {
      if (recs[k].kind == io::RecKind::event) run.expect_event(recs[k]);
    }
    bool ok = true;
    bool gap = false;
    for (std::size_t k = i + 1; k < j && ok; ++k) {
      const auto kind = recs[k].kind;
      if (kind == io::RecKind::gap) {
        gap = true;
        if (r.problem.empty()) r.problem = "inputs were lost at cycle " + std::to_string(recs[k].cycle) +
                                           " of run " + std::to_string(r.runs) + " (the recorder's queue overflowed)";
        break;
      }
      if (kind == io::RecKind::clock || kind == io::RecKind::command || kind == io::RecKind::sensors) {
        ok = run.input(recs[k], k);
      }
    }
    if (!ok) break;
    if (!gap && !run.finish()) break;
    i = j;
  }
  return r;
}

std::string plot_svg(const Result& r) {
  constexpr double W = 1000;
  constexpr double H = 120;
  constexpr double L = 90;
  std::string out;
  char buf[256];
  const auto& t = r.timeline;
  const int lanes = 5;
  (void)std::snprintf(buf, sizeof buf,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
                      W + L + 20, lanes * (H + 20) + 20);
  out += buf;
  if (t.size() < 2) return out + "<text x=\"10\" y=\"20\">no timeline</text></svg>\n";
  const double t0 = static_cast<double>(to_usec(t.front().wall));
  const double t1 = std::max(t0 + 1, static_cast<double>(to_usec(t.back().wall)));
  auto x = [&](WallTime w) { return L + (static_cast<double>(to_usec(w)) - t0) / (t1 - t0) * W; };
  auto lane = [&](int k, const char* name, const char* color, auto value, double extra_max, bool step) {
    double mx = extra_max;
    for (const auto& s : t) mx = std::max(mx, value(s));
    if (mx <= 0) mx = 1;
    const double top = 20 + k * (H + 20);
    (void)std::snprintf(buf, sizeof buf, "<text x=\"4\" y=\"%.0f\">%s</text><text x=\"4\" y=\"%.0f\">max %.4g</text>\n",
                        top + 12, name, top + 26, mx);
    out += buf;
    (void)std::snprintf(buf, sizeof buf, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#ccc\"/>\n",
                        L, top, W, H);
    out += buf;
    out += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" points=\"";
    double prev_y = -1;
    for (const auto& s : t) {
      const double y = top + H - value(s) / mx * H;
      if (step && prev_y >= 0) {
        (void)std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x(s.wall), prev_y);
        out += buf;
      }
      (void)std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x(s.wall), y);
      out += buf;
      prev_y = y;
    }
    out += "\"/>\n";
    return top;
  };
  lane(0, "state", "#333", [](const Sample& s) { return static_cast<double>(s.state); }, 7, true);
  lane(1, "tip mcg/h", "#06c", [](const Sample& s) { return s.mass_rate_mcg_h; }, 0, true);
  const double lim = t.back().limit_mcg;
  const double top = lane(2, "24 h mcg", "#080", [](const Sample& s) { return s.delivered_24h_mcg; }, lim, false);
  if (lim > 0) {
    double mx = lim;
    for (const auto& s : t) mx = std::max(mx, s.delivered_24h_mcg);
    const double y = top + H - lim / mx * H;
    (void)std::snprintf(buf, sizeof buf, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/>\n",
                        L, L + W, y, y);
    out += buf;
  }
  lane(3, "reservoir uL", "#960", [](const Sample& s) { return s.reservoir_ul; }, 0, false);
  lane(4, "alarms (high)", "#c00", [](const Sample& s) { return static_cast<double>(s.alarms + s.high_alarms); }, 2, true);
  return out + "</svg>\n";
}

}  // namespace thecal::replay
