// Strong quantity types for the dosing core (SPEC section 3: one canonical unit set).
//
// Every physical quantity crossing a module boundary is one of the types below, never a bare
// double.  The dimension (mass, volume, time exponents) is part of the type, so
//   Mass m = mg(1.5);            // fine: stored as 1500 mcg
//   Volume v = m;                // does not compile
//   Mass x = mcg_per_day(10);    // does not compile
//   Volume v = m / conc;         // Concentration = Mass / Volume: fine
// and a raw number enters or leaves only through a function that names its unit
// (`mg(1.5)`, `to_mcg(m)`).  Canonical units: mass mcg, volume uL, time us.
//
// Time itself is kept in integer microseconds (std::chrono), see control/time.hpp: rates
// multiply with `Duration` to give amounts.
#pragma once

#include <chrono>
#include <cmath>
#include <compare>
#include <cstdint>

namespace thecal {

using Duration = std::chrono::duration<std::int64_t, std::micro>;

/// A physical quantity of dimension mass^M * volume^V * time^T, stored in canonical units
/// (mcg, uL, us).  Only the named unit functions below create or read one.
template <int M, int V, int T>
class Quantity {
 public:
  constexpr Quantity() = default;

  /// Escape hatch for the unit helpers below; `value` is in canonical units.
  static constexpr Quantity canonical(double value) { return Quantity{value}; }
  [[nodiscard]] constexpr double canonical_value() const { return v_; }

  constexpr Quantity operator+(Quantity o) const { return Quantity{v_ + o.v_}; }
  constexpr Quantity operator-(Quantity o) const { return Quantity{v_ - o.v_}; }
  constexpr Quantity operator-() const { return Quantity{-v_}; }
  constexpr Quantity& operator+=(Quantity o) { v_ += o.v_; return *this; }
  constexpr Quantity& operator-=(Quantity o) { v_ -= o.v_; return *this; }
  constexpr Quantity operator*(double k) const { return Quantity{v_ * k}; }
  constexpr Quantity operator/(double k) const { return Quantity{v_ / k}; }
  friend constexpr Quantity operator*(double k, Quantity q) { return Quantity{k * q.v_}; }
  /// Ratio of two quantities of the same dimension: a plain number.
  constexpr double operator/(Quantity o) const { return v_ / o.v_; }
  constexpr auto operator<=>(const Quantity&) const = default;

  [[nodiscard]] bool is_finite() const { return std::isfinite(v_); }

