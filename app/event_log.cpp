#include "app/event_log.hpp"

#include <systemd/sd-journal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace thecal::app {

namespace {

// One MESSAGE_ID per kind of record, so `journalctl MESSAGE_ID=...` finds them.
const char* message_id(const std::string& type) {
  if (type == "alarm_raised") return "5d1b3f0e8a4c4a7f9c2e6b1d0a9f3e21";
  if (type == "alarm_cleared") return "5d1b3f0e8a4c4a7f9c2e6b1d0a9f3e22";
  if (type == "alarm_acknowledged") return "5d1b3f0e8a4c4a7f9c2e6b1d0a9f3e23";
  if (type == "bolus_started" || type == "bolus_finished") return "7a2c9e4b1f6d4e8a8b3c5d7e9f0a1b24";
  if (type == "state_changed") return "0b8e6c2a4d1f4b9e8c7a6f5e4d3c2b25";
  if (type == "restart") return "3f9a7c5e1b2d4f6a8c0e2b4d6f8a0c26";
  if (type == "wall_clock_jump") return "9c1e3a5b7d9f4b2d8e6c4a2f0e8d6c27";
  return "e4a6c8f0b2d44e6a9c1e3f5a7b9d1c28";  // programming acts and everything else
}

std::string fmt(const char* f, double a) {
  char buf[96];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

}  // namespace

std::string EventLog::who(std::uint32_t uid) {
  if (uid == kSystemUid) return "pump";
  if (uid == kBolusButtonUid) return "bolus_button";
  return "uid=" + std::to_string(uid);
}

void EventLog::append(LoggedEvent e, int syslog_priority) {
  if (to_journal_) {
    const std::string msg = e.type + (e.detail.empty() ? "" : ": " + e.detail) + " (" + e.who + ")";
    (void)sd_journal_send("MESSAGE=%s", msg.c_str(), "MESSAGE_ID=%s", message_id(e.type), "PRIORITY=%i",
                          syslog_priority, "THECAL_EVENT=%s", e.type.c_str(), "THECAL_WHO=%s", e.who.c_str(),
                          "THECAL_DETAIL=%s", e.detail.c_str(), "THECAL_TIME_USEC=%lld",
                          static_cast<long long>(e.wall_us), nullptr);
  }
  if (on_append) on_append(e);
  events_.push_back(std::move(e));
  while (events_.size() > capacity_) events_.pop_front();
}

void EventLog::restore(LoggedEvent e) {
  events_.push_back(std::move(e));
  while (events_.size() > capacity_) events_.pop_front();
}

void EventLog::merge(const std::vector<LoggedEvent>& imported) {
  for (const auto& e : imported) {
    auto it = std::upper_bound(events_.begin(), events_.end(), e.wall_us,
                               [](std::int64_t t, const LoggedEvent& x) { return t < x.wall_us; });
    events_.insert(it, e);
  }
  while (events_.size() > capacity_) events_.pop_front();
}

std::vector<LoggedEvent> EventLog::since(std::int64_t since_us, std::uint32_t max) const {
  std::vector<LoggedEvent> out;
  auto it = std::lower_bound(events_.begin(), events_.end(), since_us,
                             [](const LoggedEvent& e, std::int64_t t) { return e.wall_us < t; });
  for (; it != events_.end() && out.size() < max; ++it) out.push_back(*it);
  return out;
}

DescribedEvent describe(const Event& e) {
  DescribedEvent d;
  d.type = std::string(to_string(e.type));
  switch (e.type) {
    case EventType::state_changed:
      d.detail = std::string(to_string(e.old_state)) + " -> " + std::string(to_string(e.new_state));
      d.priority = e.new_state == PumpState::stopped ? 3 : 5;
      break;
    case EventType::alarm_raised:
      d.detail = std::string(to_string(e.alarm)) + " (" + std::string(to_string(priority_of(e.alarm))) +
                 "): " + std::string(alarm_message(e.alarm));
      if (!e.drug.empty()) d.detail += " (" + std::string(e.drug.view()) + ")";
      d.priority = priority_of(e.alarm) == AlarmPriority::high ? 2 : (priority_of(e.alarm) == AlarmPriority::medium ? 4 : 5);
      break;
    case EventType::alarm_cleared:
    case EventType::alarm_acknowledged:
      d.detail = std::string(to_string(e.alarm));
      d.priority = 5;
      break;
    case EventType::bolus_started:
      d.detail = std::string(to_string(e.source)) + " " + fmt("%.3f mcg", to_mcg(e.mass));
      d.priority = 5;
      break;
    case EventType::bolus_finished:
      d.detail = std::string(to_string(e.source)) + " delivered " + fmt("%.3f mcg", to_mcg(e.mass));
      d.priority = 5;
      break;
    case EventType::refill:
      d.detail = "filled " + fmt("%.1f uL", to_uL(e.volume)) + ", withdrawn " + fmt("%.1f uL", to_uL(e.volume2));
      if (e.tolerance > uL(0)) {
        // The refill check (SPEC 2): both figures, the difference, what was allowed, the accuracy.
        d.detail += " (measured residual) against the pump's estimate " + fmt("%.1f uL", to_uL(e.estimate)) +
                    ": difference " + fmt("%.1f uL", std::fabs(to_uL(e.volume2) - to_uL(e.estimate))) +
                    ", allowed " + fmt("%.1f uL", to_uL(e.tolerance)) + "; pumped since the last refill " +
                    fmt("%.1f uL", to_uL(e.pumped)) + ", accuracy " +
                    (std::isfinite(e.percent) ? fmt("%.1f %%", e.percent) : std::string("not measured")) +
                    (e.flagged ? "; DISCREPANCY: refill_discrepancy raised" : "; within tolerance");
      } else {
        d.detail += " (first fill: nothing to check)";
      }
      d.priority = e.flagged ? 4 : 5;
      break;
    case EventType::wall_clock_jump:
      d.detail = "wall clock moved " + fmt("%+.3f s", to_seconds(e.duration)) + " against the monotonic clock";
      d.priority = 4;
      break;
    case EventType::suspended:
      d.detail = e.duration > Duration{0} ? "for " + fmt("%.0f s", to_seconds(e.duration)) : "until Resume";
      d.priority = 5;
      break;
    case EventType::command_refused:
      d.detail = std::string(to_string(e.command)) + " refused: " + std::string(to_string(e.refusal));
      d.priority = 5;
      break;
    case EventType::prescription_loaded:
    case EventType::prime_started:
    case EventType::prime_finished:
    case EventType::started:
    case EventType::resumed:
    case EventType::trial_finished:
    case EventType::battery_replaced:
    case EventType::budget_exhausted:
    case EventType::bolus_cancelled:
    case EventType::periodic_skipped:
    case EventType::suspend_extended:
      d.priority = 5;
      break;
    case EventType::catheter_revised:
      d.detail = "catheter dead volume " + fmt("%.1f uL", to_uL(e.volume2)) + " -> " + fmt("%.1f uL", to_uL(e.volume)) +
                 ": the catheter is empty, no drug reaches the tip until it is primed";
      d.priority = 4;
      break;
    case EventType::refill_begun:
      d.detail = "refill session begun from " + std::string(to_string(e.old_state)) + ": motor stopped";
      d.priority = 5;
      break;
    case EventType::refill_cancelled:
      d.detail = "refill session cancelled: back to " + std::string(to_string(e.new_state));
      d.priority = 5;
      break;
    case EventType::alarm_test:
      d.detail = "high, medium and low alarm patterns sounded once each (" + fmt("%.1f s", to_seconds(e.duration)) + ")";
      d.priority = 5;
      break;
    case EventType::risk_event:
      if (e.index == kRiskLongStop) {
        d.detail = "delivery stopped for " + fmt("%.1f h", to_seconds(e.duration) / 3600.0) + " and still stopped (" +
                   std::string(to_string(e.new_state)) +
                   "): a stop over 48 h is a reported risk factor for over-infusion when delivery resumes, "
                   "reassess the dose before resuming";
      } else if (e.index == kRiskLongStopEnded) {
        d.detail = "delivery resumed after a stop of " + fmt("%.1f h", to_seconds(e.duration) / 3600.0) +
                   " (over 48 h): a reported risk factor for over-infusion, reassess the dose";
      } else {
        d.detail = "the reservoir ran empty (" + fmt("%.1f uL", to_uL(e.volume)) +
                   " left): a reported risk factor for over-infusion at the next refill";
      }
      d.priority = 4;
      break;
  }
  return d;
}

}  // namespace thecal::app
