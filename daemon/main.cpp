// thecald: the pump controller daemon.
//
//   thecald --config FILE [--bus system|user|ADDRESS]
//   thecald --config FILE --check-config
//
// Start-up order: parse options -> load and check the config, drug library and stored
// prescription -> put the pump in its safe state -> lock memory -> start the dosing thread
// -> connect to the bus, export the object, take the name -> READY=1.  SIGTERM/SIGINT stop
// it cleanly with the motor disabled; SIGHUP re-reads the stored prescription.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <boost/program_options.hpp>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/pump_core.hpp"
#include "daemon/delivery_history.hpp"
#include "daemon/dosing_loop.hpp"
#include "daemon/event_log.hpp"
#include "daemon/journal_keeper.hpp"
#include "daemon/log.hpp"
#include "daemon/loop_clock.hpp"
#include "dbus/pump_object.hpp"
#include "io/atomic_file.hpp"
#include "io/gpiod_backend.hpp"
#include "io/sim_plant.hpp"

#ifndef THECAL_VERSION
#define THECAL_VERSION "0.1.0"
#endif

namespace po = boost::program_options;
using namespace thecal;

namespace {

/// Holds a PM QoS request on /dev/cpu_dma_latency for the life of the process (the kernel
/// drops it when the file is closed): CPUs stay out of idle states that take longer than
/// the limit to leave, so the dosing loop wakes on time, and each wake-up costs less CPU
/// (on the bench host 1.2 % instead of 2.3 % of a core at 1 kHz: docs/performance.md).
/// cyclictest does the same by default.  Not having it is not fatal: the loop runs, later.
class CpuDmaLatency {
 public:
  explicit CpuDmaLatency(std::optional<Duration> limit) {
    if (!limit) {
      log_info("loop.cpu_dma_latency is off: the kernel chooses the CPU idle states");
      return;
    }
    const auto us = static_cast<std::int32_t>(to_usec(*limit));
    // Tests of the failure path only; read once, before any other thread exists.
    const char* test_path = std::getenv("THECAL_CPU_DMA_LATENCY_PATH");  // NOLINT(concurrency-mt-unsafe)
    const char* path = test_path != nullptr ? test_path : "/dev/cpu_dma_latency";
    fd_ = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd_ < 0 || ::write(fd_, &us, sizeof us) != static_cast<ssize_t>(sizeof us)) {
      log_warning("Could not hold %s at %d us (%s): CPUs may sleep deeper between cycles, which delays the dosing "
                  "loop's wake-ups (the package's udev rule gives group thecal access; loop.cpu_dma_latency: off "
                  "silences this)", path, static_cast<int>(us), strerrordesc_np(errno));
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return;
    }
    log_info("Holding %s at %d us while thecald runs", path, static_cast<int>(us));
  }
  ~CpuDmaLatency() {
    if (fd_ >= 0) ::close(fd_);
  }
  CpuDmaLatency(const CpuDmaLatency&) = delete;
  CpuDmaLatency& operator=(const CpuDmaLatency&) = delete;

 private:
  int fd_ = -1;
};

/// The main thread (sd-event: D-Bus, journal writes, signals) leaves the dosing loop's CPU
/// to the loop when it may run elsewhere: the loop preempts it anyway (SCHED_FIFO), but each
/// preemption of a busy main thread on that CPU is a context switch and a colder cache for
/// the loop, which is what a D-Bus flood showed as a longer p99.9 (docs/performance.md).
void keep_off_loop_cpu(int loop_cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (loop_cpu < 0 || loop_cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof set, &set) != 0) return;
  if (!CPU_ISSET(loop_cpu, &set) || CPU_COUNT(&set) < 2) return;  // nowhere else to go
  CPU_CLR(loop_cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    log_warning("Could not keep the main thread off the dosing loop's CPU %d: %s", loop_cpu, strerrordesc_np(errno));
  } else {
    log_info("Main thread runs on the CPUs other than the dosing loop's CPU %d", loop_cpu);
  }
}

struct Options {
  std::string config = "/etc/thecal/thecald.yaml";
  std::string bus = "system";
  bool check_config = false;
};

// The backend, for the fatal-signal handler: leave the motor disabled on a crash (S9).
std::atomic<io::Backend*> g_backend{nullptr};

