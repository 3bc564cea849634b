#include "app/startup.hpp"

#include <cstdio>
#include <limits>
#include <memory>
#include <string>

#include "io/log.hpp"

namespace thecal::app {

namespace {

void apply_own(PumpCore& core, Command c, Now now) {
  c.caller = {kSystemUid, false};
  (void)core.apply(c, now);
}

std::vector<LoggedEvent> whole(const EventLog& log) { return log.since(0, std::numeric_limits<std::uint32_t>::max()); }

void log_restored(const Recovery& rec, const RestoreReport& rep, const PumpCore& core, const ClockRef& clock_now,
                  Now now, EventLog& events) {
  char buf[512];
  (void)std::snprintf(
      buf, sizeof buf,
      "state restored from the journal (%zu records): %s, %lld reserved steps not confirmed counted as "
      "delivered (%.3f mcg at the tip), %s; %s",
      rec.records, std::string(to_string(core.state())).c_str(), static_cast<long long>(rep.unconfirmed_steps),
      to_mcg(rep.unconfirmed_mass),
      rec.clock.boot_id == clock_now.boot_id ? "same boot" : "after a reboot: no time assumed to have passed",
      core.state() == PumpState::infusing && rec.kind == Recovery::Kind::restored ? "therapy resumes"
                                                                                   : "therapy does not resume by itself");
  log_notice("%s", buf);
  events.append({to_usec(now.wall), "journal_restored", "pump", buf}, 5);
  if (rep.priming_interrupted) {
    events.append({to_usec(now.wall), "priming_interrupted", "pump", "priming was interrupted by the restart: prime again"}, 4);
  }
}

}  // namespace

Recovered recover_state(JournalKeeper& journal, PumpCore& core, Now now, EventLog& events) {
  const Recovery rec = journal.recover();
  for (const auto& e : rec.events) events.restore(e);
  if (rec.state) {
    const ClockRef clock_now = journal.clock_now();
    const Duration elapsed = assumed_elapsed(rec.clock, clock_now);
    const RestoreReport rep = core.restore_state(*rec.state, RestoreClock{now, elapsed}, rec.unconfirmed);
    log_restored(rec, rep, core, clock_now, now, events);
  } else if (rec.kind == Recovery::Kind::fresh) {
    log_notice("No journal in the state directory: a new unit");
    events.append({to_usec(now.wall), "journal_created", "pump", "new unit: empty state directory"}, 5);
  }
  if (rec.kind == Recovery::Kind::lost) {
    log_error("Therapy state lost: %s", rec.explanation.c_str());
    events.append({to_usec(now.wall), "state_lost", "pump", rec.explanation}, 2);
    apply_own(core, Command{.kind = CommandKind::raise_alarm, .alarm = AlarmCode::state_lost}, now);
  }
  Recovered out;
  out.restored_plan = core.plan() != nullptr;
  auto s = std::make_unique<CoreState>();
  core.export_state(*s, now);
  const std::uint64_t target = s->steps_issued + journal.reservation_steps(core.status().pump_rate);
  if (auto e = journal.rewrite(*s, target, whole(events))) {
    log_error("Cannot write the journal in the state directory: %s; the pump cannot deliver", e->c_str());
    apply_own(core, Command{.kind = CommandKind::raise_alarm, .alarm = AlarmCode::storage_fault}, now);
    out.storage_fault = true;
  } else {
    const auto steps = static_cast<std::int64_t>(journal.reserved() - s->steps_issued);
    if (steps > 0) apply_own(core, Command{.kind = CommandKind::grant_budget, .steps = Steps{steps}}, now);
  }
  out.granted_steps = core.budget().count + static_cast<std::int64_t>(core.status().steps_issued);
  return out;
}

void close_state(JournalKeeper& journal, const PumpCore& core, EventLog& events) {
  const Now now{core.status().mono, core.status().wall};
  events.append({to_usec(now.wall), "daemon_stopped", "pump", "stopped, motor disabled"}, 5);
  auto last = std::make_unique<CoreState>();
  core.export_state(*last, now);
  if (auto e = journal.close_clean(*last, whole(events))) {
    log_error("Failed to write the final journal snapshot: %s (the next start counts the last reservation as delivered)",
              e->c_str());
  }
}

}  // namespace thecal::app
