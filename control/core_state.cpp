// CoreState <-> bytes.  Little-endian, fixed-width fields, doubles as their IEEE-754 bit
// pattern, each container with its length first (checked against its capacity), each
// enum checked against its range.  Not used in the dosing thread.
#include "control/core_state.hpp"

#include <bit>
#include <cstring>
#include <memory>

namespace thecal {

namespace {

class Writer {
 public:
  std::vector<std::uint8_t> out;
  void u8(std::uint8_t v) { out.push_back(v); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void b(bool v) { u8(v ? 1 : 0); }
  void dur(Duration d) { i64(d.count()); }
  void mono(MonoTime t) { i64(to_usec(t.time_since_epoch())); }
  void wall(WallTime t) { i64(to_usec(t.time_since_epoch())); }
  template <class Q>
  void q(Q x) { f64(x.canonical_value()); }
  template <std::size_t N>
  void str(const FixedString<N>& s) {
    u32(static_cast<std::uint32_t>(s.view().size()));
    out.insert(out.end(), s.view().begin(), s.view().end());
  }
  void opt_mono(const std::optional<MonoTime>& t) {
    b(t.has_value());
    if (t) mono(*t);
  }
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok = true;
  std::string why;

  void fail(std::string w) {
    if (ok) why = std::move(w);
    ok = false;
  }
  bool need(std::size_t n) {
    if (!ok) return false;
    if (in_.size() - pos_ < n) {
      fail("truncated at byte " + std::to_string(pos_));
      return false;
    }
    return true;
  }
  std::uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  bool b() {
    const auto v = u8();
    if (v > 1) fail("bad boolean");
    return v == 1;
  }
  Duration dur() { return Duration{i64()}; }
  MonoTime mono() { return mono_us(i64()); }
  WallTime wall() { return wall_us(i64()); }
  template <class Q>
  Q q() { return Q::canonical(f64()); }
  template <std::size_t N>
  FixedString<N> str() {
    const std::uint32_t n = u32();
    FixedString<N> s;
    if (n > N) {
      fail("string longer than " + std::to_string(N));
      return s;
    }
    if (!need(n)) return s;
    s.assign(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::optional<MonoTime> opt_mono() {
    if (!b()) return std::nullopt;
    return mono();
  }
  template <class E>
  E en(std::uint8_t max_inclusive, const char* what) {
    const auto v = u8();
    if (v > max_inclusive) fail(std::string("bad ") + what);
    return static_cast<E>(v);
  }
  std::size_t count(std::size_t cap, const char* what) {
    const std::uint32_t n = u32();
    if (n > cap) {
      fail(std::string("too many ") + what);
      return 0;
    }
    return n;
  }
  [[nodiscard]] bool at_end() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

void put_plan(Writer& w, const TherapyPlan& p) {
  w.str(p.id);
  w.str(p.patient);
  w.u8(static_cast<std::uint8_t>(p.phase));
  w.b(p.trial_ends.has_value());
  if (p.trial_ends) w.wall(*p.trial_ends);
  w.str(p.drug);
  w.q(p.concentration);
  w.q(p.reservoir_capacity);
  w.q(p.low_alarm);
  w.q(p.catheter_volume);
  w.str(p.timezone);
  w.u32(static_cast<std::uint32_t>(p.utc_offsets.size()));
  for (const auto& o : p.utc_offsets) {
    w.wall(o.from);
    w.dur(o.offset);
  }
  w.u8(static_cast<std::uint8_t>(p.basal_mode));
  w.q(p.continuous_rate);
  w.u32(static_cast<std::uint32_t>(p.flex_steps.size()));
  for (const auto& s : p.flex_steps) {
    w.dur(s.start);
    w.q(s.rate);
  }
  w.u32(static_cast<std::uint32_t>(p.periodic.size()));
  for (const auto& d : p.periodic) {
    w.dur(d.at);
    w.q(d.dose);
    w.dur(d.duration);
  }
  w.b(p.patient_bolus.has_value());
  if (p.patient_bolus) {
    w.q(p.patient_bolus->dose);
    w.dur(p.patient_bolus->duration);
    w.dur(p.patient_bolus->lockout);
    w.u32(p.patient_bolus->max_per_day);
  }
  w.q(p.max_daily_dose);
}

TherapyPlan get_plan(Reader& r) {
  TherapyPlan p;
  p.id = r.str<64>();
  p.patient = r.str<64>();
  p.phase = r.en<Phase>(1, "phase");
  if (r.b()) p.trial_ends = r.wall();
  p.drug = r.str<32>();
  p.concentration = r.q<Concentration>();
  p.reservoir_capacity = r.q<Volume>();
  p.low_alarm = r.q<Volume>();
  p.catheter_volume = r.q<Volume>();
  p.timezone = r.str<64>();
  for (std::size_t i = 0, n = r.count(kMaxTzTransitions, "UTC offsets"); i < n && r.ok; ++i) {
    UtcOffsetChange c;
    c.from = r.wall();
    c.offset = r.dur();
    p.utc_offsets.push_back(c);
  }
  p.basal_mode = r.en<BasalMode>(1, "basal mode");
  p.continuous_rate = r.q<MassRate>();
  for (std::size_t i = 0, n = r.count(kMaxFlexSteps, "flex steps"); i < n && r.ok; ++i) {
    FlexStep s;
    s.start = r.dur();
    s.rate = r.q<MassRate>();
    p.flex_steps.push_back(s);
  }
  for (std::size_t i = 0, n = r.count(kMaxPeriodicDoses, "periodic doses"); i < n && r.ok; ++i) {
    PeriodicDose d;
    d.at = r.dur();
    d.dose = r.q<Mass>();
    d.duration = r.dur();
    p.periodic.push_back(d);
  }
  if (r.b()) {
    PatientBolusRule b;
    b.dose = r.q<Mass>();
    b.duration = r.dur();
    b.lockout = r.dur();
    b.max_per_day = r.u32();
    p.patient_bolus = b;
  }
  p.max_daily_dose = r.q<Mass>();
  return p;
}

}  // namespace

std::vector<std::uint8_t> encode_core_state(const CoreState& s) {
  Writer w;
  w.out.reserve(32 * 1024);
  w.u32(kCoreStateFormat);
  w.mono(s.mono);
  w.wall(s.wall);
  w.u8(static_cast<std::uint8_t>(s.state));
  w.b(s.plan.has_value());
  if (s.plan) put_plan(w, *s.plan);
  w.q(s.reservoir_conc);
  w.q(s.reservoir);
  w.q(s.catheter_capacity);
  w.u32(static_cast<std::uint32_t>(s.catheter.size()));
  for (const auto& seg : s.catheter) {
    w.q(seg.volume);
    w.q(seg.concentration);
  }
  // The ledger: only buckets that hold mass.
  std::uint32_t n = 0;
  for (const auto& b : s.ledger) n += (b.index != RollingLedger::kEmpty && b.pg > 0) ? 1 : 0;
  w.u32(n);
  for (const auto& b : s.ledger) {
    if (b.index == RollingLedger::kEmpty || b.pg <= 0) continue;
    w.i64(b.index);
    w.i64(b.pg);
  }
  w.f64(s.battery_used_mAs);
  w.opt_mono(s.jump_guard_until);
  w.dur(s.pre_jump_offset);
  w.opt_mono(s.suspend_until);
  w.opt_mono(s.trial_end_mono);
  w.b(s.trial_end_logged);
  w.q(s.prime_left);
  for (const auto& b : s.boluses) {
    w.b(b.active);
    w.q(b.dose);
    w.q(b.rate);
    w.mono(b.start);
    w.mono(b.end);
    w.q(b.programmed);
    w.q(b.held);
    w.u32(b.uid);
  }
  w.u32(static_cast<std::uint32_t>(s.patient_starts.size()));
  for (const auto& t : s.patient_starts) w.mono(t);
  for (const auto d : s.periodic_last_day) w.i64(d);
  for (const auto& t : s.periodic_last_fired) w.opt_mono(t);
  w.u32(static_cast<std::uint32_t>(kAlarmCount));
  for (const auto& a : s.alarms) {
    w.b(a.active);
    w.b(a.acknowledged);
    w.b(a.cause_present);
    w.wall(a.raised);
    w.mono(a.silenced_until);
  }
  w.b(s.daily_hold);
  w.q(s.total_mass);
  w.q(s.total_volume);
  w.q(s.programmed_volume);
  w.q(s.dropped_volume);
  w.u64(s.steps_dropped);
  w.u64(s.steps_issued);
  w.q(s.pumped_since_refill);
  w.q(s.last_fill);
  w.b(s.has_filled);
  w.f64(s.refill_accuracy);
  return std::move(w.out);
}

std::optional<CoreState> decode_core_state(std::string_view bytes, std::string* err) {
  Reader r(bytes);
  auto s = std::make_unique<CoreState>();
  const std::uint32_t format = r.u32();
  if (r.ok && format != kCoreStateFormat) {
    r.fail("core state format " + std::to_string(format) + " is not " + std::to_string(kCoreStateFormat) +
           (format > kCoreStateFormat ? " (written by a newer thecald)" : ""));
  }
  s->mono = r.mono();
  s->wall = r.wall();
  s->state = r.en<PumpState>(static_cast<std::uint8_t>(PumpState::end_of_service), "pump state");
  if (r.b()) s->plan = get_plan(r);
  s->reservoir_conc = r.q<Concentration>();
  s->reservoir = r.q<Volume>();
  s->catheter_capacity = r.q<Volume>();
  for (std::size_t i = 0, n = r.count(Catheter::kMaxSegments, "catheter segments"); i < n && r.ok; ++i) {
    Catheter::Segment seg;
    seg.volume = r.q<Volume>();
    seg.concentration = r.q<Concentration>();
    s->catheter.push_back(seg);
  }
  for (std::size_t i = 0, n = r.count(RollingLedger::kBuckets, "ledger buckets"); i < n && r.ok; ++i) {
    s->ledger[i].index = r.i64();
    s->ledger[i].pg = r.i64();
    if (s->ledger[i].index == RollingLedger::kEmpty || s->ledger[i].pg < 0) r.fail("bad ledger bucket");
  }
  s->battery_used_mAs = r.f64();
  s->jump_guard_until = r.opt_mono();
  s->pre_jump_offset = r.dur();
  s->suspend_until = r.opt_mono();
  s->trial_end_mono = r.opt_mono();
  s->trial_end_logged = r.b();
  s->prime_left = r.q<Volume>();
  for (auto& b : s->boluses) {
    b.active = r.b();
    b.dose = r.q<Mass>();
    b.rate = r.q<MassRate>();
    b.start = r.mono();
    b.end = r.mono();
    b.programmed = r.q<Mass>();
    b.held = r.q<Mass>();
    b.uid = r.u32();
  }
  for (std::size_t i = 0, n = r.count(kCoreMaxPatientStarts, "patient bolus starts"); i < n && r.ok; ++i) {
    s->patient_starts.push_back(r.mono());
  }
  for (auto& d : s->periodic_last_day) d = r.i64();
  for (auto& t : s->periodic_last_fired) t = r.opt_mono();
  if (r.ok && r.u32() != kAlarmCount) r.fail("alarm table of another size");
  for (auto& a : s->alarms) {
    a.active = r.b();
    a.acknowledged = r.b();
    a.cause_present = r.b();
    a.raised = r.wall();
    a.silenced_until = r.mono();
  }
  s->daily_hold = r.b();
  s->total_mass = r.q<Mass>();
  s->total_volume = r.q<Volume>();
  s->programmed_volume = r.q<Volume>();
  s->dropped_volume = r.q<Volume>();
  s->steps_dropped = r.u64();
  s->steps_issued = r.u64();
  s->pumped_since_refill = r.q<Volume>();
  s->last_fill = r.q<Volume>();
  s->has_filled = r.b();
  s->refill_accuracy = r.f64();
  if (r.ok && !r.at_end()) r.fail("trailing bytes after the core state");
  // Physical sanity: nothing negative or non-finite where the core would trust it.
  if (r.ok) {
    const bool bad = !s->reservoir.is_finite() || s->reservoir < uL(0) || !s->reservoir_conc.is_finite() ||
                     !s->catheter_capacity.is_finite() || s->catheter_capacity < uL(0) ||
                     !s->total_volume.is_finite() || !s->total_mass.is_finite();
    if (bad) r.fail("a volume, mass or concentration is negative or not finite");
  }
  if (!r.ok) {
    if (err != nullptr) *err = r.why;
    return std::nullopt;
  }
  return std::optional<CoreState>(std::move(*s));
}

}  // namespace thecal

namespace thecal {

std::vector<std::uint8_t> encode_therapy_plan(const TherapyPlan& p) {
  Writer w;
  w.u32(kCoreStateFormat);
  put_plan(w, p);
  return std::move(w.out);
}

std::optional<TherapyPlan> decode_therapy_plan(std::string_view bytes, std::string* err) {
  Reader r(bytes);
  const std::uint32_t format = r.u32();
  if (r.ok && format != kCoreStateFormat) r.fail("plan format " + std::to_string(format) + " is not known");
  TherapyPlan p = get_plan(r);
  if (r.ok && !r.at_end()) r.fail("trailing bytes after the plan");
  if (!r.ok) {
    if (err != nullptr) *err = r.why;
    return std::nullopt;
  }
  return p;
}

}  // namespace thecal
