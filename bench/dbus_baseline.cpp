// The reference for the D-Bus benchmark: the least an sd-bus server can be.  One object,
// one read-only property (State, "s") and one method (GetEvents(t since, u max) ->
// a(tsss), answering one fixed event), on sd-event, like thecald's bus thread.  Whatever
// thecald costs beyond this is thecald's own.
//
//   bench-dbus-baseline ADDRESS
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {
int get_state(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void*, sd_bus_error*) {
  return sd_bus_message_append(reply, "s", "infusing");
}
int get_events(sd_bus_message* m, void*, sd_bus_error*) {
  std::uint64_t since = 0;
  std::uint32_t max = 0;
  int r = sd_bus_message_read(m, "tu", &since, &max);
  if (r < 0) return r;
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r >= 0) r = sd_bus_message_open_container(reply, 'a', "(tsss)");
  if (r >= 0 && max > 0) r = sd_bus_message_append(reply, "(tsss)", since + 1, "daemon_started", "pump", "baseline");
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r;
}
const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("State", "s", get_state, 0, 0),
    SD_BUS_METHOD_WITH_ARGS("GetEvents", SD_BUS_ARGS("t", since, "u", max), SD_BUS_RESULT("a(tsss)", events), get_events, 0),
    SD_BUS_VTABLE_END};
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bench-dbus-baseline ADDRESS\n");
    return 2;
  }
  sd_bus* bus = nullptr;
  sd_event* ev = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, argv[1]);
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r >= 0) r = sd_bus_add_object_vtable(bus, nullptr, "/org/thecal/BenchBaseline", "org.thecal.BenchBaseline1", kVtable, nullptr);
  if (r >= 0) r = sd_bus_request_name(bus, "org.thecal.BenchBaseline", 0);
  if (r >= 0) r = sd_event_default(&ev);
  if (r >= 0) r = sd_bus_attach_event(bus, ev, SD_EVENT_PRIORITY_NORMAL);
  if (r >= 0) r = sd_event_add_signal(ev, nullptr, SIGTERM | SD_EVENT_SIGNAL_PROCMASK, nullptr, nullptr);
  if (r >= 0) r = sd_event_loop(ev);
  if (r < 0) std::fprintf(stderr, "bench-dbus-baseline: %s\n", std::strerror(-r));
  sd_bus_flush_close_unref(bus);
  sd_event_unref(ev);
  return r < 0 ? 1 : 0;
}
