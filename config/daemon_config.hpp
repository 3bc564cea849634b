// thecald.yaml: the daemon and its board (SPEC 3.3).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "config/problem.hpp"
#include "control/board_params.hpp"
#include "control/units.hpp"

namespace thecal::config {

enum class Backend : std::uint8_t { sim, gpiod };

enum class Bias : std::uint8_t { as_is, disabled, pull_up, pull_down };

struct GpioLine {
  std::optional<unsigned> offset;  // either an offset ...
  std::string name;                // ... or a line name
  bool active_low = false;
  Bias bias = Bias::as_is;
  Duration debounce{0};
};

struct GpioConfig {
  std::string chip = "gpiochip0";  // name, /dev path or label
  // step, dir, enable, heartbeat, buzzer, fault, encoder, occlusion, disconnect,
  // bolus_button, low_battery
  std::map<std::string, GpioLine> lines;
};

struct DaemonConfig {
  Backend backend = Backend::sim;
  std::string prescription_path = "/var/lib/thecal/prescription.yaml";
  std::string drugs_path = "/usr/share/thecal/drugs.yaml";
  std::string state_dir = "/var/lib/thecal";
  int loop_priority = 80;               // SCHED_FIFO
  std::optional<int> loop_cpu;          // affinity
  // loop.cpu_dma_latency: the PM QoS limit on CPU idle-exit latency thecald holds while it
  // runs (/dev/cpu_dma_latency, as cyclictest does); nullopt: "off", the kernel decides.
  std::optional<Duration> cpu_dma_latency = Duration{0};
  double sim_time_scale = 1.0;          // backend sim only
  double sim_pump_drift_percent = 0.0;  // backend sim only: the plant pumps this % more
  Duration recorder_keep = days(90);    // recorder.keep: the flight recording kept (S15)
  BoardParams board;                    // motor:, loop.period, battery:
  GpioConfig gpio;                      // backend gpiod only
};

struct LoadedDaemonConfig {
  std::optional<DaemonConfig> config;  // set only when there is no problem
  Problems problems;
};

/// Parses thecald.yaml text.  `file` names it in problems.
LoadedDaemonConfig parse_daemon_config(std::string_view text, const std::string& file);

/// Reads and parses a config file; refuses (as a Problem) a file that a user other than its
/// owner or root can write, or whose owner is neither root nor the running user (S10).
LoadedDaemonConfig load_daemon_config(const std::string& path);

}  // namespace thecal::config
