// The D-Bus face of the pump: org.thecal.Pump1, org.thecal.Diagnostics1 and (with the
// simulator) org.thecal.Simulator1 on /org/thecal/Pump1, exactly as SPEC section 4 and
// dbus/*.xml say.
//
// Each method: read arguments -> validate (OutOfRange, InvalidPrescription) -> check the
// caller's role (AccessDenied) -> hand a Command to the dosing thread -> reply when the
// dosing thread's Reply comes back (asynchronously: the bus thread never waits on the
// loop).  A refused call changes nothing.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "control/status.hpp"
#include "daemon/delivery_history.hpp"
#include "daemon/dosing_loop.hpp"
#include "daemon/event_log.hpp"
#include "daemon/journal_keeper.hpp"
#include "io/sim_plant.hpp"

namespace thecal::dbus {

inline constexpr const char* kBusName = "org.thecal.Pump1";
inline constexpr const char* kObjectPath = "/org/thecal/Pump1";
inline constexpr const char* kPumpInterface = "org.thecal.Pump1";
inline constexpr const char* kDiagnosticsInterface = "org.thecal.Diagnostics1";
inline constexpr const char* kSimulatorInterface = "org.thecal.Simulator1";

struct PumpContext {
  config::DaemonConfig config;
  config::DrugLibrary drugs;
  daemon::DosingLoop* loop = nullptr;
  io::SimPlant* sim = nullptr;  // null unless backend: sim
  daemon::EventLog* events = nullptr;
  daemon::DeliveryHistory* history = nullptr;
  std::uint64_t journal_writes = 0;
  /// The journal (SPEC S7).  With it, step budgets come only from fsynced reservations and
  /// every programming act is durable before its reply; without it (tests of this object
  /// alone) the legacy fixed grants apply.
  daemon::JournalKeeper* journal = nullptr;
};

class PumpObject {
 public:
  explicit PumpObject(PumpContext ctx);
  PumpObject(const PumpObject&) = delete;
  PumpObject& operator=(const PumpObject&) = delete;
  ~PumpObject();

  /// Registers the object on `bus` and the poll timer on `event`; negative errno on failure.
  int attach(sd_bus* bus, sd_event* event);

  /// Removes the object from the bus and stops the timer (before the bus is closed).
  void detach();

  /// Loads the stored prescription at start (as the pump, uid "pump"), if there is one.
  void load_stored_prescription();

  /// Drains the dosing thread's replies, events and status; emits signals and
  /// PropertiesChanged.  Called by the timer; public for tests and shutdown.
  void poll();

  /// Raises one of the alarms the daemon owns (restart, prescription_rejected, state_lost).
  void raise_alarm(AlarmCode code);

  /// Waits (at most `timeout_ms`) for the dosing thread's first status snapshot and takes it,
  /// so no client ever reads the default status of a pump whose state was restored.
  bool take_first_status(int timeout_ms);

  /// Takes the first status, then runs poll() until the dosing thread has answered every
  /// command the daemon itself sent at start (the restart alarm, the stored prescription),
  /// so the first client sees their events and state, not a half-started pump.
  bool settle_startup(int timeout_ms);

  /// Fails every call still waiting for the dosing thread (at shutdown).
  void fail_pending(const char* why);

  [[nodiscard]] const Status& status() const { return status_; }
  /// The steps the core already holds at start (granted before the loop ran).
  void set_granted(std::int64_t steps);

  // sd-bus callbacks (static trampolines in the .cpp call these).
  struct Pending;
  int submit(sd_bus_message* m, Command cmd, std::unique_ptr<Pending> p, sd_bus_error* err);
  PumpContext& context() { return ctx_; }

 private:
  void handle_reply(const Reply& r);
  void handle_event(const Event& e);
  void emit_changed_properties(bool force_fast);
  void grant_budget_if_needed();
  void arm_timer(bool fast);
  /// Journals `s` (a checkpoint, or a rewrite when the file is large or unhealthy) with a
  /// reservation sized for the current pump rate; grants what became durable.  Returns an
  /// error text if it could not be made durable (storage_fault is raised then).
  std::optional<std::string> journal_state(const CoreState& s, bool force_rewrite = false);
  /// ExportTherapy/ImportTherapy after the dosing thread answered (pump replacement).
  void finish_export(Pending& p);
  void finish_import(Pending& p);
  void post_grant();

  PumpContext ctx_;
  sd_bus* bus_ = nullptr;
  sd_event_source* timer_ = nullptr;
  sd_bus_slot* slots_[3] = {nullptr, nullptr, nullptr};
  Status status_{};
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  std::map<std::string, std::string> last_emitted_;  // property -> serialized value
  std::int64_t last_fast_emit_us_ = 0;
  std::int64_t granted_steps_ = 0;
  bool budget_in_flight_ = false;
  bool checkpoint_in_flight_ = false;
  bool checkpoint_wanted_ = false;
  bool storage_fault_raised_ = false;
  // Figures that go with an active alarm's message (ActiveAlarms, AlarmRaised), where the
  // core's event carried them: the refill check's residual and estimate.  Empty: the fixed text.
  std::array<std::string, kAlarmCount> alarm_detail_;

 public:
  /// The message of an active alarm: its fixed text, or that text with its figures.
  [[nodiscard]] std::string alarm_text(AlarmCode code) const;

 private:
  std::int64_t last_rewrite_try_us_ = 0;

 public:
  // Accessed by the vtable callbacks.
  daemon::LatencyHistogram minute_base_{};
  daemon::LatencyHistogram last_minute_{};
  std::int64_t minute_started_us_ = 0;
};

}  // namespace thecal::dbus
