// thecald: the pump controller daemon.  This file only assembles and starts the process;
// what the pump does lives in control/ (dosing), loop/ (the dosing thread), app/ (the
// service) and dbus/ (its D-Bus face); the systemd glue is daemon/systemd.cpp.
//
//   thecald --config FILE [--bus system|user|ADDRESS]
//   thecald --config FILE --check-config
//
// Start-up order: parse options -> load and check the config, drug library and stored
// prescription -> put the pump in its safe state -> lock memory -> recover the therapy from
// the journal and reserve (S7) -> start the dosing thread -> connect to the bus, export the
// object -> settle (the restart alarm and the stored prescription answered) -> take the
// name -> READY=1.  SIGTERM/SIGINT stop it cleanly with the motor disabled; SIGHUP re-reads
// the stored prescription.
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <boost/program_options.hpp>

#include "app/delivery_history.hpp"
#include "app/event_log.hpp"
#include "app/history_file.hpp"
#include "app/journal_keeper.hpp"
#include "app/pump_service.hpp"
#include "app/startup.hpp"
#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/pump_core.hpp"
#include "daemon/loop_ports.hpp"
#include "daemon/process.hpp"
#include "daemon/systemd.hpp"
#include "dbus/bus_connection.hpp"
#include "dbus/pump_object.hpp"
#include "io/atomic_file.hpp"
#include "io/clock.hpp"
#include "io/gpiod_backend.hpp"
#include "io/log.hpp"
#include "io/recording.hpp"
#include "io/sim_plant.hpp"
#include "loop/dosing_loop.hpp"

#ifndef THECAL_VERSION
#define THECAL_VERSION "0.1.0"
#endif

namespace po = boost::program_options;
using namespace thecal;

namespace {

constexpr std::uint64_t kSettleTimeoutUs = 2'000'000;

struct Options {
  std::string config = "/etc/thecal/thecald.yaml";
  std::string bus = "system";
  bool check_config = false;
};

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
  config::PrescriptionContext pc{&l.drugs, l.cfg.board, wall_us(io::real_wall_us())};
  const auto p = config::parse_prescription(*text, l.cfg.prescription_path, pc);
  if (!p.plan) {
    std::cerr << config::format_all(p.problems);
    return 1;
  }
  std::cout << l.cfg.prescription_path << ": OK\n" << config::summarize(*p.plan, l.cfg.board);
  return 0;
}

/// The pump: the board's GPIO lines (enable requested inactive before any other line) or
/// the simulated plant.
struct Pump {
  std::unique_ptr<io::SimPlant> plant;
  std::unique_ptr<io::GpiodBackend> board;
  io::Backend* backend = nullptr;
};

/// The board's lines as the GPIO backend takes them.
io::GpioBoard gpio_board(const config::GpioConfig& g) {
  io::GpioBoard b;
  b.chip = g.chip;
  for (const auto& [role, l] : g.lines) {
    io::GpioBias bias = io::GpioBias::as_is;
    switch (l.bias) {
      case config::Bias::as_is: bias = io::GpioBias::as_is; break;
      case config::Bias::disabled: bias = io::GpioBias::disabled; break;
      case config::Bias::pull_up: bias = io::GpioBias::pull_up; break;
      case config::Bias::pull_down: bias = io::GpioBias::pull_down; break;
    }
    b.lines.emplace(role, io::GpioLineSpec{l.offset, l.name, l.active_low, bias, l.debounce});
  }
  return b;
}

/// A chip or line that cannot be taken is fatal, with the reason (nullopt).
std::optional<Pump> open_pump(const config::DaemonConfig& cfg) {
  Pump p;
  if (cfg.backend == config::Backend::gpiod) {
    io::GpiodOptions go;
    go.loop_period = cfg.board.loop_period;
    auto opened = io::GpiodBackend::open(gpio_board(cfg.gpio), go);
    if (const auto* e = std::get_if<std::string>(&opened)) {
      log_error("Cannot drive the pump board: %s", e->c_str());
      return std::nullopt;
    }
    p.board = std::move(std::get<std::unique_ptr<io::GpiodBackend>>(opened));
    p.backend = p.board.get();
    log_info("GPIO board on chip %s: enable inactive, at most %u step pulses per cycle", cfg.gpio.chip.c_str(),
             p.board->max_steps_per_cycle());
  } else {
    p.plant = std::make_unique<io::SimPlant>(cfg.board);
    p.plant->set_pump_drift_percent(cfg.sim_pump_drift_percent);
    if (cfg.sim_pump_drift_percent != 0.0) {
      log_notice("Simulated pump drift: %+.2f %% of the commanded volume", cfg.sim_pump_drift_percent);
    }
    if (auto e = p.plant->open_truth_file(cfg.state_dir + "/sim-plant-truth")) {
      log_warning("No plant truth file: %s, ignoring", e->c_str());
    }
    p.backend = p.plant.get();
  }
  p.backend->safe_state();
  return p;
}

