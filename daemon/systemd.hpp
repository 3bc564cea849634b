// thecald's systemd glue (SPEC 8, S9): signals as sd-event sources (SIGTERM/SIGINT stop,
// SIGHUP reloads the stored prescription), READY=1 / RELOADING=1 / STOPPING=1, the
// watchdog fed only while the dosing loop's cycle counter advances, and a STATUS= line
// sent when it changes.
#pragma once

#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <string>

namespace thecal::daemon {

struct SystemdHooks {
  std::function<std::uint64_t()> loop_cycles;  // the dosing loop's cycle counter (S9)
  std::function<std::string()> status;         // the STATUS= text
  std::function<void()> reload;                // SIGHUP
};

class Systemd {
 public:
  Systemd(sd_event* event, SystemdHooks hooks) : event_(event), hooks_(std::move(hooks)) {}
  Systemd(const Systemd&) = delete;
  Systemd& operator=(const Systemd&) = delete;
  ~Systemd();

  /// Blocks SIGTERM, SIGINT and SIGHUP in this thread (before any other thread starts, so
  /// that every thread inherits the mask and sd-event receives them).  Negative errno.
  static int block_signals();
  /// Adds the signal sources.  Negative errno.
  int add_signals();
  /// Starts the watchdog (when systemd asks for one) and the status timer.  Negative errno.
  int start_timers();
  static void notify_ready(const std::string& status);
  static void notify_stopping();

 private:
  static int on_exit_signal(sd_event_source* s, const signalfd_siginfo* si, void* userdata);
  static int on_reload_signal(sd_event_source* s, const signalfd_siginfo* si, void* userdata);
  static int on_watchdog(sd_event_source* s, std::uint64_t usec, void* userdata);
  static int on_status(sd_event_source* s, std::uint64_t usec, void* userdata);
  int add_timer(sd_event_source** source, std::uint64_t after_usec, sd_event_time_handler_t handler);

  sd_event* event_;
  SystemdHooks hooks_;
  sd_event_source* watchdog_ = nullptr;
  sd_event_source* status_timer_ = nullptr;
  std::uint64_t watchdog_usec_ = 0;
  std::uint64_t last_cycles_ = 0;
  std::string last_status_;
};

}  // namespace thecal::daemon
