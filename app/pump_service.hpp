// The pump service: every behaviour of thecald that is not dosing, with no D-Bus in sight
// (as systemd's timesyncd-manager.c beside timesyncd-bus.c).  dbus/pump_object reads a
// call's arguments, checks the role, calls one method here and replies with its result;
// a unit test calls the same method with a synchronous dosing core (tests/app/).
//
// A call that goes through the dosing thread takes a Completion: the service validates its
// typed arguments (a refused call changes nothing), turns it into a Command, posts it
// through the LoopChannel and keeps it in the pending-call table; poll() matches the
// dosing thread's Reply to it, makes the act durable in the journal (SPEC S7: durable
// before the reply), commits a staged prescription, and completes the call.
//
// poll() also feeds the event log and the delivery history, keeps the alarm detail texts,
// grants step budgets and checkpoints the state (Durability), takes the last-minute latency
// window, and tells the Listener (the D-Bus object) what to announce.  It never blocks.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/call.hpp"
#include "app/delivery_history.hpp"
#include "app/durability.hpp"
#include "app/event_log.hpp"
#include "app/journal_keeper.hpp"
#include "app/loop_channel.hpp"
#include "app/prescription_store.hpp"
#include "app/preview.hpp"
#include "config/problem.hpp"
#include "io/recording.hpp"
#include "control/status.hpp"

namespace thecal::app {

/// What the service announces (the D-Bus object turns these into signals and
/// PropertiesChanged).  Called from poll() only.
class Listener {
 public:
  Listener() = default;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  virtual ~Listener() = default;
  /// A new status; `urgent`: the state or an alarm changed (fast figures go out now too).
  virtual void status_changed(const Status& status, bool urgent) = 0;
  virtual void alarm_raised(AlarmCode code, const std::string& message) = 0;
  virtual void alarm_cleared(AlarmCode code) = 0;
  virtual void bolus_started(BolusSource source, Mass dose) = 0;
  virtual void bolus_finished(BolusSource source, Mass delivered) = 0;
};

/// The pieces the service works with (owned by the caller, thecald's main or a test).
struct ServiceParts {
  LoopChannel* loop = nullptr;
  SimulatorPort* sim = nullptr;  // null unless backend: sim
  EventLog* events = nullptr;
  DeliveryHistory* history = nullptr;
  JournalKeeper* journal = nullptr;
  /// The real monotonic clock in us (tests pass their own).
  std::function<std::int64_t()> mono_us;
  io::RecordingStore* recorder = nullptr;  // the flight recorder (null: none)
};

/// The last-minute latency figures (Diagnostics1 *LastMinute).
struct LoopFigures {
  loop::LoopDiagnostics since_start;
  loop::LatencyHistogram last_minute;
};

class PumpService {
 public:
  static constexpr std::uint32_t kMaxEventsPerCall = 10'000;
  static constexpr std::int64_t kMinuteUs = 60'000'000;

  PumpService(PrescriptionStore store, const ServiceParts& parts);
  PumpService(const PumpService&) = delete;
  PumpService& operator=(const PumpService&) = delete;
  ~PumpService();

  void set_listener(Listener* l) { listener_ = l; }
  /// The steps the core already holds at start (granted by recover_state before the loop ran).
  void set_granted(std::int64_t steps) { durability_.set_granted(steps); }

  // ---- start-up and shutdown (thecald) ----
  /// Loads the stored prescription (as the pump), if there is one; a stored file that is
  /// not valid raises prescription_rejected.  At start and on SIGHUP.
  void load_stored_prescription();
  /// Raises one of the alarms the daemon owns (restart, prescription_rejected, state_lost).
  void raise_alarm(AlarmCode code);
  /// Whether the start has settled: the dosing thread's first status is in, and every
  /// command sent so far is answered (the bus name is taken only then).
  [[nodiscard]] bool settled() const { return have_status_ && pending_.empty(); }
  /// Fails every call still waiting for the dosing thread (at shutdown).
  void fail_pending(const std::string& why);
  /// Drains the dosing thread's replies, events and status.  Never blocks.
  void poll();
  /// Whether calls wait for the dosing thread (poll soon).
  [[nodiscard]] bool busy() const { return !pending_.empty(); }

  // ---- calls through the dosing thread (org.thecal.Pump1) ----
  void load_prescription(const Identity& who, std::string_view yaml, Completion done);
  void prime(const Identity& who, Volume volume, Completion done);
  void start(const Identity& who, Completion done);
  void suspend(const Identity& who, Duration duration, Completion done);
  void resume(const Identity& who, Completion done);
  void request_bolus(const Identity& who, Completion done);
  void clinician_bolus(const Identity& who, Mass dose, Duration duration, Completion done);
  void cancel_bolus(const Identity& who, Completion done);
  void refill(const Identity& who, Volume withdrawn, Volume volume, std::string_view yaml, Completion done);
  void acknowledge_alarm(const Identity& who, std::string_view code, Completion done);
  void replace_battery(const Identity& who, Completion done);
  void export_therapy(const Identity& who, Completion done);
  void import_therapy(const Identity& who, std::string_view document, Completion done);
  void begin_refill(const Identity& who, Completion done);
  void cancel_refill(const Identity& who, Completion done);
  void revise_catheter(const Identity& who, Volume volume, Completion done);
  void test_alarm(const Identity& who, Completion done);

