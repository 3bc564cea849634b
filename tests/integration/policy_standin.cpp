// A stand-in that owns org.thecal.Pump1 and answers every method call on /org/thecal/Pump1
// with an empty success, whoever calls: it checks no role.  With it on a bus that carries the
// project's real policy file, a call that is refused was refused by the bus policy alone, so
// the policy is tested without the daemon's own check (which would hide a broken policy).
//
//   thecal-policy-standin ADDRESS     prints "ready" once the name is owned; runs until killed
#include <systemd/sd-bus.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

int answer_everything(sd_bus_message* m, void* /*userdata*/, sd_bus_error* /*err*/) {
  std::uint8_t type = 0;
  if (sd_bus_message_get_type(m, &type) < 0 || type != SD_BUS_MESSAGE_METHOD_CALL) return 0;
  const char* path = sd_bus_message_get_path(m);
  if (path == nullptr || std::strcmp(path, "/org/thecal/Pump1") != 0) return 0;
  (void)sd_bus_reply_method_return(m, nullptr);
  return 1;  // handled
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    (void)std::fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
    return 2;
  }
  sd_bus* bus = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, argv[1]);
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r < 0) {
    (void)std::fprintf(stderr, "cannot connect to %s: %s\n", argv[1], strerrordesc_np(-r));
    return 1;
  }
  r = sd_bus_add_filter(bus, nullptr, answer_everything, nullptr);
  if (r >= 0) r = sd_bus_request_name(bus, "org.thecal.Pump1", 0);
  if (r < 0) {
    (void)std::fprintf(stderr, "cannot own org.thecal.Pump1: %s\n", strerrordesc_np(-r));
    return 1;
  }
  (void)std::printf("ready\n");
  (void)std::fflush(stdout);
  for (;;) {
    r = sd_bus_process(bus, nullptr);
    if (r < 0) return 1;
    if (r > 0) continue;
    r = sd_bus_wait(bus, UINT64_MAX);
    if (r < 0 && r != -EINTR) return 1;
  }
}