loop::LoopOptions loop_options(const config::DaemonConfig& cfg) {
  loop::LoopOptions lo;
  lo.period = cfg.board.loop_period;
  lo.priority = cfg.loop_priority;
  lo.cpu = cfg.loop_cpu;
  lo.simulated = cfg.backend == config::Backend::sim;
  lo.time_scale = cfg.sim_time_scale;
  lo.record = true;
  return lo;
}

std::string status_line(const Status& st) {
  std::string text(to_string(st.state));
  std::string alarms;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (st.alarms[i].active) alarms += (alarms.empty() ? "" : ", ") + std::string(to_string(static_cast<AlarmCode>(i)));
  }
  return text + (alarms.empty() ? "; no alarm" : "; alarms: " + alarms);
}

/// The bus side of a running thecald: the object is exported at once, the name is taken
/// only once the start has settled (or after kSettleTimeoutUs, with a warning), so the
/// first client sees the restored state, the restart alarm and the stored prescription.
struct Serving {
  const Options& opt;
  sd_event* event = nullptr;
  sd_bus* bus = nullptr;
  app::PumpService& service;
  dbus::PumpObject object;
  daemon::Systemd systemd;
  sd_event_source* settle = nullptr;
  sd_event_source* settle_timeout = nullptr;
  std::string backend_name;
  std::int64_t period_us = 0;

  Serving(const Options& o, sd_event* e, app::PumpService& s, daemon::SystemdHooks hooks)
      : opt(o), event(e), service(s), object(s), systemd(e, std::move(hooks)) {}
  Serving(const Serving&) = delete;
  Serving& operator=(const Serving&) = delete;
  ~Serving() {
    settle = sd_event_source_disable_unref(settle);
    settle_timeout = sd_event_source_disable_unref(settle_timeout);
    object.detach();
    if (bus != nullptr) sd_bus_flush_close_unref(bus);
  }

  int take_name() {
    settle = sd_event_source_disable_unref(settle);
    settle_timeout = sd_event_source_disable_unref(settle_timeout);
    int r = sd_bus_request_name(bus, dbus::kBusName, 0);
    if (r < 0) {
      log_error("Failed to export %s on the bus: %s", dbus::kBusName, strerrordesc_np(-r));
      return sd_event_exit(event, 1);
    }
    r = systemd.start_timers();
    if (r < 0) {
      log_error("Failed to start the watchdog and status timers: %s", strerrordesc_np(-r));
      return sd_event_exit(event, 1);
    }
    daemon::Systemd::notify_ready("running");
    log_notice("thecald %s ready on the %s bus (backend %s, loop %lld us)", THECAL_VERSION, opt.bus.c_str(),
               backend_name.c_str(), static_cast<long long>(period_us));
    return 0;
  }

  static int on_post(sd_event_source* /*s*/, void* userdata) {
    auto* self = static_cast<Serving*>(userdata);
    return self->service.settled() ? self->take_name() : 0;
  }
  static int on_settle_timeout(sd_event_source* /*s*/, std::uint64_t /*usec*/, void* userdata) {
    log_warning("The dosing thread did not settle within 2 s of start");
    return static_cast<Serving*>(userdata)->take_name();
  }

  /// Connects, exports the object and waits for the start to settle.  Negative errno.
  int start() {
    int r = dbus::open_bus(opt.bus, &bus);
    if (r < 0) {
      log_error("Failed to connect to the %s bus: %s", opt.bus.c_str(), strerrordesc_np(-r));
      return r;
    }
    r = object.attach(bus, event);
    if (r >= 0) r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
    if (r >= 0) r = systemd.add_signals();
    if (r >= 0) r = sd_event_add_post(event, &settle, on_post, this);
    if (r >= 0) r = sd_event_add_time_relative(event, &settle_timeout, CLOCK_MONOTONIC, kSettleTimeoutUs, 0, on_settle_timeout, this);
    if (r < 0) log_error("Failed to export %s on the bus: %s", dbus::kBusName, strerrordesc_np(-r));
    return r;
  }
};