  // ---- calls answered at once ----
  [[nodiscard]] config::Problems validate_prescription(std::string_view yaml) const;
  [[nodiscard]] Outcome<std::string> describe_prescription(std::string_view yaml) const;
  [[nodiscard]] Outcome<std::vector<LoggedEvent>> events(std::uint64_t since_us, std::uint32_t max) const;
  [[nodiscard]] Outcome<std::vector<DeliveryHistory::Bucket>> delivery_history(std::uint64_t from_us, std::uint64_t to_us,
                                                                              std::uint64_t bucket_us) const;
  [[nodiscard]] Outcome<std::vector<DeliveryHistory::Refill>> refill_history(std::uint64_t from_us) const;
  /// GetRecording (SPEC S15, app/pump_service_recording.cpp): the flight recording of a
  /// wall-time window of at most kMaxRecordingWindow.
  static constexpr std::int64_t kMaxRecordingWindowUs = 31LL * 86'400'000'000LL;
  [[nodiscard]] Outcome<std::string> recording(std::uint64_t from_us, std::uint64_t to_us) const;

  // ---- PreviewPrescription (app/preview.hpp): off the bus thread and the dosing thread ----
  using PreviewDone = std::function<void(const Outcome<PreviewResult>&)>;
  /// Checks the limits and the prescription (refused at once, changing nothing), takes a
  /// copy of the core's state through the dosing thread (export_state: no journal write),
  /// then runs the preview on the worker; `done` runs from poll() once it is finished.  At
  /// most PreviewRunner::kMaxAdmitted at a time: more are refused with InvalidState.
  void preview_prescription(const Identity& who, std::string_view yaml, bool with_patient_boluses,
                            std::uint64_t horizon_us, std::uint64_t bucket_us, PreviewDone done);
  /// Called from the preview worker when a result is ready: the main loop should poll().
  void set_preview_wake(std::function<void()> wake) { previews_.set_wake(std::move(wake)); }
  /// GetDrugDeliveryHistory (extra member): as delivery_history, the mass of `drug` alone
  /// (the primary or an admixture drug); OutOfRange for a drug neither in the solution nor
  /// in the kept history.
  [[nodiscard]] Outcome<std::vector<DeliveryHistory::Bucket>> drug_delivery_history(std::string_view drug,
                                                                                   std::uint64_t from_us,
                                                                                   std::uint64_t to_us,
                                                                                   std::uint64_t bucket_us) const;

  // ---- org.thecal.Simulator1 (sim() is null without the simulator) ----
  [[nodiscard]] bool has_simulator() const { return sim_ != nullptr; }
  Outcome<Nothing> inject_fault(const Identity& who, std::string_view fault, bool active);
  Outcome<Nothing> set_time_scale(const Identity& who, double scale);
  [[nodiscard]] double time_scale() const;
  [[nodiscard]] double true_delivered_ul() const;

  // ---- what the properties show ----
  [[nodiscard]] const Status& status() const { return status_; }
  /// The message of an active alarm: its fixed text, or that text with its figures.
  [[nodiscard]] std::string alarm_text(AlarmCode code) const;
  [[nodiscard]] LoopFigures loop_figures() const { return {loop_.diagnostics(), last_minute_}; }
  [[nodiscard]] std::uint64_t journal_writes() const { return durability_.fsyncs(); }
  [[nodiscard]] Now now() const { return loop_.now(); }

 private:
  struct Pending;
  /// Posts `cmd` and keeps `p` until its reply; completes `p` with InvalidState if the
  /// dosing thread's queue is full (false then).
  bool submit(Command cmd, std::unique_ptr<Pending> p);
  void simple(const Identity& who, CommandKind kind, Completion done);
  void with_prescription(const Identity& who, Command cmd, std::string_view yaml, Completion done);
  void handle_reply(const Reply& r);
  void handle_event(const Event& e);
  void finish_export(Pending& p);
  void finish_import(Pending& p);
  void keep_durable();
  void post_grant();
  void take_minute();
  void record_drug_totals();  // every drug's total at the tip into the history
  /// Journals `s`; raises storage_fault when it could not be made durable.
  std::optional<std::string> journal_state(const CoreState& s, bool force_rewrite = false);
  void log_refused(const Identity& who, const std::string& what);

  PrescriptionStore store_;
  LoopChannel& loop_;
  SimulatorPort* sim_;
  EventLog& events_;
  DeliveryHistory& history_;
  io::RecordingStore* recorder_;
  std::function<std::int64_t()> mono_us_;
  Durability durability_;
  Listener* listener_ = nullptr;

  Status status_{};
  bool have_status_ = false;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  // Figures that go with an active alarm's message (ActiveAlarms, AlarmRaised), where the
  // core's event carried them: the refill check's residual and estimate.  Empty: the fixed text.
  std::array<std::string, kAlarmCount> alarm_detail_;
  loop::LatencyHistogram minute_base_{};
  loop::LatencyHistogram last_minute_{};
  std::int64_t minute_started_us_ = 0;
  PreviewRunner previews_;  // last: its worker stops before the rest goes
};

}  // namespace thecal::app
