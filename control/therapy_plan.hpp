// The compiled prescription the dosing core runs: every figure in canonical strong types,
// every container of fixed capacity, so that it can be copied into the dosing thread
// without allocation.  config/ builds it from prescription.yaml after validation
// (config/prescription.hpp); the core trusts nothing in it that it can check cheaply.
#pragma once

#include <cstdint>
#include <optional>

#include <boost/container/static_vector.hpp>

#include "control/fixed_string.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

enum class Phase : std::uint8_t { trial, maintenance };
enum class BasalMode : std::uint8_t { continuous, flex };

inline constexpr std::size_t kMaxFlexSteps = 48;
inline constexpr std::size_t kMaxPeriodicDoses = 24;
inline constexpr std::size_t kMaxTzTransitions = 512;
/// Drugs in the solution besides the primary `drug` (SPEC 3.1 `admixture`).
inline constexpr std::size_t kMaxAdmixture = 3;

struct FlexStep {
  Duration start;  // offset from local midnight, [0, 24 h)
  MassRate rate;
};

struct PeriodicDose {
  Duration at;  // local time of day
  Mass dose;
  Duration duration;
};

struct PatientBolusRule {
  Mass dose;
  Duration duration;
  Duration lockout;
  std::uint32_t max_per_day = 0;
};

/// UTC offset in force from `from` (wall time) on; the table is sorted by `from`, and its
/// first entry's offset holds for all earlier times.  Precomputed from the tz database at
/// load, so the core needs no tz lookups (and no allocation) to find local time.
struct UtcOffsetChange {
  WallTime from;
  Duration offset;
};

/// An admixture drug: in the same solution as the primary drug; every rate and dose of the
/// plan is a mass of the primary, and this drug reaches the tip in the ratio of the
/// concentrations (SPEC 2, 3.1).
struct AdmixtureDrug {
  FixedString<32> name;
  Concentration concentration;
  Mass max_daily_dose;  // its own rolling-24 h limit (S1)
};

struct TherapyPlan {
  FixedString<64> id;  // hex SHA-256 of the prescription text
  FixedString<64> patient;
  Phase phase = Phase::maintenance;
  std::optional<WallTime> trial_ends;
  FixedString<32> drug;
  Concentration concentration;
  Volume reservoir_capacity;
  Volume low_alarm;
  Volume catheter_volume;
  FixedString<64> timezone;
  boost::container::static_vector<UtcOffsetChange, kMaxTzTransitions> utc_offsets;
  BasalMode basal_mode = BasalMode::continuous;
  MassRate continuous_rate;
  boost::container::static_vector<FlexStep, kMaxFlexSteps> flex_steps;
  boost::container::static_vector<PeriodicDose, kMaxPeriodicDoses> periodic;
  std::optional<PatientBolusRule> patient_bolus;
  Mass max_daily_dose;
  /// The earliest `max_days_in_reservoir` of the solution's drugs (drug library, SPEC 3.2):
  /// a refill is due that long after the fill, whatever volume is left (S13).  0: no limit.
  Duration max_in_reservoir{0};
  boost::container::static_vector<AdmixtureDrug, kMaxAdmixture> admixture;  // empty: one drug
};

}  // namespace thecal
