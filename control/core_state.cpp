// CoreState <-> bytes.  Little-endian, fixed-width fields, doubles as their IEEE-754 bit
// pattern, each container with its length first (checked against its capacity), each
// enum checked against its range.  Not used in the dosing thread.
#include "control/core_state.hpp"
#include "control/core_state_fields.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <type_traits>

namespace thecal {

namespace {

using detail::is_fixed_string;
using detail::is_optional;
using detail::is_quantity;
using detail::is_static_vector;
using detail::is_std_array;

/// The largest valid value of each enum the state holds, in a state of format `format`.
constexpr std::uint8_t enum_max(PumpState, std::uint32_t format) {
  return static_cast<std::uint8_t>(format >= 2 ? PumpState::refilling : PumpState::end_of_service);
}
constexpr std::uint8_t enum_max(Phase, std::uint32_t /*format*/) { return static_cast<std::uint8_t>(Phase::maintenance); }
constexpr std::uint8_t enum_max(BasalMode, std::uint32_t /*format*/) { return static_cast<std::uint8_t>(BasalMode::flex); }
constexpr std::uint8_t enum_max(BuzzerPattern, std::uint32_t /*format*/) { return static_cast<std::uint8_t>(BuzzerPattern::high); }
/// How many alarm codes a state of each format has (format 1: the first 17; issue 17
/// appended the others).
constexpr std::size_t alarm_count(std::uint32_t format) { return format >= 2 ? kAlarmCount : 17; }

class Writer {
 public:
  std::vector<std::uint8_t> out;
  [[nodiscard]] static constexpr std::uint32_t format() { return kCoreStateFormat; }
  template <class T>
  void plan_field(const char* name, const std::optional<TherapyPlan>& plan, T TherapyPlan::*member) {
    (*this)(name, plan ? (*plan).*member : T{});
  }

  template <class T>
  void operator()([[maybe_unused]] const char* name, const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      u8(v ? 1 : 0);
    } else if constexpr (std::is_enum_v<T>) {
      u8(static_cast<std::uint8_t>(v));
    } else if constexpr (std::is_same_v<T, std::uint8_t>) {
      u8(v);
    } else if constexpr (std::is_same_v<T, std::uint32_t>) {
      u32(v);
    } else if constexpr (std::is_same_v<T, std::uint64_t>) {
      u64(v);
    } else if constexpr (std::is_same_v<T, std::int64_t>) {
      u64(static_cast<std::uint64_t>(v));
    } else if constexpr (std::is_same_v<T, double>) {
      u64(std::bit_cast<std::uint64_t>(v));
    } else if constexpr (std::is_same_v<T, Duration>) {
      (*this)(name, v.count());
    } else if constexpr (std::is_same_v<T, MonoTime> || std::is_same_v<T, WallTime>) {
      (*this)(name, to_usec(v.time_since_epoch()));
    } else if constexpr (is_quantity<T>::value) {
      (*this)(name, v.canonical_value());
    } else if constexpr (is_fixed_string<T>::value) {
      u32(static_cast<std::uint32_t>(v.view().size()));
      out.insert(out.end(), v.view().begin(), v.view().end());
    } else if constexpr (is_optional<T>::value) {
      (*this)(name, v.has_value());
      if (v) (*this)(name, *v);
    } else if constexpr (is_static_vector<T>::value) {
      u32(static_cast<std::uint32_t>(v.size()));
      for (const auto& e : v) (*this)(name, e);
    } else if constexpr (is_std_array<T>::value) {
      for (const auto& e : v) (*this)(name, e);
    } else {
      fields_of(*this, v);
    }
  }
  template <class Array>
  void counted(const char* name, const Array& v) {
    static_assert(std::tuple_size_v<Array> == alarm_count(kCoreStateFormat));
    u32(static_cast<std::uint32_t>(v.size()));
    (*this)(name, v);
  }
  void admixture_tail(const char* /*name*/, const CoreState& s) {
    const bool plan_mix = s.plan && !s.plan->admixture.empty();
    const bool slots_used =
        std::any_of(s.drug_slots.begin(), s.drug_slots.end(), [](const CoreDrugSlot& d) { return !d.name.empty(); });
    if (!plan_mix && !slots_used) return;
    u32(kAdmixtureTail);
    const std::size_t n = s.plan ? s.plan->admixture.size() : 0;
    u32(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) {
      const AdmixtureDrug& x = s.plan->admixture[i];
      (*this)("admixture name", x.name);
      (*this)("admixture concentration", x.concentration);
      (*this)("admixture max_daily_dose", x.max_daily_dose);
      (*this)("admixture slot", s.plan_slots[i]);
    }
    (*this)("reservoir_admix", s.reservoir_admix);
    u32(static_cast<std::uint32_t>(s.catheter.size()));
    for (const auto& seg : s.catheter) (*this)("segment admix", seg.admix);
    u32(static_cast<std::uint32_t>(kDrugSlots));
    for (const auto& d : s.drug_slots) {
      (*this)("drug slot name", d.name);
      (*this)("drug slot limit", d.limit);
      ledger("drug slot ledger", d.ledger);
    }
  }
  template <class Array>
  void ledger(const char* /*name*/, const Array& buckets) {
    std::uint32_t n = 0;
    for (const auto& b : buckets) n += (b.index != RollingLedger::kEmpty && b.pg > 0) ? 1 : 0;
    u32(n);
    for (const auto& b : buckets) {
      if (b.index == RollingLedger::kEmpty || b.pg <= 0) continue;
      u64(static_cast<std::uint64_t>(b.index));
      u64(static_cast<std::uint64_t>(b.pg));
    }
  }