void on_fatal_signal(int sig) {
  if (io::Backend* b = g_backend.load()) b->safe_state();
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_crash_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) (void)sigaction(s, &sa, nullptr);
}

std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options o;
  po::options_description desc(
      "thecald: intrathecal drug pump controller\n\n"
      "Usage: thecald --config FILE [--bus system|user|ADDRESS]\n"
      "       thecald --config FILE --check-config\n\nOptions");
  desc.add_options()("help,h", "show this help and exit")("version", "show the version and exit")(
      "config,c", po::value<std::string>(&o.config)->default_value(o.config), "daemon and board file (thecald.yaml)")(
      "bus", po::value<std::string>(&o.bus)->default_value(o.bus),
      "system, user, or a D-Bus address such as unix:path=/run/thecal-test/bus")(
      "check-config", po::bool_switch(&o.check_config),
      "check the config, drug library and stored prescription, print a summary, and exit");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "thecald: " << e.what() << "\nTry 'thecald --help'.\n";
    exit_code = 2;
    return std::nullopt;
  }
  if (vm.count("help") != 0U) {
    std::cout << desc << "\n";
    exit_code = 0;
    return std::nullopt;
  }
  if (vm.count("version") != 0U) {
    std::cout << "thecald " << THECAL_VERSION << "\n";
    exit_code = 0;
    return std::nullopt;
  }
  return o;
}

struct Loaded {
  config::DaemonConfig cfg;
  config::DrugLibrary drugs;
};

std::optional<Loaded> load_config(const std::string& path) {
  auto dc = config::load_daemon_config(path);
  if (!dc.config) {
    std::cerr << config::format_all(dc.problems);
    return std::nullopt;
  }
  auto lib = config::load_drug_library(dc.config->drugs_path);
  if (!lib.library) {
    std::cerr << config::format_all(lib.problems);
    return std::nullopt;
  }
  return Loaded{*dc.config, *lib.library};
}

int check_config(const Loaded& l, const std::string& config_path) {
  std::cout << config_path << ": OK (backend " << (l.cfg.backend == config::Backend::sim ? "sim" : "gpiod") << ")\n";
  std::cout << l.cfg.drugs_path << ": OK (" << l.drugs.drugs.size() << " drugs)\n";
  std::string err;
  const auto text = io::read_file(l.cfg.prescription_path, &err);
  if (!text) {
    std::cout << l.cfg.prescription_path << ": none stored (the pump starts without a prescription)\n";
    return 0;
  }
  config::PrescriptionContext pc{&l.drugs, l.cfg.board, wall_us(daemon::real_wall_us())};
  const auto p = config::parse_prescription(*text, l.cfg.prescription_path, pc);
  if (!p.plan) {
    std::cerr << config::format_all(p.problems);
    return 1;
  }
  std::cout << l.cfg.prescription_path << ": OK\n" << config::summarize(*p.plan, l.cfg.board);
  return 0;
}

int open_bus(const std::string& which, sd_bus** bus) {
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

struct Runtime {
  daemon::DosingLoop* loop = nullptr;
  dbus::PumpObject* object = nullptr;
  std::uint64_t watchdog_usec = 0;
  std::uint64_t last_cycles = 0;
  sd_event_source* watchdog = nullptr;
  sd_event_source* status_timer = nullptr;
  std::string last_status;
};

int on_exit_signal(sd_event_source* s, const signalfd_siginfo* si, void* /*userdata*/) {
  log_notice("Received %s, stopping: motor disabled", strsignal(static_cast<int>(si->ssi_signo)));
  return sd_event_exit(sd_event_source_get_event(s), 0);
}

int on_reload_signal(sd_event_source* /*s*/, const signalfd_siginfo* /*si*/, void* userdata) {
  auto* rt = static_cast<Runtime*>(userdata);
  (void)sd_notify(0, "RELOADING=1");
  log_notice("SIGHUP: re-reading the stored prescription");
  rt->object->load_stored_prescription();
  (void)sd_notify(0, "READY=1");
  return 0;
}

// S9: the systemd watchdog is fed only while the dosing loop's cycle counter advances.
int on_watchdog(sd_event_source* s, std::uint64_t usec, void* userdata) {
  auto* rt = static_cast<Runtime*>(userdata);
  const std::uint64_t cycles = rt->loop->cycles();
  if (cycles != rt->last_cycles) {
    (void)sd_notify(0, "WATCHDOG=1");
    rt->last_cycles = cycles;
  } else {
    log_error("The dosing loop has not advanced for %llu ms: not feeding the watchdog",
              static_cast<unsigned long long>(rt->watchdog_usec / 2000));
  }
  (void)sd_event_source_set_time(s, usec + rt->watchdog_usec / 2);
  return 0;
}

// STATUS= for systemctl status: the state and the active alarms, sent only when they change
// (a notify socket nobody reads would otherwise fill up and block the main thread).
int on_status_timer(sd_event_source* s, std::uint64_t usec, void* userdata) {
  auto* rt = static_cast<Runtime*>(userdata);
  const Status& st = rt->object->status();
  std::string text = "STATUS=" + std::string(to_string(st.state));
  std::string alarms;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (st.alarms[i].active) alarms += (alarms.empty() ? "" : ", ") + std::string(to_string(static_cast<AlarmCode>(i)));
  }
  text += alarms.empty() ? "; no alarm" : "; alarms: " + alarms;
  if (text != rt->last_status) {
    (void)sd_notify(0, text.c_str());
    rt->last_status = text;
  }
  (void)sd_event_source_set_time(s, usec + 1'000'000);
  return 0;
}

