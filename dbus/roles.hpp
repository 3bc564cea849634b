// Roles (SPEC section 6), checked by the daemon itself from the caller's uid as the bus
// reports it, and that uid's groups: defence in depth behind the bus policy.
#pragma once

#include <systemd/sd-bus.h>

#include <cstdint>
#include <string>

namespace thecal::dbus {

inline constexpr const char* kClinicianGroup = "thecal-clinician";
inline constexpr const char* kPatientGroup = "thecal-patient";

struct CallerInfo {
  std::uint32_t uid = 0xFFFFFFFFu;
  bool clinician = false;  // root or member of thecal-clinician
  bool patient = false;    // member of thecal-patient (clinicians may do all a patient may)
};

/// Whether `uid` is a member (primary or supplementary) of group `group`.
bool uid_in_group(std::uint32_t uid, const char* group);

/// Fills `out` from the sender of `m`; negative errno if the bus cannot tell who it is.
int caller_info(sd_bus_message* m, CallerInfo& out);

}  // namespace thecal::dbus
