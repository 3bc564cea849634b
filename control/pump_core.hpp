// The dosing core: the whole pump's logic as a pure, deterministic object.
//
// Time and inputs go in, motor commands, state and events come out.  It reads no clock,
// does no I/O and does not allocate: the daemon's dosing thread calls
//
//   for each command received:  reply = core.apply(cmd, now)
//   every loop period:          core.tick(now, sensors, actuation)
//   then:                       core.drain_events(f); core.status()
//
// and the unit tests do the same with made-up time, so every rule of SPEC section 5 is
// tested without threads, clocks or hardware.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "control/alarm.hpp"
#include "control/board_params.hpp"
#include "control/catheter.hpp"
#include "control/command.hpp"
#include "control/event.hpp"
#include "control/io_types.hpp"
#include "control/pump_state.hpp"
#include "control/rolling_ledger.hpp"
#include "control/status.hpp"
#include "control/step_accumulator.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"

namespace thecal {

struct Now {
  MonoTime mono;
  WallTime wall;
};

class PumpCore {
 public:
  static constexpr std::size_t kEventCapacity = 256;

  PumpCore(const BoardParams& board, Now now);
  PumpCore(const PumpCore&) = delete;
  PumpCore& operator=(const PumpCore&) = delete;

  /// Applies one programming command.  A refused command changes nothing.
  Reply apply(const Command& cmd, Now now);

  /// One control cycle: reads `in`, decides, and fills `out`.
  void tick(Now now, const SensorInputs& in, Actuation& out);

  [[nodiscard]] const Status& status() const { return status_; }
  [[nodiscard]] PumpState state() const { return state_; }

  /// Hands every pending event to `f(const Event&)`, oldest first, and forgets them.
  template <class F>
  void drain_events(F&& f) {
    while (ev_count_ > 0) {
      f(events_[ev_head_]);
      ev_head_ = (ev_head_ + 1) % kEventCapacity;
      --ev_count_;
    }
  }
  [[nodiscard]] std::uint64_t events_dropped() const { return events_dropped_; }

  /// Steps the journal still allows (SPEC S7): the loop never steps past it.
  [[nodiscard]] Steps budget() const { return budget_; }

 private:
  Reply refuse(const Command& cmd, Refusal why, const char* message) const;
  void emit(const Event& e);
  void emit_simple(EventType t, Now now, std::uint32_t uid);
  void set_state(PumpState s, Now now, std::uint32_t uid);
  void raise_alarm(AlarmCode c, Now now);
  void clear_alarm(AlarmCode c, Now now);
  void supervise(Now now, const SensorInputs& in, bool delivering);
  [[nodiscard]] bool any_high_alarm() const;
  [[nodiscard]] MassRate basal_rate_at(Now now) const;
  [[nodiscard]] VolumeRate pump_rate(Now now) const;
  void publish(Now now);

  BoardParams board_;
  PumpState state_ = PumpState::idle;
  std::optional<TherapyPlan> plan_;
  Concentration reservoir_conc_;  // what is in the reservoir (may differ from the plan's
                                  // while the old prescription's drug is still in it)
  Volume reservoir_ = uL(0);
  Catheter catheter_;
  StepAccumulator acc_;
  RollingLedger ledger_;
  Steps budget_{0};
  Volume prime_left_ = uL(0);
  std::optional<MonoTime> suspend_until_;
  std::uint64_t last_encoder_ = 0;
  Mass total_mass_ = mcg(0);
  Volume total_volume_ = uL(0);
  std::uint64_t steps_issued_ = 0;
  bool heartbeat_ = false;
  std::array<AlarmStatus, kAlarmCount> alarms_{};

  std::array<Event, kEventCapacity> events_{};
  std::size_t ev_head_ = 0;
  std::size_t ev_count_ = 0;
  std::uint64_t events_dropped_ = 0;

  Status status_{};
};

}  // namespace thecal