/// Runs the main loop with the dosing thread started; returns the exit code.
int serve(const Options& opt, const config::DaemonConfig& cfg, loop::DosingLoop& loop, app::PumpService& service,
          app::EventLog& events, const Pump& pump, bool restored_plan) {
  sd_event* event = nullptr;
  int r = sd_event_default(&event);
  if (r < 0) {
    log_error("Failed to allocate the event loop: %s", strerrordesc_np(-r));
    return 1;
  }
  daemon::SystemdHooks hooks{[&loop] { return loop.cycles(); }, [&service] { return status_line(service.status()); },
                             [&service] { service.load_stored_prescription(); }};
  int code = 1;
  {
    Serving s(opt, event, service, std::move(hooks));
    s.backend_name = pump.board ? "gpiod" : "sim";
    s.period_us = to_usec(cfg.board.loop_period);
    if (s.start() >= 0) {
      events.append({to_usec(loop.now().wall), "daemon_started", "pump", "thecald " THECAL_VERSION " started"}, 5);
      service.raise_alarm(AlarmCode::restart);  // low, information (S5): the controller (re)started
      if (!restored_plan) service.load_stored_prescription();
      r = sd_event_loop(event);
      if (r < 0) log_error("The event loop failed: %s", strerrordesc_np(-r));
      code = r == 0 ? 0 : 1;
      daemon::Systemd::notify_stopping();
    }
    loop.stop();  // motor disabled, lines released
    service.poll();
    service.fail_pending("the pump daemon is shutting down");
  }
  sd_event_unref(event);
  return code;
}

int run(const Options& opt) {
  auto loaded = load_config(opt.config);
  if (!loaded) return 1;
  if (opt.check_config) return check_config(*loaded, opt.config);
  const config::DaemonConfig& cfg = loaded->cfg;

  auto pump = open_pump(cfg);
  if (!pump) return 1;
  daemon::guard_backend(pump->backend);
  daemon::lock_memory();
  // Signals are handled by sd-event; block them before any thread starts.
  if (const int r = daemon::Systemd::block_signals(); r < 0) {
    log_error("Failed to block the signals sd-event handles: %s", strerrordesc_np(-r));
    return 1;
  }

  const Now t0{mono_us(io::real_monotonic_us()), wall_us(io::real_wall_us())};
  PumpCore core(cfg.board, t0);
  loop::DosingLoop loop(core, *pump->backend, loop_options(cfg));
  app::EventLog events;
  app::DeliveryHistory history;
  // The delivery history survives restarts (issue 15 item 5).
  app::HistoryFile history_file(cfg.state_dir + "/delivery-history");
  if (auto e = history_file.attach(history, io::real_wall_us())) log_warning("Delivery history kept in memory only: %s", e->c_str());

  // SPEC S7: recover the state before the loop may deliver, then reserve with an fsync.
  const char* boot_id_path = std::getenv("THECAL_BOOT_ID_PATH");  // NOLINT(concurrency-mt-unsafe): tests of S8 only
  app::JournalKeeper journal(io::real_file_ops(), cfg.state_dir, cfg.board,
                             boot_id_path != nullptr ? boot_id_path : "/proc/sys/kernel/random/boot_id");
  const Now recovered_at = loop.now();
  const app::Recovered rec = app::recover_state(journal, core, recovered_at, events);
  events.on_append = [&journal](const app::LoggedEvent& e) { journal.add_event(e); };

  // The flight recorder (S15) starts from the state just recovered, before the loop runs.
  io::RecordingStore recorder(cfg.state_dir + "/recorder", cfg.recorder_keep);
  {
    auto snapshot = std::make_unique<CoreState>();
    core.export_state(*snapshot, recovered_at);
    if (auto e = recorder.begin(recovered_at.wall, io::encode_start(cfg.board, recovered_at, core.budget().count, *snapshot,
                                                                    core.events_pending()))) {
      log_warning("No flight recorder: %s", e->c_str());
    }
  }
  daemon::DosingLoopChannel channel(loop, &recorder, [&journal] { return journal.fsyncs(); }, cfg.board);
  std::unique_ptr<daemon::SimulatorPort> sim;
  if (pump->plant) sim = std::make_unique<daemon::SimulatorPort>(*pump->plant, loop);
  app::PumpService service(app::PrescriptionStore(loaded->drugs, cfg.board, cfg.prescription_path),
                           app::ServiceParts{&channel, sim.get(), &events, &history, &journal, io::real_monotonic_us, &recorder});
  service.set_granted(rec.granted_steps);

  const daemon::CpuDmaLatency pm_qos(cfg.cpu_dma_latency);
  if (auto e = loop.start()) {
    log_error("%s", e->c_str());
    return 1;
  }
  if (cfg.loop_cpu) daemon::keep_off_loop_cpu(*cfg.loop_cpu);

  const int code = serve(opt, cfg, loop, service, events, *pump, rec.restored_plan);
  app::close_state(journal, core, events);  // the loop has stopped: a clean stop over-counts nothing
  daemon::guard_backend(nullptr);
  return code;
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