/// Restores the core from the journal (or starts a fresh unit), raises state_lost when the
/// journal was missing, torn or corrupt, and makes the first reservation durable before
/// granting it.  False only if the journal cannot be written at all at start.
bool recover_state(daemon::JournalKeeper& journal, PumpCore& core, daemon::DosingLoop& loop, daemon::EventLog& events) {
  const daemon::Recovery rec = journal.recover();
  const Now now = loop.now();
  for (const auto& e : rec.events) events.restore(e);
  const auto who = std::string("pump");
  if (rec.state) {
    const Duration elapsed = daemon::assumed_elapsed(rec.clock, journal.clock_now());
    const RestoreReport rep = core.restore_state(*rec.state, RestoreClock{now, elapsed}, rec.unconfirmed);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "state restored from the journal (%zu records): %s, %lld reserved steps not confirmed counted as "
                  "delivered (%.3f mcg at the tip), %s; %s",
                  rec.records, std::string(to_string(core.state())).c_str(), static_cast<long long>(rep.unconfirmed_steps),
                  to_mcg(rep.unconfirmed_mass),
                  rec.clock.boot_id == journal.clock_now().boot_id ? "same boot" : "after a reboot: no time assumed to have passed",
                  core.state() == PumpState::infusing && rec.kind == daemon::Recovery::Kind::restored
                      ? "therapy resumes"
                      : "therapy does not resume by itself");
    log_notice("%s", buf);
    events.append({to_usec(now.wall), "journal_restored", who, buf}, 5);
    if (rep.priming_interrupted) {
      events.append({to_usec(now.wall), "priming_interrupted", who, "priming was interrupted by the restart: prime again"}, 4);
    }
  } else if (rec.kind == daemon::Recovery::Kind::fresh) {
    log_notice("No journal in the state directory: a new unit");
    events.append({to_usec(now.wall), "journal_created", who, "new unit: empty state directory"}, 5);
  }
  if (rec.kind == daemon::Recovery::Kind::lost) {
    log_error("Therapy state lost: %s", rec.explanation.c_str());
    events.append({to_usec(now.wall), "state_lost", who, rec.explanation}, 2);
    Command c;
    c.kind = CommandKind::raise_alarm;
    c.caller = {kSystemUid, false};
    c.alarm = AlarmCode::state_lost;
    (void)core.apply(c, now);
  }
  auto s = std::make_unique<CoreState>();
  core.export_state(*s, now);
  const std::uint64_t target = s->steps_issued + journal.reservation_steps(core.status().pump_rate);
  if (auto e = journal.rewrite(*s, target, events.since(0, std::numeric_limits<std::uint32_t>::max()))) {
    log_error("Cannot write the journal in the state directory: %s; the pump cannot deliver", e->c_str());
    Command c;
    c.kind = CommandKind::raise_alarm;
    c.caller = {kSystemUid, false};
    c.alarm = AlarmCode::storage_fault;
    (void)core.apply(c, now);
    return true;
  }
  Command g;
  g.kind = CommandKind::grant_budget;
  g.caller = {kSystemUid, false};
  g.steps = Steps{static_cast<std::int64_t>(journal.reserved() - s->steps_issued)};
  if (g.steps.count > 0) (void)core.apply(g, now);
  return true;
}

