// The D-Bus face of the pump service: org.thecal.Pump1, org.thecal.Diagnostics1 and (with
// the simulator) org.thecal.Simulator1 on /org/thecal/Pump1, exactly as SPEC section 4 and
// dbus/*.xml say.  An adapter only, like systemd's timesyncd-bus.c beside its manager:
// each method reads its arguments, checks the caller's role (AccessDenied), calls one
// method of app::PumpService and replies with its result (later, for calls that go through
// the dosing thread).  Behaviour lives in app/.
//
// One property table (pump_object.cpp) drives the getters, the change tracking and the
// vtable; PropertiesChanged goes out when a value changes, fast-moving figures at most once
// a second.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "app/pump_service.hpp"
#include "dbus/names.hpp"

namespace thecal::dbus {

/// One row of ActiveAlarms.
struct AlarmRow {
  std::string code, priority, message;
  std::uint64_t raised_us = 0;
  /// Change tracking: an alarm changes when it is raised anew, not when its text does.
  bool operator==(const AlarmRow& o) const { return code == o.code && raised_us == o.raised_us; }
};
/// One entry of Drugs (a(sddd)): name, concentration mcg/mL, 24 h mcg, limit mcg.
struct DrugRow {
  std::string name;
  double concentration_mcg_per_ml = 0.0, delivered_24h_mcg = 0.0, daily_limit_mcg = 0.0;
  bool operator==(const DrugRow&) const = default;
};
/// LatencyHistogram: its non-empty bins as (lower edge ns, count).
using HistogramBins = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
/// A property's value, as typed on the bus.
using PropertyValue =
    std::variant<std::string, double, bool, std::uint32_t, std::uint64_t, std::vector<AlarmRow>, HistogramBins,
                 std::vector<DrugRow>>;

class PumpObject : public app::Listener {
 public:
  explicit PumpObject(app::PumpService& service) : service_(service) {}
  PumpObject(const PumpObject&) = delete;
  PumpObject& operator=(const PumpObject&) = delete;
  ~PumpObject() override;

  /// Exports the interfaces on `bus` and the poll timer on `event`; negative errno on failure.
  int attach(sd_bus* bus, sd_event* event);
  /// Removes the object from the bus and stops the timer (before the bus is closed).
  void detach();
  /// Polls the service soon (a call is waiting for the dosing thread).
  void poll_soon() { arm_timer(true); }

  [[nodiscard]] app::PumpService& service() { return service_; }
  [[nodiscard]] sd_event* event() const { return event_; }

  // app::Listener
  void status_changed(const Status& status, bool urgent) override;
  void alarm_raised(AlarmCode code, const std::string& message) override;
  void alarm_cleared(AlarmCode code) override;
  void bolus_started(BolusSource source, Mass dose) override;
  void bolus_finished(BolusSource source, Mass delivered) override;

 private:
  void arm_timer(bool fast);
  static int on_timer(sd_event_source* s, std::uint64_t usec, void* userdata);
  static int on_wake(sd_event_source* s, int fd, std::uint32_t revents, void* userdata);

  app::PumpService& service_;
  sd_bus* bus_ = nullptr;
  sd_event_source* timer_ = nullptr;
  sd_event_source* wake_ = nullptr;  // eventfd: a preview finished (app/preview.hpp)
  sd_event* event_ = nullptr;
  std::vector<sd_bus_slot*> slots_;
  std::vector<sd_bus_vtable> pump_vtable_;
  std::vector<PropertyValue> last_emitted_;  // by property table index; empty: not seeded
  std::int64_t last_fast_emit_us_ = 0;
};

}  // namespace thecal::dbus
