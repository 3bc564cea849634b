// The names of thecal on D-Bus (SPEC section 4), in one place: thecald serves them,
// thecalctl calls them, and both read them from here.  Header only, no dependency.
#pragma once

#include <string_view>

namespace thecal::dbus {

inline constexpr const char* kBusName = "org.thecal.Pump1";
inline constexpr const char* kObjectPath = "/org/thecal/Pump1";
inline constexpr const char* kPumpInterface = "org.thecal.Pump1";
inline constexpr const char* kDiagnosticsInterface = "org.thecal.Diagnostics1";
inline constexpr const char* kSimulatorInterface = "org.thecal.Simulator1";

/// The prefix of every thecal error name.
inline constexpr std::string_view kErrorPrefix = "org.thecal.Pump1.Error.";
inline constexpr const char* kErrInvalidPrescription = "org.thecal.Pump1.Error.InvalidPrescription";
inline constexpr const char* kErrInvalidState = "org.thecal.Pump1.Error.InvalidState";
inline constexpr const char* kErrLockoutActive = "org.thecal.Pump1.Error.LockoutActive";
inline constexpr const char* kErrBolusLimitReached = "org.thecal.Pump1.Error.BolusLimitReached";
inline constexpr const char* kErrDailyLimitReached = "org.thecal.Pump1.Error.DailyLimitReached";
inline constexpr const char* kErrReservoirLow = "org.thecal.Pump1.Error.ReservoirLow";
inline constexpr const char* kErrOutOfRange = "org.thecal.Pump1.Error.OutOfRange";
// ImportTherapy: a document that is truncated, corrupt, of a future format or whose parts
// do not agree.  None of SPEC's names fits (OutOfRange is for numbers, InvalidPrescription
// for prescription problems, InvalidState for the unit's state): see docs/maintenance.md.
inline constexpr const char* kErrInvalidDocument = "org.thecal.Pump1.Error.InvalidDocument";
inline constexpr const char* kErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";

/// The properties of org.thecal.Pump1 (SPEC section 4), named once: thecald's property
/// table (dbus/pump_object.cpp) serves them under these names, thecalctl reads them by them.
namespace pump_property {
inline constexpr const char* kState = "State";
inline constexpr const char* kPhase = "Phase";
inline constexpr const char* kPrescriptionId = "PrescriptionId";
inline constexpr const char* kDrug = "Drug";
inline constexpr const char* kConcentrationMcgPerMl = "ConcentrationMcgPerMl";
inline constexpr const char* kBasalRateMcgPerDay = "BasalRateMcgPerDay";
inline constexpr const char* kReservoirUl = "ReservoirUl";
inline constexpr const char* kReservoirCapacityUl = "ReservoirCapacityUl";
inline constexpr const char* kCatheterPrimed = "CatheterPrimed";
inline constexpr const char* kDelivered24hMcg = "Delivered24hMcg";
inline constexpr const char* kDailyLimitMcg = "DailyLimitMcg";
inline constexpr const char* kPatientBolusesToday = "PatientBolusesToday";
inline constexpr const char* kNextPatientBolusUsec = "NextPatientBolusUsec";
inline constexpr const char* kBolusActive = "BolusActive";
inline constexpr const char* kActiveAlarms = "ActiveAlarms";
inline constexpr const char* kBatteryPercent = "BatteryPercent";
inline constexpr const char* kRefillDueUsec = "RefillDueUsec";
inline constexpr const char* kTrialEndsUsec = "TrialEndsUsec";
inline constexpr const char* kRefillAccuracyPercent = "RefillAccuracyPercent";
inline constexpr const char* kCatheterVolumeUl = "CatheterVolumeUl";
inline constexpr const char* kSolutionExpiresUsec = "SolutionExpiresUsec";
inline constexpr const char* kDrugs = "Drugs";
}  // namespace pump_property

}  // namespace thecal::dbus