int run(const Options& opt) {
  auto loaded = load_config(opt.config);
  if (!loaded) return 1;
  if (opt.check_config) return check_config(*loaded, opt.config);
  const config::DaemonConfig& cfg = loaded->cfg;

  // The pump: the board's GPIO lines (enable requested inactive before any other line)
  // or the simulated plant.  A chip or line that cannot be taken is fatal, with the reason.
  std::unique_ptr<io::SimPlant> plant;
  std::unique_ptr<io::GpiodBackend> board;
  io::Backend* backend = nullptr;
  if (cfg.backend == config::Backend::gpiod) {
    io::GpiodOptions go;
    go.loop_period = cfg.board.loop_period;
    auto opened = io::GpiodBackend::open(cfg.gpio, go);
    if (const auto* e = std::get_if<std::string>(&opened)) {
      log_error("Cannot drive the pump board: %s", e->c_str());
      return 1;
    }
    board = std::move(std::get<std::unique_ptr<io::GpiodBackend>>(opened));
    backend = board.get();
    log_info("GPIO board on chip %s: enable inactive, at most %u step pulses per cycle", cfg.gpio.chip.c_str(),
             board->max_steps_per_cycle());
  } else {
    plant = std::make_unique<io::SimPlant>(cfg.board);
    plant->set_pump_drift_percent(cfg.sim_pump_drift_percent);
    if (cfg.sim_pump_drift_percent != 0.0) log_notice("Simulated pump drift: %+.2f %% of the commanded volume", cfg.sim_pump_drift_percent);
    if (auto e = plant->open_truth_file(cfg.state_dir + "/sim-plant-truth")) {
      log_warning("No plant truth file: %s, ignoring", e->c_str());
    }
    backend = plant.get();
  }
  backend->safe_state();
  g_backend.store(backend);
  install_crash_handlers();

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds map terabytes of shadow memory: locking it all would take the machine.
  log_notice("Sanitizer build: memory not locked (mlockall skipped)");
#else
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    log_warning("mlockall failed (%s): page faults may delay the dosing loop", std::strerror(errno));
  }
