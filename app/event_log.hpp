// The event log (SPEC S11): every programming act, alarm and state change, with who did it,
// kept in memory for GetEvents and sent to the systemd journal as a structured record
// (MESSAGE_ID per event type, THECAL_EVENT, THECAL_UID, THECAL_DETAIL).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "control/event.hpp"

namespace thecal::app {

struct LoggedEvent {
  std::int64_t wall_us = 0;  // CLOCK_REALTIME us (simulated wall time with backend sim)
  std::string type;          // EventType name, or a daemon event (restart, programming, ...)
  std::string who;           // "uid=1000" or "pump"
  std::string detail;        // human text
};

class EventLog {
 public:
  explicit EventLog(std::size_t capacity = 50'000, bool to_journal = true)
      : capacity_(capacity), to_journal_(to_journal) {}

  void append(LoggedEvent e, int syslog_priority = 6);
  /// Puts back an event recovered from the thecal journal (not sent to systemd again, not
  /// passed to on_append).
  void restore(LoggedEvent e);
  /// Inserts another unit's events (pump replacement) in time order; like restore(), they
  /// are not sent to systemd again nor passed to on_append (the caller rewrites the journal).
  void merge(const std::vector<LoggedEvent>& imported);
  /// Called with every appended event (the journal keeper records it: SPEC S11).
  std::function<void(const LoggedEvent&)> on_append;
  /// Events at or after `since_us`, oldest first, at most `max`.
  [[nodiscard]] std::vector<LoggedEvent> since(std::int64_t since_us, std::uint32_t max) const;
  [[nodiscard]] std::size_t size() const { return events_.size(); }

  static std::string who(std::uint32_t uid);

 private:
  std::size_t capacity_;
  bool to_journal_;
  std::deque<LoggedEvent> events_;
};

/// The core's event in words: (type, detail, syslog priority).
struct DescribedEvent {
  std::string type;
  std::string detail;
  int priority = 6;
};
DescribedEvent describe(const Event& e);

}  // namespace thecal::app
