// Opening a bus connection the way thecald and thecalctl both take it on the command line:
// "system", "user", or a D-Bus address (the tests' private bus).  Header only.
#pragma once

#include <systemd/sd-bus.h>

#include <string>

namespace thecal::dbus {

/// Connects to `which`; negative errno on failure (*bus is then null).
inline int open_bus(const std::string& which, sd_bus** bus) {
  if (which == "system") return sd_bus_open_system(bus);
  if (which == "user") return sd_bus_open_user(bus);
  int r = sd_bus_new(bus);
  if (r < 0) return r;
  r = sd_bus_set_address(*bus, which.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(*bus, 1);
  if (r >= 0) r = sd_bus_start(*bus);
  if (r < 0) *bus = sd_bus_unref(*bus);
  return r;
}

}  // namespace thecal::dbus