 private:
  constexpr explicit Quantity(double v) : v_(v) {}
  double v_ = 0.0;
};

template <int M1, int V1, int T1, int M2, int V2, int T2>
constexpr Quantity<M1 + M2, V1 + V2, T1 + T2> operator*(Quantity<M1, V1, T1> a, Quantity<M2, V2, T2> b) {
  return Quantity<M1 + M2, V1 + V2, T1 + T2>::canonical(a.canonical_value() * b.canonical_value());
}
template <int M1, int V1, int T1, int M2, int V2, int T2>
  requires(M1 != M2 || V1 != V2 || T1 != T2)
constexpr Quantity<M1 - M2, V1 - V2, T1 - T2> operator/(Quantity<M1, V1, T1> a, Quantity<M2, V2, T2> b) {
  return Quantity<M1 - M2, V1 - V2, T1 - T2>::canonical(a.canonical_value() / b.canonical_value());
}

using Mass = Quantity<1, 0, 0>;           // canonical mcg
using Volume = Quantity<0, 1, 0>;         // canonical uL
using Concentration = Quantity<1, -1, 0>; // canonical mcg/uL  (= mg/mL)
using MassRate = Quantity<1, 0, -1>;      // canonical mcg/us
using VolumeRate = Quantity<0, 1, -1>;    // canonical uL/us

/// Rate x time = amount.  Time is integer microseconds, so this is the only way across.
template <int M, int V>
constexpr Quantity<M, V, 0> operator*(Quantity<M, V, -1> rate, Duration d) {
  return Quantity<M, V, 0>::canonical(rate.canonical_value() * static_cast<double>(d.count()));
}
template <int M, int V>
constexpr Quantity<M, V, 0> operator*(Duration d, Quantity<M, V, -1> rate) { return rate * d; }

inline constexpr double kUsPerSecond = 1e6;
inline constexpr double kUsPerHour = 3600e6;
inline constexpr double kUsPerDay = 86400e6;

// ---- named units: the only doors in and out --------------------------------------------
constexpr Mass mcg(double v) { return Mass::canonical(v); }
constexpr Mass mg(double v) { return Mass::canonical(v * 1000.0); }
constexpr double to_mcg(Mass m) { return m.canonical_value(); }
constexpr double to_mg(Mass m) { return m.canonical_value() / 1000.0; }

constexpr Volume uL(double v) { return Volume::canonical(v); }
constexpr Volume mL(double v) { return Volume::canonical(v * 1000.0); }
constexpr double to_uL(Volume v) { return v.canonical_value(); }
constexpr double to_mL(Volume v) { return v.canonical_value() / 1000.0; }

// mcg/uL is mg/mL; 1 mcg/mL = 1e-3 mcg/uL.
constexpr Concentration mg_per_mL(double v) { return Concentration::canonical(v); }
constexpr Concentration mcg_per_mL(double v) { return Concentration::canonical(v / 1000.0); }
constexpr double to_mcg_per_mL(Concentration c) { return c.canonical_value() * 1000.0; }
constexpr double to_mg_per_mL(Concentration c) { return c.canonical_value(); }

constexpr MassRate mcg_per_day(double v) { return MassRate::canonical(v / kUsPerDay); }
constexpr MassRate mg_per_day(double v) { return MassRate::canonical(v * 1000.0 / kUsPerDay); }
constexpr MassRate mcg_per_h(double v) { return MassRate::canonical(v / kUsPerHour); }
constexpr double to_mcg_per_day(MassRate r) { return r.canonical_value() * kUsPerDay; }
constexpr double to_mcg_per_h(MassRate r) { return r.canonical_value() * kUsPerHour; }

constexpr VolumeRate uL_per_h(double v) { return VolumeRate::canonical(v / kUsPerHour); }
constexpr VolumeRate mL_per_h(double v) { return VolumeRate::canonical(v * 1000.0 / kUsPerHour); }
constexpr VolumeRate uL_per_day(double v) { return VolumeRate::canonical(v / kUsPerDay); }
constexpr double to_uL_per_h(VolumeRate r) { return r.canonical_value() * kUsPerHour; }
constexpr double to_uL_per_day(VolumeRate r) { return r.canonical_value() * kUsPerDay; }

// Durations (integer microseconds).  From a double, only through a checked conversion.
constexpr Duration usec(std::int64_t v) { return Duration{v}; }
constexpr Duration msec(std::int64_t v) { return Duration{v * 1000}; }
constexpr Duration seconds(std::int64_t v) { return Duration{v * 1'000'000}; }
constexpr Duration minutes(std::int64_t v) { return Duration{v * 60'000'000}; }
constexpr Duration hours(std::int64_t v) { return Duration{v * 3'600'000'000LL}; }
constexpr Duration days(std::int64_t v) { return Duration{v * 86'400'000'000LL}; }
constexpr std::int64_t to_usec(Duration d) { return d.count(); }
constexpr double to_seconds(Duration d) { return static_cast<double>(d.count()) / 1e6; }

/// Motor steps: an integer count, never a volume.
struct Steps {
  std::int64_t count = 0;
  constexpr auto operator<=>(const Steps&) const = default;
  constexpr Steps operator+(Steps o) const { return {count + o.count}; }
  constexpr Steps operator-(Steps o) const { return {count - o.count}; }
  constexpr Steps& operator+=(Steps o) { count += o.count; return *this; }
};

}  // namespace thecal
