// CoreState: the binary form round-trips and refuses damage; restore_state brings back
// every limit (lockout, count, ledger), counts unconfirmed steps as pumped, and maps the
// clocks conservatively across a restart (SPEC S7, S8).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <sstream>
#include <map>
#include <set>
#include <type_traits>
#include <utility>

#include "control/core_state_fields.hpp"
#include "tests/app/journal_test_util.hpp"

namespace thecal::test {
namespace {

std::string as_text(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

struct Delivered {
  Harness h;
  TherapyPlan plan = bolus_plan();
  CoreState s;
  Delivered() {
    h.ready(plan);
    h.run(hours(2), seconds(1));
    EXPECT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
    h.run(minutes(5), seconds(1));
    h.core->export_state(s, h.now);
  }
};

TEST(CoreState, EncodesAndDecodesExactly) {
  Delivered d;
  const auto bytes = encode_core_state(d.s);
  std::string err;
  const auto back = decode_core_state(as_text(bytes), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(encode_core_state(*back), bytes);
  EXPECT_EQ(back->steps_issued, d.s.steps_issued);
  EXPECT_TRUE(back->boluses[0].active);
  EXPECT_EQ(back->plan->id, d.plan.id);
}


// ---- Every field, through the one field list (control/core_state_fields.hpp) -------------
template <class T>
using IsSv = detail::is_static_vector<T>;
template <class T>
using IsArr = detail::is_std_array<T>;
template <class T>
using IsOpt = detail::is_optional<T>;
template <class T>
using IsFs = detail::is_fixed_string<T>;
template <class T>
using IsQ = detail::is_quantity<T>;

/// Sets every field it visits to a value no default has: each one distinct (a running
/// counter k), times near `base` so that a restore keeps them in their windows.
struct Filler {
  Now base;
  std::int64_t k = 1;
  std::size_t leaves = 0;
  template <class T>
  void operator()(const char* name, T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      v = true, ++leaves;
    } else if constexpr (std::is_same_v<T, PumpState>) {
      v = PumpState::suspended, ++leaves;  // also a valid state to return to from a refill
    } else if constexpr (std::is_same_v<T, Phase>) {
      v = Phase::trial, ++leaves;
    } else if constexpr (std::is_same_v<T, BasalMode>) {
      v = BasalMode::flex, ++leaves;
    } else if constexpr (std::is_same_v<T, BuzzerPattern>) {
      v = BuzzerPattern::medium, ++leaves;
    } else if constexpr (std::is_integral_v<T>) {
      v = static_cast<T>(k++), ++leaves;
    } else if constexpr (std::is_same_v<T, double>) {
      v = static_cast<double>(k++) + 0.5, ++leaves;
    } else if constexpr (std::is_same_v<T, Duration>) {
      v = msec(k++), ++leaves;
    } else if constexpr (std::is_same_v<T, MonoTime>) {
      v = base.mono + msec(k++), ++leaves;
    } else if constexpr (std::is_same_v<T, WallTime>) {
      v = base.wall + msec(k++), ++leaves;
    } else if constexpr (IsQ<T>::value) {
      v = T::canonical(static_cast<double>(k++) + 0.25), ++leaves;
    } else if constexpr (IsFs<T>::value) {
      v.assign("f" + std::to_string(k++)), ++leaves;
    } else if constexpr (IsOpt<T>::value) {
      v.emplace();
      (*this)(name, *v);
    } else if constexpr (IsSv<T>::value) {
      v.clear();
      for (int i = 0; i < 2; ++i) (*this)(name, v.emplace_back());
    } else if constexpr (IsArr<T>::value) {
      for (auto& e : v) (*this)(name, e);
    } else {
      fields_of(*this, v);
    }
  }
  [[nodiscard]] static std::uint32_t format() { return kCoreStateFormat; }
  template <class T>
  void plan_field(const char* name, std::optional<TherapyPlan>& plan, T TherapyPlan::*member) {
    if (plan) (*this)(name, (*plan).*member);
  }
  void admixture_tail(const char*, CoreState&) {}  // filled by tests/control/admixture_test.cpp's states
  template <class A>
  void counted(const char* name, A& v) { (*this)(name, v); }
  template <class A>
  void ledger(const char*, A& b) {
    for (auto& x : b) x = {};
    for (std::size_t i = 0; i < 3; ++i) {
      b[i].index = to_usec(base.mono - MonoTime{}) / 60'000'000 - static_cast<std::int64_t>(i);
      b[i].pg = 1000 * k++;
      ++leaves;
    }
  }
};

/// Every field as (path, text), in the field list's order.
struct Lister {
  std::vector<std::pair<std::string, std::string>> out;
  std::string path;
  template <class T>
  void operator()(const char* name, const T& v) {
    const std::string here = path.empty() ? name : path + "." + name;
    if constexpr (std::is_same_v<T, bool> || std::is_enum_v<T>) {
      out.emplace_back(here, std::to_string(static_cast<int>(v)));
    } else if constexpr (std::is_integral_v<T>) {
      out.emplace_back(here, std::to_string(v));
    } else if constexpr (std::is_same_v<T, double>) {
      out.emplace_back(here, std::to_string(std::bit_cast<std::uint64_t>(v)));
    } else if constexpr (std::is_same_v<T, Duration>) {
      out.emplace_back(here, std::to_string(v.count()));
    } else if constexpr (std::is_same_v<T, MonoTime> || std::is_same_v<T, WallTime>) {
      out.emplace_back(here, std::to_string(to_usec(v.time_since_epoch())));
    } else if constexpr (IsQ<T>::value) {
      out.emplace_back(here, std::to_string(std::bit_cast<std::uint64_t>(v.canonical_value())));
    } else if constexpr (IsFs<T>::value) {
      out.emplace_back(here, std::string(v.view()));
    } else if constexpr (IsOpt<T>::value) {
      out.emplace_back(here + "?", v ? "1" : "0");
      if (v) nest(here, *v);
    } else if constexpr (IsSv<T>::value || IsArr<T>::value) {
      out.emplace_back(here + "#", std::to_string(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i) nest(here + "[" + std::to_string(i) + "]", v[i]);
    } else {
      const std::string saved = path;
      path = here;
      fields_of(*this, v);
      path = saved;
    }
  }
  template <class T>
  void nest(const std::string& at, const T& v) {
    const std::string saved = path;
    path.clear();
    (*this)(at.c_str(), v);
    path = saved;
  }
  [[nodiscard]] static std::uint32_t format() { return kCoreStateFormat; }
  template <class T>
  void plan_field(const char* name, const std::optional<TherapyPlan>& plan, T TherapyPlan::*member) {
    if (plan) (*this)(name, (*plan).*member);
  }
  void admixture_tail(const char*, const CoreState& s) {
    if (s.plan) (*this)("admixture", s.plan->admixture);
    (*this)("plan_slots", s.plan_slots);
    (*this)("reservoir_admix", s.reservoir_admix);
    for (std::size_t i = 0; i < s.catheter.size(); ++i) nest("segment admix[" + std::to_string(i) + "]", s.catheter[i].admix);
    (*this)("drug_slots", s.drug_slots);
  }
  template <class A>
  void counted(const char* name, const A& v) { (*this)(name, v); }
  template <class A>
  void ledger(const char* name, const A& b) {  // as a set: the ring's order is its own
    std::map<std::int64_t, std::int64_t> by_minute;
    for (const auto& x : b) {
      if (x.index != RollingLedger::kEmpty && x.pg > 0) by_minute[x.index] += x.pg;
    }
    for (const auto& [minute, pg] : by_minute) {
      out.emplace_back(std::string(name) + "@" + std::to_string(minute), std::to_string(pg));
    }
  }
};

std::vector<std::pair<std::string, std::string>> listed(const CoreState& s) {
  Lister l;
  detail::core_state_fields(l, s);
  return l.out;
}

/// The first field whose value differs, or "" if none (both lists in the same order).
std::string first_difference(const CoreState& a, const CoreState& b, const std::set<std::string>& except = {}) {
  const auto x = listed(a);
  const auto y = listed(b);
  for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    if (except.count(x[i].first) != 0) continue;
    if (x[i] != y[i]) return x[i].first + ": " + x[i].second + " vs " + y[i].first + ": " + y[i].second;
  }
  return x.size() == y.size() ? "" : "lists of different length";
}

TEST(CoreState, EveryFieldOfTheListSurvivesTheCodec) {
  CoreState s;
  Filler f{Now{mono_us(90'000'000'000), wall_us(1'795'608'000'000'000LL)}};
  detail::core_state_fields(f, s);
  ASSERT_GT(f.leaves, 150U) << "the filler reached every leaf";
  // Nothing was left at its default: each leaf differs from a default state's.
  const auto filled = listed(s);
  const auto defaults = listed(CoreState{});
  std::size_t same = 0;
  auto in_admixture_tail = [](const std::string& k) {
    for (const char* p : {"admixture", "plan_slots", "reservoir_admix", "segment admix", "drug_slots"}) {
      if (k.rfind(p, 0) == 0) return true;
    }
    return false;
  };
  for (const auto& [k, v] : filled) {
    if (in_admixture_tail(k)) continue;  // the Filler leaves the admixture out: admixture_test fills it
    if (k.back() == '#' && k.find('[') == std::string::npos && k != "catheter segments#" &&
        k != "patient bolus starts#") {
      continue;  // a std::array's size is its type's
    }
    for (const auto& [k2, v2] : defaults) {
      if (k == k2 && v == v2) ADD_FAILURE() << k << " still has its default value " << v;
      same += (k == k2 && v == v2) ? 1 : 0;
    }
  }
  EXPECT_EQ(same, 0U);
  std::string err;
  const auto back = decode_core_state(as_text(encode_core_state(s)), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(first_difference(s, *back), "");
}

// A new field added to CoreState and to the list, but forgotten in export_state or
// restore_state, fails here: every field of a filled state must come back out of a core
// that restored it (same clocks: no shift).  The exceptions are the documented ones
// (control/core_state.hpp): priming does not resume, so what was left of it is 0.
TEST(CoreRestore, EveryFieldComesBackOutOfACoreThatRestoredIt) {
  Delivered d;  // a real plan and catheter; every other field filled
  CoreState s = d.s;
  const TherapyPlan plan = *s.plan;
  Filler f{d.h.now};
  detail::core_state_fields(f, s);
  s.plan = plan;
  s.mono = d.h.now.mono;
  s.wall = d.h.now.wall;
  s.catheter_capacity = plan.catheter_volume;
  s.catheter = d.s.catheter;  // a plug-flow queue that fills its capacity
  s.prime_left = uL(0);
  s.boluses = d.s.boluses;    // consistent rates and ends
  for (auto& a : s.alarms) a.silenced_until = d.h.now.mono + minutes(1);
  Harness n;
  n.now = d.h.now;
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  (void)n.core->restore_state(s, RestoreClock{n.now, Duration{0}}, 0);
  CoreState out;
  n.core->export_state(out, n.now);
  EXPECT_EQ(first_difference(s, out), "");
}

// ---- The exact image's runtime (CoreRuntime: what a restart drops) -----------------------
// The list names every member of each struct: counted by aggregate initialisation, so a
// member added to CoreRuntime, CoreStretch or CoreLedgerCursor without its line in
// core_state_fields.hpp fails here.
struct AnyField {
  template <class T>
  operator T&() const&& noexcept;  // NOLINT(google-explicit-constructor): only counted, never called
};
template <class T, std::size_t... I>
constexpr bool initialisable_with(std::index_sequence<I...> /*unused*/) {
  return requires { T{(void(I), AnyField{})...}; };
}
template <class T, std::size_t N = 0>
constexpr std::size_t member_count() {
  if constexpr (initialisable_with<T>(std::make_index_sequence<N + 1>{})) {
    return member_count<T, N + 1>();
  } else {
    return N;
  }
}
struct Counter {
  std::size_t n = 0;
  template <class T>
  void operator()(const char* /*name*/, const T& /*v*/) { ++n; }
};
template <class T>
std::size_t listed_count() {
  Counter c;
  T v{};
  fields_of(c, v);
  return c.n;
}

TEST(CoreImage, TheRuntimeListNamesEveryMember) {
  EXPECT_EQ(member_count<CoreRuntime>(), listed_count<CoreRuntime>());
  EXPECT_EQ(member_count<CoreStretch>(), listed_count<CoreStretch>());
  EXPECT_EQ(member_count<CoreLedgerCursor>(), listed_count<CoreLedgerCursor>());
  EXPECT_EQ(listed_count<CoreRuntime>(), kCoreRuntimeFields);
  EXPECT_EQ(listed_count<CoreStretch>(), kCoreStretchFields);
  EXPECT_EQ(listed_count<CoreLedgerCursor>(), kCoreLedgerCursorFields);
  EXPECT_EQ(member_count<CoreImage>(), 2U) << "CoreImage is the state and the runtime";
  // The counter itself counts: a struct of three members is three.
  struct Three {
    int a = 0;
    std::optional<MonoTime> b;
    std::array<Mass, 2> c{};
  };
  EXPECT_EQ(member_count<Three>(), 3U);
}

std::vector<std::pair<std::string, std::string>> listed_runtime(const CoreRuntime& r) {
  Lister l;
  l("runtime", r);
  return l.out;
}

// Every runtime field, filled through the list, survives the image's codec, and comes back
// out of a core that restored it (a field forgotten in export_image or restore_image fails
// here by name).
TEST(CoreImage, EveryRuntimeFieldSurvivesTheCodecAndARestore) {
  Delivered d;
  auto im = std::make_unique<CoreImage>();
  im->state = d.s;
  Filler f{d.h.now};
  f("runtime", im->runtime);
  ASSERT_GT(f.leaves, 60U);
  const auto filled = listed_runtime(im->runtime);
  const auto defaults = listed_runtime(CoreRuntime{});
  const std::map<std::string, std::string> by_key(defaults.begin(), defaults.end());
  for (const auto& [k, v] : filled) {
    if (k.back() == '#' && k.find("cath") == std::string::npos) continue;  // a std::array's size is its type's
    const auto it = by_key.find(k);
    if (it != by_key.end()) {
      EXPECT_NE(v, it->second) << k << " still has its default value";
    }
  }
  im->runtime.stretch.cath_capacity = uL(1000);  // room for the two filled segments
  im->runtime.next_slow = im->state.mono + seconds(1);  // later than the status time, as in a live core
  // A live ledger's cursor is at the status's minute or later, its expiry done up to it.
  const std::int64_t minute = to_usec(im->state.mono - MonoTime{}) / 60'000'000 + 1;
  im->runtime.ledger_cursor.latest_minute = minute;
  im->runtime.ledger_cursor.next_to_expire = minute - 24 * 60;
  const auto bytes = encode_core_image(*im);
  std::string err;
  const auto back = decode_core_image(as_text(bytes), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(listed_runtime(back->runtime), listed_runtime(im->runtime));
  EXPECT_EQ(first_difference(back->state, im->state), "");

  Harness n;
  n.core = std::make_unique<PumpCore>(n.board, Now{mono_us(0), wall_us(0)});
  n.core->restore_image(*back);
  auto out = std::make_unique<CoreImage>();
  ASSERT_TRUE(n.core->export_image(*out));
  const auto x = listed_runtime(out->runtime);
  const auto y = listed_runtime(im->runtime);
  ASSERT_EQ(x.size(), y.size());
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], y[i]) << "lost by export_image/restore_image";
  // The state's derived fields follow from the runtime (pending volume, whole steps, the
  // battery's closed form);
  // every other field is the one restored.
  EXPECT_EQ(first_difference(out->state, im->state, {"dropped_volume", "prime_left", "battery_used_mAs"}), "");
}

// Journals written before the field list (format 1, by 8e5d9e3, in a real file) read
// with every field they had, and the issue-17 fields at their format-1 defaults.
TEST(CoreState, AFormat1StateFromBeforeTheFieldListDecodes) {
  std::ifstream in(THECAL_SOURCE_DIR "/tests/app/data/core_state_format1.hex");
  ASSERT_TRUE(in) << "tests/app/data/core_state_format1.hex";
  std::string line;
  std::string bytes;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    for (std::size_t i = 0; i + 1 < line.size(); i += 2) bytes += static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16));
  }
  ASSERT_GT(bytes.size(), 500U);
  ASSERT_EQ(bytes[0], 1) << "a format-1 file";
  std::string err;
  const auto s = decode_core_state(bytes, &err);
  ASSERT_TRUE(s) << err;
  ASSERT_TRUE(s->plan);
  EXPECT_EQ(s->plan->flex_steps.size(), 2U);
  EXPECT_EQ(s->plan->utc_offsets.size(), 2U);
  EXPECT_EQ(s->plan->max_in_reservoir, Duration{0});
  EXPECT_EQ(s->refill_accuracy, 97.25);
  EXPECT_TRUE(s->suspend_until.has_value());
  EXPECT_TRUE(s->alarms[3].acknowledged);
  EXPECT_EQ(s->last_fill_wall, s->wall);
  EXPECT_FALSE(s->catheter_revised);
  // Written again (the current format) it reads back to the same fields.
  const auto again = decode_core_state(as_text(encode_core_state(*s)), &err);
  ASSERT_TRUE(again) << err;
  EXPECT_EQ(first_difference(*s, *again), "");
}

