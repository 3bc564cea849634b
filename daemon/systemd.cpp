#include "daemon/systemd.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <cstring>

#include "io/log.hpp"

namespace thecal::daemon {

namespace {
constexpr std::uint64_t kStatusPeriodUs = 1'000'000;
}  // namespace

Systemd::~Systemd() {
  watchdog_ = sd_event_source_disable_unref(watchdog_);
  status_timer_ = sd_event_source_disable_unref(status_timer_);
}

int Systemd::block_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  return -pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

int Systemd::add_signals() {
  int r = sd_event_add_signal(event_, nullptr, SIGTERM, on_exit_signal, this);
  if (r >= 0) r = sd_event_add_signal(event_, nullptr, SIGINT, on_exit_signal, this);
  if (r >= 0) r = sd_event_add_signal(event_, nullptr, SIGHUP, on_reload_signal, this);
  return r;
}

int Systemd::add_timer(sd_event_source** source, std::uint64_t after_usec, sd_event_time_handler_t handler) {
  std::uint64_t now = 0;
  int r = sd_event_now(event_, CLOCK_MONOTONIC, &now);
  if (r >= 0) r = sd_event_add_time(event_, source, CLOCK_MONOTONIC, now + after_usec, 0, handler, this);
  if (r >= 0) r = sd_event_source_set_enabled(*source, SD_EVENT_ON);
  return r;
}

int Systemd::start_timers() {
  if (sd_watchdog_enabled(0, &watchdog_usec_) > 0 && watchdog_usec_ > 0) {
    const int r = add_timer(&watchdog_, watchdog_usec_ / 2, on_watchdog);
    if (r < 0) return r;
  }
  return add_timer(&status_timer_, kStatusPeriodUs, on_status);
}

void Systemd::notify_ready(const std::string& status) {
  const std::string text = "READY=1\nSTATUS=" + status;
  (void)sd_notify(0, text.c_str());  // without a notify socket there is nobody to tell
}

void Systemd::notify_stopping() { (void)sd_notify(0, "STOPPING=1"); }

int Systemd::on_exit_signal(sd_event_source* s, const signalfd_siginfo* si, void* /*userdata*/) {
  log_notice("Received %s, stopping: motor disabled", sigdescr_np(static_cast<int>(si->ssi_signo)));
  return sd_event_exit(sd_event_source_get_event(s), 0);
}

int Systemd::on_reload_signal(sd_event_source* /*s*/, const signalfd_siginfo* /*si*/, void* userdata) {
  auto* self = static_cast<Systemd*>(userdata);
  (void)sd_notify(0, "RELOADING=1");
  log_notice("SIGHUP: re-reading the stored prescription");
  self->hooks_.reload();
  (void)sd_notify(0, "READY=1");
  return 0;
}

// S9: the systemd watchdog is fed only while the dosing loop's cycle counter advances.
int Systemd::on_watchdog(sd_event_source* s, std::uint64_t usec, void* userdata) {
  auto* self = static_cast<Systemd*>(userdata);
  const std::uint64_t cycles = self->hooks_.loop_cycles();
  if (cycles != self->last_cycles_) {
    (void)sd_notify(0, "WATCHDOG=1");
    self->last_cycles_ = cycles;
  } else {
    log_error("The dosing loop has not advanced for %llu ms: not feeding the watchdog",
              static_cast<unsigned long long>(self->watchdog_usec_ / 2000));
  }
  const int r = sd_event_source_set_time(s, usec + self->watchdog_usec_ / 2);
  if (r < 0) log_error("Failed to re-arm the watchdog timer: %s", strerrordesc_np(-r));
  return r < 0 ? r : 0;
}

// STATUS= for systemctl status, sent only when it changes (a notify socket nobody reads
// would otherwise fill up and block the main thread).
int Systemd::on_status(sd_event_source* s, std::uint64_t usec, void* userdata) {
  auto* self = static_cast<Systemd*>(userdata);
  const std::string text = "STATUS=" + self->hooks_.status();
  if (text != self->last_status_) {
    (void)sd_notify(0, text.c_str());
    self->last_status_ = text;
  }
  const int r = sd_event_source_set_time(s, usec + kStatusPeriodUs);
  if (r < 0) log_error("Failed to re-arm the status timer: %s", strerrordesc_np(-r));
  return r < 0 ? r : 0;
}

}  // namespace thecal::daemon