#endif

  // Signals are handled by sd-event; block them before any thread starts.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  daemon::LoopOptions lo;
  lo.period = cfg.board.loop_period;
  lo.priority = cfg.loop_priority;
  lo.cpu = cfg.loop_cpu;
  lo.simulated = cfg.backend == config::Backend::sim;
  lo.time_scale = cfg.sim_time_scale;
  const Now t0{mono_us(daemon::real_monotonic_us()), wall_us(daemon::real_wall_us())};
  PumpCore core(cfg.board, t0);
  daemon::DosingLoop loop(core, *backend, lo);
  daemon::EventLog events;
  daemon::DeliveryHistory history;

  // SPEC S7: recover the state before the loop may deliver, then reserve with an fsync.
  const char* boot_id_path = std::getenv("THECAL_BOOT_ID_PATH");  // tests of S8 only
  daemon::JournalKeeper journal(io::real_file_ops(), cfg.state_dir, cfg.board,
                                boot_id_path != nullptr ? boot_id_path : "/proc/sys/kernel/random/boot_id");
  if (!recover_state(journal, core, loop, events)) return 1;
  const bool restored_plan = core.plan() != nullptr;
  events.on_append = [&journal](const daemon::LoggedEvent& e) { journal.add_event(e); };

  dbus::PumpContext ctx;
  ctx.config = cfg;
  ctx.drugs = loaded->drugs;
  ctx.loop = &loop;
  ctx.sim = plant.get();
  ctx.events = &events;
  ctx.history = &history;
  ctx.journal = &journal;
  ctx.journal_writes = journal.fsyncs();
  dbus::PumpObject object(std::move(ctx));
  object.set_granted(static_cast<std::int64_t>(core.budget().count + static_cast<std::int64_t>(core.status().steps_issued)));

  sd_event* event = nullptr;
  int r = sd_event_default(&event);
  if (r < 0) {
    log_error("Failed to allocate the event loop: %s", std::strerror(-r));
    return 1;
  }
  Runtime rt;
  rt.loop = &loop;
  rt.object = &object;
  (void)sd_event_add_signal(event, nullptr, SIGTERM, on_exit_signal, nullptr);
  (void)sd_event_add_signal(event, nullptr, SIGINT, on_exit_signal, nullptr);
  (void)sd_event_add_signal(event, nullptr, SIGHUP, on_reload_signal, &rt);

  const CpuDmaLatency pm_qos(cfg.cpu_dma_latency);
  if (auto e = loop.start()) {
    log_error("%s", e->c_str());
    return 1;
  }
  if (cfg.loop_cpu) keep_off_loop_cpu(*cfg.loop_cpu);

  sd_bus* bus = nullptr;
  r = open_bus(opt.bus, &bus);
  if (r < 0) {
    log_error("Failed to connect to the %s bus: %s", opt.bus.c_str(), std::strerror(-r));
    loop.stop();
    return 1;
  }
  r = object.attach(bus, event);
  if (r >= 0) r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
  if (r >= 0) {
    events.append({to_usec(loop.now().wall), "daemon_started", "pump", "thecald " THECAL_VERSION " started"}, 5);
    object.raise_alarm(AlarmCode::restart);  // low, information (S5): the controller (re)started
    if (!restored_plan) object.load_stored_prescription();
    // Clients see the pump only once its (possibly restored) state, the restart alarm and
    // the stored prescription are in place: nothing of the start arrives after the name.
    if (!object.settle_startup(2000)) log_warning("The dosing thread did not settle within 2 s of start");
    r = sd_bus_request_name(bus, dbus::kBusName, 0);
  }
  if (r < 0) {
    log_error("Failed to export %s on the bus: %s", dbus::kBusName, std::strerror(-r));
    loop.stop();
    object.detach();
    sd_bus_flush_close_unref(bus);
    return 1;
  }

  if (sd_watchdog_enabled(0, &rt.watchdog_usec) > 0 && rt.watchdog_usec > 0) {
    std::uint64_t now = 0;
    (void)sd_event_now(event, CLOCK_MONOTONIC, &now);
    (void)sd_event_add_time(event, &rt.watchdog, CLOCK_MONOTONIC, now + rt.watchdog_usec / 2, 0, on_watchdog, &rt);
    (void)sd_event_source_set_enabled(rt.watchdog, SD_EVENT_ON);
  }
  {
    std::uint64_t now = 0;
    (void)sd_event_now(event, CLOCK_MONOTONIC, &now);
    (void)sd_event_add_time(event, &rt.status_timer, CLOCK_MONOTONIC, now + 1'000'000, 0, on_status_timer, &rt);
    (void)sd_event_source_set_enabled(rt.status_timer, SD_EVENT_ON);
  }

  (void)sd_notify(0, "READY=1\nSTATUS=running");
  log_notice("thecald %s ready on the %s bus (backend %s, loop %lld us)", THECAL_VERSION, opt.bus.c_str(),
             board ? "gpiod" : "sim", static_cast<long long>(to_usec(lo.period)));

  r = sd_event_loop(event);
  (void)sd_notify(0, "STOPPING=1");
  loop.stop();  // motor disabled, lines released
  object.poll();
  object.fail_pending("the pump daemon is shutting down");
  events.append({to_usec(loop.now().wall), "daemon_stopped", "pump", "stopped, motor disabled"}, 5);
  {
    // The loop has stopped: the budget it did not use is released (a clean stop over-counts
    // nothing), and the journal is compacted.
    auto last = std::make_unique<CoreState>();
    core.export_state(*last, Now{core.status().mono, core.status().wall});
    if (auto e = journal.close_clean(*last, events.since(0, std::numeric_limits<std::uint32_t>::max()))) {
      log_error("Failed to write the final journal snapshot: %s (the next start counts the last reservation as delivered)",
                e->c_str());
    }
  }
  rt.watchdog = sd_event_source_disable_unref(rt.watchdog);
  rt.status_timer = sd_event_source_disable_unref(rt.status_timer);
  object.detach();
  sd_bus_flush_close_unref(bus);
  g_backend.store(nullptr);
  sd_event_unref(event);
  return r < 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  const auto opt = parse_options(argc, argv, exit_code);
  if (!opt) return exit_code;
  try {
    return run(*opt);
  } catch (const std::exception& e) {
    log_error("Fatal: %s", e.what());
    return 1;
  }
}