TEST(CoreState, Format2And3CarryTheRevisionTheRefillSessionTheFillTimeAndTheStop) {
  Delivered d;
  CoreState s = d.s;
  s.state = PumpState::refilling;
  s.refill_before = PumpState::suspended;
  s.refill_began = s.mono - minutes(3);
  s.catheter_revised = true;
  s.catheter_capacity = uL(117);
  s.last_fill_wall = s.wall - days(2);
  s.stopped_since = s.wall - hours(5);
  s.stop_began = s.mono - hours(5);
  s.long_stop_logged = true;
  s.plan->max_in_reservoir = days(40);
  s.alarms[static_cast<std::size_t>(AlarmCode::catheter_port_injection)].active = true;
  const auto bytes = encode_core_state(s);
  std::string err;
  const auto back = decode_core_state(as_text(bytes), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(encode_core_state(*back), bytes);
  EXPECT_EQ(back->state, PumpState::refilling);
  EXPECT_EQ(back->refill_before, PumpState::suspended);
  EXPECT_EQ(back->refill_began, s.refill_began);
  EXPECT_TRUE(back->catheter_revised);
  EXPECT_EQ(back->catheter_capacity, uL(117));
  EXPECT_EQ(back->last_fill_wall, s.last_fill_wall);
  ASSERT_TRUE(back->stopped_since);
  EXPECT_EQ(*back->stopped_since, *s.stopped_since);
  ASSERT_TRUE(back->stop_began);
  EXPECT_EQ(*back->stop_began, *s.stop_began);
  EXPECT_TRUE(back->long_stop_logged);
  EXPECT_EQ(back->plan->max_in_reservoir, days(40));
  EXPECT_TRUE(back->alarms[static_cast<std::size_t>(AlarmCode::catheter_port_injection)].active);
  // A state before the session kept nowhere else is refused: refill_before must be one of
  // the four states BeginRefill leaves from.
  std::string bad = as_text(bytes);
  constexpr std::size_t kTail3 = 1 + 8 + 1;  // stop_began (1 + 8), long_stop_logged
  const std::size_t at = bad.size() - kTail3 - (8 + 8 + 1 + 8) - 1;  // before, then began, fill, stopped_since (1 + 8)
  ASSERT_EQ(static_cast<std::uint8_t>(bad[at]), static_cast<std::uint8_t>(PumpState::suspended));
  bad[at] = static_cast<char>(PumpState::refilling);
  EXPECT_FALSE(decode_core_state(bad, &err));
  EXPECT_NE(err.find("state before the refill"), std::string::npos) << err;
}

TEST(CoreState, AFormat1JournalIsStillRead) {
  // A format-1 state: the same bytes up to refill_accuracy, 17 alarms, no issue-17 tail.
  Delivered d;
  d.s.stopped_since.reset();
  const std::string two = as_text(encode_core_state(d.s));
  constexpr std::size_t kAlarmBytes = 3 + 8 + 8;
  constexpr std::size_t kTail1 = 1 + 4 * 8 + 2 * 8 + 2 * 8 + 1 + 8;  // daily_hold .. refill_accuracy
  constexpr std::size_t kTail2 = 8 + 1 + 1 + 8 + 8 + 1;              // max_in_reservoir .. stopped_since
  constexpr std::size_t kTail3 = 1 + 1;                              // stop_began (none), long_stop_logged
  ASSERT_FALSE(d.s.stop_began);
  const std::size_t table = two.size() - kTail3 - kTail2 - kTail1 - kAlarmCount * kAlarmBytes - 4;
  std::string one = two.substr(0, table);
  one += std::string("\x11\0\0\0", 4);  // 17 alarms
  one += two.substr(table + 4, 17 * kAlarmBytes);
  one += two.substr(two.size() - kTail3 - kTail2 - kTail1, kTail1);
  one[0] = 1;
  std::string err;
  const auto back = decode_core_state(one, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->steps_issued, d.s.steps_issued);
  EXPECT_FALSE(back->catheter_revised);
  EXPECT_EQ(back->last_fill_wall, d.s.wall);  // a stability limit counts from then, never earlier
  EXPECT_FALSE(back->stopped_since);
  EXPECT_FALSE(back->stop_began);
  // Format 1 knew no `refilling`.
  std::string refilling = one;
  refilling[4 + 8 + 8] = static_cast<char>(PumpState::refilling);
  EXPECT_FALSE(decode_core_state(refilling, &err));
}

// A format-2 journal (before S14's 48 h mark) kept a stop by its wall time alone: read, the
// stop began its wall length before the capture on the monotonic clock, its mark not yet
// logged; a pump restarted from it with the stop already past 48 h logs it at once.
TEST(CoreState, AFormat2StopIsReadOnTheMonotonicClockAndAPast48HourStopIsLoggedAtTheRestart) {
  Delivered d;
  CoreState& s = d.s;
  s.state = PumpState::suspended;
  for (auto& b : s.boluses) b.active = false;
  s.stopped_since = s.wall - hours(60);
  s.stop_began.reset();
  s.long_stop_logged = false;
  std::string two = as_text(encode_core_state(s));
  two.resize(two.size() - 2);  // no format-3 tail (stop_began absent: 1, long_stop_logged: 1)
  two[0] = 2;
  std::string err;
  const auto back = decode_core_state(two, &err);
  ASSERT_TRUE(back) << err;
  ASSERT_TRUE(back->stop_began);
  EXPECT_EQ(*back->stop_began, s.mono - hours(60));
  EXPECT_FALSE(back->long_stop_logged);
  // A wall time after the capture (a clock set back during the stop) is no stop of the future.
  CoreState later = s;
  later.stopped_since = s.wall + hours(1);
  std::string two_later = as_text(encode_core_state(later));
  two_later.resize(two_later.size() - 2);
  two_later[0] = 2;
  const auto back_later = decode_core_state(two_later, &err);
  ASSERT_TRUE(back_later) << err;
  EXPECT_EQ(*back_later->stop_began, s.mono);

  Harness n;
  n.now = d.h.now;
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  (void)n.core->restore_state(*back, RestoreClock{n.now, Duration{0}}, 0);
  n.cycle(msec(1));
  std::vector<Event> risks;
  for (const auto& e : n.events) {
    if (e.type == EventType::risk_event) risks.push_back(e);
  }
  ASSERT_EQ(risks.size(), 1u);
  EXPECT_EQ(risks[0].index, kRiskLongStop);
  EXPECT_EQ(risks[0].mono, d.h.now.mono);  // the restart's first instant
  EXPECT_EQ(risks[0].duration, hours(60));
  n.run(days(1), minutes(10));
  EXPECT_EQ(n.count(EventType::risk_event), 1u);
}

TEST(CoreState, ARecordedPlanOfFormat2Or3ReadsAndNoOtherDoes) {
  // The flight recorder's plans (load, refill) keep the state format's number; the plan's
  // layout is the same in 2 and 3, so recordings made before format 3 still replay.
  const TherapyPlan p = bolus_plan();
  const auto bytes = encode_therapy_plan(p);
  ASSERT_EQ(bytes[0], kCoreStateFormat);
  for (const int f : {2, 3, 1, 4}) {
    std::string b = as_text(bytes);
    b[0] = static_cast<char>(f);
    std::string err;
    const auto back = decode_therapy_plan(b, &err);
    if (f == 2 || f == 3) {
      ASSERT_TRUE(back) << err;
      EXPECT_EQ(back->id, p.id);
      EXPECT_EQ(back->patient_bolus->dose, p.patient_bolus->dose);
    } else {
      EXPECT_FALSE(back) << f;
      EXPECT_NE(err.find("plan format"), std::string::npos) << err;
    }
  }
}

TEST(CoreState, EveryTruncationAndATrailingByteAreRefused) {
  Delivered d;
  const std::string b = as_text(encode_core_state(d.s));
  for (std::size_t n = 0; n < b.size(); n += (n < 400 ? 1 : 97)) {
    std::string err;
    ASSERT_FALSE(decode_core_state(b.substr(0, n), &err)) << n;
    ASSERT_FALSE(err.empty());
  }
  std::string err;
  EXPECT_FALSE(decode_core_state(b + "x", &err));
  EXPECT_NE(err.find("trailing"), std::string::npos);
  std::string future = b;
  future[0] = 9;
  EXPECT_FALSE(decode_core_state(future, &err));
  EXPECT_NE(err.find("newer"), std::string::npos) << err;
}

TEST(CoreRestore, LockoutCountLedgerAndBolusComeBack) {
  Delivered d;
  const Mass before = d.h.st().delivered_24h;
  // A new process: a new core on a clock that starts elsewhere (the sim clock restarts from
  // the real one), within the same boot, 30 s later.
  Harness n;
  n.now = Now{mono_us(5'000'000), d.h.now.wall + seconds(30)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, seconds(30)}, 0);
  EXPECT_EQ(rep.unconfirmed_steps, 0);
  EXPECT_EQ(n.core->state(), PumpState::infusing);
  EXPECT_GE(n.st().delivered_24h, before);
  EXPECT_EQ(n.st().patient_boluses_24h, 1u);
  EXPECT_TRUE(n.st().bolus_active);
  const Reply r = n.send({.kind = CommandKind::patient_bolus}, false);
  EXPECT_EQ(r.refusal, Refusal::lockout_active) << r.message.view();
  // No budget until the daemon reserves: the loop cannot step.
  n.run(minutes(1), seconds(1));
  EXPECT_EQ(n.st().steps_issued, d.s.steps_issued);
  ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{1000}}).ok());
  n.run(minutes(10), seconds(1));
  EXPECT_GT(n.st().steps_issued, d.s.steps_issued);
}

