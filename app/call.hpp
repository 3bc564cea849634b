// What every call into the pump service carries and returns: the caller's identity, a
// named error, and the result of a call that completes later (when the dosing thread has
// answered and the act is durable).  No D-Bus here: dbus/ maps ErrorCode to the error
// names of SPEC section 4 (dbus/names.hpp), a test reads the values directly.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "control/command.hpp"
#include "control/event.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal::app {

/// Who calls, as the bus reports it (uid) and as the roles of SPEC 6 place that uid.  The
/// adapter has checked the role the method needs; the service uses the identity for what
/// depends on it beyond that (who may acknowledge a high alarm) and records the uid (S11).
struct Identity {
  std::uint32_t uid = kSystemUid;
  bool clinician = false;  // root or a member of thecal-clinician
  bool patient = false;    // a member of thecal-patient
};

/// The pump itself (the daemon's own commands: restart alarm, stored prescription).
inline constexpr Identity kPump{kSystemUid, false, false};

/// Every way a call can be refused; each is one named D-Bus error (SPEC 4).
enum class ErrorCode : std::uint8_t {
  invalid_prescription,
  invalid_state,
  lockout_active,
  bolus_limit_reached,
  daily_limit_reached,
  reservoir_low,
  out_of_range,
  access_denied,
  invalid_document,  // ImportTherapy: a document that is truncated, corrupt or of a newer format
};

constexpr std::string_view to_string(ErrorCode c) {
  switch (c) {
    case ErrorCode::invalid_prescription: return "invalid_prescription";
    case ErrorCode::invalid_state: return "invalid_state";
    case ErrorCode::lockout_active: return "lockout_active";
    case ErrorCode::bolus_limit_reached: return "bolus_limit_reached";
    case ErrorCode::daily_limit_reached: return "daily_limit_reached";
    case ErrorCode::reservoir_low: return "reservoir_low";
    case ErrorCode::out_of_range: return "out_of_range";
    case ErrorCode::access_denied: return "access_denied";
    case ErrorCode::invalid_document: return "invalid_document";
  }
  return "invalid_state";
}

/// The core's refusal as an error of the service.
constexpr ErrorCode error_code(Refusal r) {
  switch (r) {
    case Refusal::none:
    case Refusal::invalid_state: return ErrorCode::invalid_state;
    case Refusal::lockout_active: return ErrorCode::lockout_active;
    case Refusal::bolus_limit_reached: return ErrorCode::bolus_limit_reached;
    case Refusal::daily_limit_reached: return ErrorCode::daily_limit_reached;
    case Refusal::reservoir_low: return ErrorCode::reservoir_low;
    case Refusal::out_of_range: return ErrorCode::out_of_range;
    case Refusal::invalid_prescription: return ErrorCode::invalid_prescription;
    case Refusal::access_denied: return ErrorCode::access_denied;
  }
  return ErrorCode::invalid_state;
}

struct Error {
  ErrorCode code = ErrorCode::invalid_state;
  std::string message;  // for a person: what was wrong and what to do
};

/// The answer to a call that goes through the dosing thread.
struct CallResult {
  std::optional<Error> error;
  std::string text;  // LoadPrescription: the prescription id; ExportTherapy: the document
  Mass dose;         // RequestBolus: the dose granted
  WallTime ends{};   // RequestBolus, ClinicianBolus: when the bolus ends
  [[nodiscard]] bool ok() const { return !error; }
};

/// Called exactly once per call: at once when the call is refused before it reaches the
/// dosing thread, else when the dosing thread has answered and the act is durable.
using Completion = std::function<void(const CallResult&)>;

/// The answer to a call the service answers at once: a value or an error.
template <class T>
struct Outcome {
  std::optional<Error> error;
  T value{};
  static Outcome fail(ErrorCode c, std::string m) { return {Error{c, std::move(m)}, T{}}; }
  [[nodiscard]] bool ok() const { return !error; }
};

struct Nothing {};

}  // namespace thecal::app
