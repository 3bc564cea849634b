// The one list of CoreState's fields (control/core_state.hpp), for the binary codec
// (control/core_state.cpp) and for tests that fill or compare every field.
#pragma once

#include <type_traits>

#include "control/core_state.hpp"

namespace thecal {

// ---- The one list of fields --------------------------------------------------------------
// Every field of CoreState and of the values inside it, in their binary order.  Encoding and
// decoding both walk these lists (an archive `a` is called as a(name, field)), so a field
// added to CoreState is added here once; tests/app/core_state_test.cpp fills every field
// through the same list and checks that the codec and PumpCore's export/restore carry it.
// Containers: std::optional as a presence byte and the value; static_vector as a u32 count
// and the elements (the count checked against the capacity); std::array as its elements.
// Two exceptions keep format 1: the alarm table carries its size first, and the ledger only
// its buckets that hold mass.

template <class A, class P>
void fields_of(A& a, P& p) requires std::is_same_v<std::remove_const_t<P>, TherapyPlan> {
  a("id", p.id);
  a("patient", p.patient);
  a("phase", p.phase);
  a("trial_ends", p.trial_ends);
  a("drug", p.drug);
  a("concentration", p.concentration);
  a("reservoir_capacity", p.reservoir_capacity);
  a("low_alarm", p.low_alarm);
  a("catheter_volume", p.catheter_volume);
  a("timezone", p.timezone);
  a("UTC offsets", p.utc_offsets);
  a("basal_mode", p.basal_mode);
  a("continuous_rate", p.continuous_rate);
  a("flex steps", p.flex_steps);
  a("periodic doses", p.periodic);
  a("patient_bolus", p.patient_bolus);
  a("max_daily_dose", p.max_daily_dose);
}
template <class A, class T>
void fields_of(A& a, T& o) requires std::is_same_v<std::remove_const_t<T>, UtcOffsetChange> {
  a("from", o.from);
  a("offset", o.offset);
}
template <class A, class T>
void fields_of(A& a, T& f) requires std::is_same_v<std::remove_const_t<T>, FlexStep> {
  a("start", f.start);
  a("rate", f.rate);
}
template <class A, class T>
void fields_of(A& a, T& d) requires std::is_same_v<std::remove_const_t<T>, PeriodicDose> {
  a("at", d.at);
  a("dose", d.dose);
  a("duration", d.duration);
}
template <class A, class T>
void fields_of(A& a, T& b) requires std::is_same_v<std::remove_const_t<T>, PatientBolusRule> {
  a("dose", b.dose);
  a("duration", b.duration);
  a("lockout", b.lockout);
  a("max_per_day", b.max_per_day);
}
template <class A, class T>
void fields_of(A& a, T& seg) requires std::is_same_v<std::remove_const_t<T>, Catheter::Segment> {
  a("volume", seg.volume);
  a("concentration", seg.concentration);
}
template <class A, class T>
void fields_of(A& a, T& b) requires std::is_same_v<std::remove_const_t<T>, CoreBolusState> {
  a("active", b.active);
  a("dose", b.dose);
  a("rate", b.rate);
  a("start", b.start);
  a("end", b.end);
  a("programmed", b.programmed);
  a("held", b.held);
  a("uid", b.uid);
}
template <class A, class T>
void fields_of(A& a, T& al) requires std::is_same_v<std::remove_const_t<T>, AlarmStatus> {
  a("active", al.active);
  a("acknowledged", al.acknowledged);
  a("cause_present", al.cause_present);
  a("raised", al.raised);
  a("silenced_until", al.silenced_until);
}

// Inside the admixture tail (its layout is core_state.cpp's; these serve archives that list
// or compare every field, such as the tests').
template <class A, class T>
void fields_of(A& a, T& x) requires std::is_same_v<std::remove_const_t<T>, AdmixtureDrug> {
  a("name", x.name);
  a("concentration", x.concentration);
  a("max_daily_dose", x.max_daily_dose);
}
template <class A, class T>
void fields_of(A& a, T& b) requires std::is_same_v<std::remove_const_t<T>, RollingLedger::Bucket> {
  a("index", b.index);
  a("pg", b.pg);
}
template <class A, class T>
void fields_of(A& a, T& d) requires std::is_same_v<std::remove_const_t<T>, CoreDrugSlot> {
  a("name", d.name);
  a("limit", d.limit);
  a.ledger("ledger", d.ledger);
}


// The exact image's runtime (control/core_state.hpp, CoreRuntime): what a restart drops on
// purpose.  tests/control/core_image_test.cpp fills every field through this list and checks
// that the codec and PumpCore's export_image/restore_image carry each one, and that the
// list names as many fields as the struct has.
template <class A, class T>
void fields_of(A& a, T& c) requires std::is_same_v<std::remove_const_t<T>, CoreLedgerCursor> {
  a("total_pg", c.total_pg);
  a("next_to_expire", c.next_to_expire);
  a("latest_minute", c.latest_minute);
  a("started", c.started);
}
template <class A, class T>
void fields_of(A& a, T& s) requires std::is_same_v<std::remove_const_t<T>, CoreStretch> {
  a("valid", s.valid);
  a("priming", s.priming);
  a("t0", s.t0);
  a("t_end", s.t_end);
  a("rate", s.rate);
  a("conc", s.conc);
  a("r0", s.r0);
  a("pv0", s.pv0);
  a("skip0", s.skip0);
  a("prime0", s.prime0);
  a("bp0", s.bp0);
  a("whole", s.whole);
  a("r_end", s.r_end);
  a("cath_capacity", s.cath_capacity);
  a("cath", s.cath);
  a("cath_admix", s.cath_admix);
}
template <class A, class T>
void fields_of(A& a, T& r) requires std::is_same_v<std::remove_const_t<T>, CoreRuntime> {
  a("limit_drug", r.limit_drug);
  a("slot_totals", r.slot_totals);
  a("ledger_cursor", r.ledger_cursor);
  a("slot_ledger_cursors", r.slot_ledger_cursors);
  a("battery_base_mAs", r.battery_base_mAs);
  a("battery_us", r.battery_us);
  a("battery_steps", r.battery_steps);
  a("battery_used_mAs", r.battery_used_mAs);
  a("budget", r.budget);
  a("budget_exhausted_logged", r.budget_exhausted_logged);
  a("last", r.last);
  a("last_tick", r.last_tick);
  a("wall_offset", r.wall_offset);
  a("due_steps", r.due_steps);
  a("acc_remainder", r.acc_remainder);
  a("tokens", r.tokens);
  a("tokens_t", r.tokens_t);
  a("stretch", r.stretch);
  a("prime_prog_left", r.prime_prog_left);
  a("prime_steps_left", r.prime_steps_left);
  a("dropped_volume", r.dropped_volume);
  a("last_encoder", r.last_encoder);
  a("encoder_seen", r.encoder_seen);
  a("steps_since_pulse", r.steps_since_pulse);
  a("flow_time", r.flow_time);
  a("flow_cmd_steps", r.flow_cmd_steps);
  a("flow_enc_steps", r.flow_enc_steps);
  a("flow_deviating", r.flow_deviating);
  a("sound_since", r.sound_since);
  a("sound_pattern", r.sound_pattern);
  a("heartbeat", r.heartbeat);
  a("bolus_button_was", r.bolus_button_was);
  a("alarm_test_since", r.alarm_test_since);
  a("events_dropped", r.events_dropped);
  a("emitted", r.emitted);
  a("next_slow", r.next_slow);
  a("refill_due", r.refill_due);
  a("next_patient_bolus", r.next_patient_bolus);
}
/// How many fields each list above names (the completeness test holds the structs to it).
inline constexpr std::size_t kCoreRuntimeFields = 38;
inline constexpr std::size_t kCoreStretchFields = 16;
inline constexpr std::size_t kCoreLedgerCursorFields = 4;

}  // namespace thecal