TEST(CoreRestore, UnconfirmedStepsCountAsPumpedNow) {
  Delivered d;
  Harness n;
  n.now = Now{d.h.now.mono + seconds(1), d.h.now.wall + seconds(1)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, seconds(1)}, 40);
  EXPECT_EQ(rep.unconfirmed_steps, 40);
  EXPECT_EQ(n.st().steps_issued, d.s.steps_issued + 40);
  EXPECT_NEAR(to_uL(n.st().reservoir), to_uL(d.s.reservoir) - 40 * 0.25, 1e-9);
  const double mass = 40 * 0.25 * 10.0;  // uL x mcg/uL, the catheter is full of the same drug
  EXPECT_NEAR(to_mcg(rep.unconfirmed_mass), mass, 1e-6);
  EXPECT_NEAR(to_mcg(n.st().delivered_24h), to_mcg(d.h.st().delivered_24h) + mass, 1e-3);
}

TEST(CoreRestore, AcrossARebootNoTimeIsAssumedAndAWallJumpIsLogged) {
  // S8: after a reboot the monotonic clock starts again near zero and the wall clock may
  // have moved anywhere.  With elapsed 0 everything stays in the 24 h window as if no
  // time had passed, and the wall-clock difference is logged as a jump (flex guard on).
  for (const Duration wall_moved : {days(1), -hours(2), hours(25)}) {
    Delivered d;
    Harness n;
    n.now = Now{mono_us(2'000'000), d.h.now.wall + wall_moved};
    n.core = std::make_unique<PumpCore>(n.board, n.now);
    const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, Duration{0}}, 0);
    (void)rep;
    n.core->drain_events([&](const Event& e) { n.events.push_back(e); });
    EXPECT_NEAR(to_mcg(n.st().delivered_24h), to_mcg(d.h.st().delivered_24h), 1e-6) << to_usec(wall_moved);
    EXPECT_EQ(n.count(EventType::wall_clock_jump), 1u) << to_usec(wall_moved);
    EXPECT_EQ(n.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::lockout_active);
    // The lockout (3 h) runs on the monotonic clock from the restart, whatever the wall did.
    ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
    n.run(hours(2) + minutes(50), seconds(10));
    EXPECT_EQ(n.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::lockout_active);
    n.run(minutes(20), seconds(10));
    EXPECT_TRUE(n.send({.kind = CommandKind::patient_bolus}, false).ok());
  }
}

