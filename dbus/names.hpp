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

}  // namespace thecal::dbus