namespace thecal::detail {

// What kind of container or value a field is (for archives that walk the list).
template <class T>
struct is_static_vector : std::false_type {};
template <class T, std::size_t N>
struct is_static_vector<boost::container::static_vector<T, N>> : std::true_type {
  static constexpr std::size_t capacity = N;
};
template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_fixed_string : std::false_type {};
template <std::size_t N>
struct is_fixed_string<FixedString<N>> : std::true_type {
  static constexpr std::size_t capacity = N;
};
template <class T>
struct is_quantity : std::false_type {};
template <int M, int V, int T>
struct is_quantity<Quantity<M, V, T>> : std::true_type {};


/// Calls a(name, field) for every field of `s` (CoreState or const CoreState) in binary
/// order; a.counted(name, array) and a.ledger(name, buckets) for the two special cases of
/// format 1, a.plan_field(name, plan, member) for a plan field stored after the state (so the
/// plan's own layout stays), and a.format() for what the bytes hold (the archive's format:
/// kCoreStateFormat when writing, the one read when reading), a.admixture_tail(name, s) for
/// the admixture's optional tail.
template <class A, class S>
void core_state_fields(A& a, S& s) {
  a("mono", s.mono);
  a("wall", s.wall);
  a("state", s.state);
  a("plan", s.plan);
  a("reservoir_conc", s.reservoir_conc);
  a("reservoir", s.reservoir);
  a("catheter_capacity", s.catheter_capacity);
  a("catheter segments", s.catheter);
  a.ledger("ledger buckets", s.ledger);
  a("battery_used_mAs", s.battery_used_mAs);
  a("jump_guard_until", s.jump_guard_until);
  a("pre_jump_offset", s.pre_jump_offset);
  a("suspend_until", s.suspend_until);
  a("trial_end_mono", s.trial_end_mono);
  a("trial_end_logged", s.trial_end_logged);
  a("prime_left", s.prime_left);
  a("boluses", s.boluses);
  a("patient bolus starts", s.patient_starts);
  a("periodic_last_day", s.periodic_last_day);
  a("periodic_last_fired", s.periodic_last_fired);
  a.counted("alarms", s.alarms);
  a("daily_hold", s.daily_hold);
  a("total_mass", s.total_mass);
  a("total_volume", s.total_volume);
  a("programmed_volume", s.programmed_volume);
  a("dropped_volume", s.dropped_volume);
  a("steps_dropped", s.steps_dropped);
  a("steps_issued", s.steps_issued);
  a("pumped_since_refill", s.pumped_since_refill);
  a("last_fill", s.last_fill);
  a("has_filled", s.has_filled);
  a("refill_accuracy", s.refill_accuracy);
  if (a.format() >= 2) {  // format 2 (issue 17): appended, so format 1 is still read
    a.plan_field("max_in_reservoir", s.plan, &TherapyPlan::max_in_reservoir);
    a("catheter_revised", s.catheter_revised);
    a("refill_before", s.refill_before);
    a("refill_began", s.refill_began);
    a("last_fill_wall", s.last_fill_wall);
    a("stopped_since", s.stopped_since);
  }
  if (a.format() >= 3) {  // format 3 (S14: the 48 h mark of a stop): appended likewise
    a("stop_began", s.stop_began);
    a("long_stop_logged", s.long_stop_logged);
  }
  // Issue 16: the admixture, a versioned tail written only while a drug slot is in use (a
  // state without admixture encodes as before; no tail decodes to no admixture): the plan's
  // admixture and each drug's slot, the reservoir's and every catheter segment's admixture
  // concentrations, each drug slot's name, limit and ledger (core_state.cpp).
  a.admixture_tail("admixture", s);
}

}  // namespace thecal::detail