 private:
  void u8(std::uint8_t v) { out.push_back(v); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok = true;
  std::string why;
  std::uint32_t format_ = kCoreStateFormat;
  [[nodiscard]] std::uint32_t format() const { return format_; }
  template <class T>
  void plan_field(const char* name, std::optional<TherapyPlan>& plan, T TherapyPlan::*member) {
    T v{};
    (*this)(name, v);
    if (!ok) return;
    if (v < T{} || (!plan && v != T{})) return fail(std::string("bad ") + name);
    if (plan) (*plan).*member = v;
  }

  void fail(std::string w) {
    if (ok) why = std::move(w);
    ok = false;
  }

  template <class T>
  void operator()([[maybe_unused]] const char* name, T& v) {
    if (!ok) return;
    if constexpr (std::is_same_v<T, bool>) {
      const auto b = u8();
      if (b > 1) fail(std::string("bad boolean (") + name + ")");
      v = b == 1;
    } else if constexpr (std::is_enum_v<T>) {
      const auto e = u8();
      if (e > enum_max(T{}, format_)) fail(std::string("bad ") + name);
      v = static_cast<T>(e);
    } else if constexpr (std::is_same_v<T, std::uint8_t>) {
      v = u8();
    } else if constexpr (std::is_same_v<T, std::uint32_t>) {
      v = u32();
    } else if constexpr (std::is_same_v<T, std::uint64_t>) {
      v = u64();
    } else if constexpr (std::is_same_v<T, std::int64_t>) {
      v = static_cast<std::int64_t>(u64());
    } else if constexpr (std::is_same_v<T, double>) {
      v = std::bit_cast<double>(u64());
    } else if constexpr (std::is_same_v<T, Duration>) {
      v = Duration{static_cast<std::int64_t>(u64())};
    } else if constexpr (std::is_same_v<T, MonoTime>) {
      v = mono_us(static_cast<std::int64_t>(u64()));
    } else if constexpr (std::is_same_v<T, WallTime>) {
      v = wall_us(static_cast<std::int64_t>(u64()));
    } else if constexpr (is_quantity<T>::value) {
      v = T::canonical(std::bit_cast<double>(u64()));
    } else if constexpr (is_fixed_string<T>::value) {
      const std::uint32_t n = u32();
      if (n > is_fixed_string<T>::capacity) return fail(std::string(name) + ": string longer than " +
                                                        std::to_string(is_fixed_string<T>::capacity));
      if (!need(n)) return;
      v.assign(in_.substr(pos_, n));
      pos_ += n;
    } else if constexpr (is_optional<T>::value) {
      bool present = false;
      (*this)(name, present);
      if (!present || !ok) {
        v.reset();
        return;
      }
      v.emplace();
      (*this)(name, *v);
    } else if constexpr (is_static_vector<T>::value) {
      const std::uint32_t n = u32();
      if (n > is_static_vector<T>::capacity) return fail(std::string("too many ") + name);
      v.clear();
      for (std::uint32_t i = 0; i < n && ok; ++i) {
        v.emplace_back();
        (*this)(name, v.back());
      }
    } else if constexpr (is_std_array<T>::value) {
      for (auto& e : v) (*this)(name, e);
    } else {
      fields_of(*this, v);
    }
  }
  template <class Array>
  void counted(const char* name, Array& v) {  // the alarm table: its size, then its entries
    const std::size_t n = alarm_count(format_);
    if (ok && u32() != n) return fail(std::string(name) + ": a table of another size");
    for (std::size_t i = 0; i < n && i < v.size(); ++i) (*this)(name, v[i]);
  }
  void admixture_tail(const char* /*name*/, CoreState& s) {
    if (!ok || in_.size() - pos_ < 4) return;  // absent in a state without admixture
    const std::uint32_t version = u32();
    if (version != kAdmixtureTail) {
      return fail("admixture tail version " + std::to_string(version) + " is not " + std::to_string(kAdmixtureTail));
    }
    const std::uint32_t n = u32();
    if (n > kMaxAdmixture) return fail("too many admixture drugs");
    if (ok && n > 0 && !s.plan) return fail("an admixture without a prescription");
    for (std::uint32_t i = 0; i < n && ok; ++i) {
      AdmixtureDrug x;
      (*this)("admixture name", x.name);
      (*this)("admixture concentration", x.concentration);
      (*this)("admixture max_daily_dose", x.max_daily_dose);
      (*this)("admixture slot", s.plan_slots[i]);
      if (s.plan_slots[i] >= kDrugSlots) fail("bad admixture slot");
      if (ok) s.plan->admixture.push_back(x);
    }
    (*this)("reservoir_admix", s.reservoir_admix);
    if (ok && u32() != s.catheter.size()) return fail("admixture for another number of catheter segments");
    for (auto& seg : s.catheter) (*this)("segment admix", seg.admix);
    if (ok && u32() != kDrugSlots) return fail("drug slot table of another size");
    for (auto& d : s.drug_slots) {
      (*this)("drug slot name", d.name);
      (*this)("drug slot limit", d.limit);
      ledger("drug slot ledger", d.ledger);
    }
    // Every plan drug in a slot of its name; every figure finite and not negative.
    for (std::uint32_t i = 0; i < n && ok; ++i) {
      if (!(s.drug_slots[s.plan_slots[i]].name == s.plan->admixture[i].name)) fail("an admixture drug outside its slot");
    }
    auto bad = [](auto q) { return !q.is_finite() || q < decltype(q){}; };
    for (std::size_t k = 0; k < kDrugSlots && ok; ++k) {
      bool b = bad(s.reservoir_admix[k]) || bad(s.drug_slots[k].limit);
      for (const auto& seg : s.catheter) b = b || bad(seg.admix[k]);
      if (b) fail("an admixture concentration or limit is negative or not finite");
    }
  }
  template <class Array>
  void ledger(const char* name, Array& buckets) {
    const std::uint32_t n = u32();
    if (n > buckets.size()) return fail(std::string("too many ") + name);
    for (std::uint32_t i = 0; i < n && ok; ++i) {
      buckets[i].index = static_cast<std::int64_t>(u64());
      buckets[i].pg = static_cast<std::int64_t>(u64());
      if (buckets[i].index == RollingLedger::kEmpty || buckets[i].pg < 0) fail("bad ledger bucket");
    }
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }
  [[nodiscard]] bool at_end() const { return pos_ == in_.size(); }

 private:
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
  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
};

}  // namespace

std::vector<std::uint8_t> encode_core_state(const CoreState& s) {
  Writer w;
  w.out.reserve(std::size_t{32} * 1024);
  w("format", kCoreStateFormat);
  detail::core_state_fields(w, s);
  return std::move(w.out);
}

std::optional<CoreState> decode_core_state(std::string_view bytes, std::string* err) {
  Reader r(bytes);
  auto s = std::make_unique<CoreState>();
  const std::uint32_t format = r.u32();
  if (r.ok && (format < 1 || format > kCoreStateFormat)) {
    r.fail("core state format " + std::to_string(format) + " is not " + std::to_string(kCoreStateFormat) +
           (format > kCoreStateFormat ? " (written by a newer thecald)" : ""));
  }
  r.format_ = format;
  detail::core_state_fields(r, *s);
  if (r.ok && !r.at_end()) r.fail("trailing bytes after the core state");
  if (format < 2) {
    s->last_fill_wall = s->wall;  // a stability limit counts from the restart, never earlier
  } else if (r.ok && s->refill_before > PumpState::stopped) {
    r.fail("bad state before the refill (not one BeginRefill leaves from)");
  }
  if (format < 3 && s->stopped_since) {
    // A stop kept by format 2 (wall time only): on the monotonic clock it began its wall
    // length before the capture (never after it); its 48 h mark was never logged (format 2
    // logged a long stop only when delivery resumed), so a restart logs it if it is past.
    s->stop_began = s->mono - std::max(Duration{0}, s->wall - *s->stopped_since);
    s->long_stop_logged = false;
  }
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

// A plan alone (the flight recorder's load and refill commands): its fields as in a state,
// then the two it keeps in the state's tails there (max_in_reservoir, the admixture).
std::vector<std::uint8_t> encode_therapy_plan(const TherapyPlan& p) {
  Writer w;
  w("format", kCoreStateFormat);
  w("plan", p);
  w("max_in_reservoir", p.max_in_reservoir);
  w("admixture", p.admixture);
  return std::move(w.out);
}

std::optional<TherapyPlan> decode_therapy_plan(std::string_view bytes, std::string* err) {
  Reader r(bytes);
  const std::uint32_t format = r.u32();
  // The plan's layout is the same in formats 2 and 3 (recordings of format 2 still read).
  if (r.ok && (format < 2 || format > kCoreStateFormat)) {
    r.fail("plan format " + std::to_string(format) + " is not known");
  }
  TherapyPlan p;
  r("plan", p);
  r("max_in_reservoir", p.max_in_reservoir);
  r("admixture", p.admixture);
  if (r.ok && p.max_in_reservoir < Duration{0}) r.fail("bad max_in_reservoir");
  if (r.ok && !r.at_end()) r.fail("trailing bytes after the plan");
  if (!r.ok) {
    if (err != nullptr) *err = r.why;
    return std::nullopt;
  }
  return p;
}

}  // namespace thecal

namespace thecal {

// An exact image (the flight recorder's snapshots): its format, the state's bytes as the
// journal writes them (length first), then the runtime through its field list.
std::vector<std::uint8_t> encode_core_image(const CoreImage& im) {
  const auto state = encode_core_state(im.state);
  Writer w;
  w.out.reserve(state.size() + 1024);
  w("image format", kCoreImageFormat);
  w("state length", static_cast<std::uint32_t>(state.size()));
  w.out.insert(w.out.end(), state.begin(), state.end());
  w("runtime", im.runtime);
  return std::move(w.out);
}

std::optional<CoreImage> decode_core_image(std::string_view bytes, std::string* err) {
  auto fail = [&](std::string why) -> std::optional<CoreImage> {
    if (err != nullptr) *err = std::move(why);
    return std::nullopt;
  };
  Reader head(bytes);
  const std::uint32_t format = head.u32();
  const std::uint32_t n = head.u32();
  if (!head.ok) return fail("core image: " + head.why);
  if (format != kCoreImageFormat) {
    return fail("core image format " + std::to_string(format) + " is not " + std::to_string(kCoreImageFormat));
  }
  if (bytes.size() - 8 < n) return fail("core image: the state is cut");
  std::string why;
  auto state = decode_core_state(bytes.substr(8, n), &why);
  if (!state) return fail("core image: " + why);
  auto im = std::make_unique<CoreImage>();
  im->state = std::move(*state);
  Reader r(bytes.substr(8 + n));
  r("runtime", im->runtime);
  if (r.ok && !r.at_end()) r.fail("trailing bytes after the runtime");
  if (r.ok && im->runtime.stretch.cath_admix.size() != im->runtime.stretch.cath.size()) {
    r.fail("the stretch's catheter admixture is for another number of segments");
  }
  if (!r.ok) return fail("core image: " + r.why);
  return std::optional<CoreImage>(std::move(*im));
}

}  // namespace thecal