TEST(CoreRestore, TheLedgerNeverForgetsEarlierThanItWould) {
  // Same boot, 23 h 45 min later: the bolus given 23 h 50 to 23 h 55 min ago is still counted.
  Harness h;
  TherapyPlan plan = bolus_plan();
  h.ready(plan);
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(200), .duration = minutes(5)}).ok());
  h.run(minutes(10), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  CoreState s;
  h.core->export_state(s, h.now);
  const Mass m = h.st().delivered_24h;
  Harness n;
  n.now = Now{mono_us(7'000'000), h.now.wall + hours(23) + minutes(45)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  (void)n.core->restore_state(s, RestoreClock{n.now, hours(23) + minutes(45)}, 0);
  EXPECT_GE(n.st().delivered_24h, m * 0.99);
  n.run(minutes(30), seconds(10));
  EXPECT_LT(to_mcg(n.st().delivered_24h), 1.0) << "and it does leave the window afterwards";
}

TEST(CoreRestore, InterruptedPrimingComesBackSuspended) {
  Harness h;
  TherapyPlan plan = bolus_plan();
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
  h.run(minutes(3), seconds(1));
  ASSERT_EQ(h.core->state(), PumpState::priming);
  CoreState s;
  h.core->export_state(s, h.now);
  Harness n;
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(s, RestoreClock{n.now, Duration{0}}, 0);
  EXPECT_TRUE(rep.priming_interrupted);
  EXPECT_EQ(n.core->state(), PumpState::suspended);
  ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
  n.run(minutes(5), seconds(1));
  EXPECT_EQ(n.st().steps_issued, s.steps_issued) << "priming does not resume by itself";
}

TEST(CoreRestore, ClockElapsedRule) {
  app::ClockRef a{"boot-a", 1'000'000, 5};
  app::ClockRef b{"boot-a", 61'000'000, 5};
  EXPECT_EQ(app::assumed_elapsed(a, b), seconds(60));
  EXPECT_EQ(app::assumed_elapsed(b, a), Duration{0});
  b.boot_id = "boot-b";
  EXPECT_EQ(app::assumed_elapsed(a, b), Duration{0});
  a.boot_id.clear();
  EXPECT_EQ(app::assumed_elapsed(a, b), Duration{0});
}

}  // namespace
}  // namespace thecal::test
