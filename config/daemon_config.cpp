#include "config/daemon_config.hpp"

#include <array>

#include "config/config_file.hpp"
#include "config/motor_range.hpp"
#include "config/yaml_reader.hpp"

namespace thecal::config {
namespace {

constexpr Duration kMinLoopPeriod = usec(100);
constexpr Duration kMaxLoopPeriod = msec(10);
constexpr Duration kMaxCpuDmaLatency = msec(10);
constexpr Duration kMaxDebounce = seconds(1);
constexpr std::uint64_t kMaxLineOffset = 65535;
constexpr std::size_t kMaxLineName = 31;  // GPIO_MAX_NAME_SIZE - 1

struct LineSpec {
  std::string_view name;
  bool input;
};
constexpr std::array kLines{
    LineSpec{"step", false},      LineSpec{"dir", false},          LineSpec{"enable", false},
    LineSpec{"heartbeat", false}, LineSpec{"buzzer", false},       LineSpec{"fault", true},
    LineSpec{"encoder", true},    LineSpec{"occlusion", true},     LineSpec{"disconnect", true},
    LineSpec{"bolus_button", true}, LineSpec{"low_battery", true},
};

std::optional<std::string> read_abs_path(Document& doc, const YamlNode* n) {
  if (n == nullptr) return std::nullopt;
  auto s = read_string(doc, *n);
  if (s && (*s)[0] != '/') {
    doc.problem(*n, "must be an absolute path, found " + in_quotes(*s));
    return std::nullopt;
  }
  return s;
}

void read_paths(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"prescription", "drugs", "state"});
  if (auto s = read_abs_path(doc, m.require("prescription"))) c.prescription_path = *s;
  if (auto s = read_abs_path(doc, m.require("drugs"))) c.drugs_path = *s;
  if (auto s = read_abs_path(doc, m.require("state"))) c.state_dir = *s;
}

void read_loop(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"period", "priority", "cpu", "cpu_dma_latency"});
  if (const YamlNode* p = m.require("period")) {
    if (auto d = read_duration(doc, *p, Sign::positive, true)) {
      if (*d < kMinLoopPeriod || *d > kMaxLoopPeriod) {
        doc.problem(*p, "loop period must be from 100 us (0.1 ms) to 10 ms, found " + in_quotes(p->value));
      } else {
        c.board.loop_period = *d;
      }
    }
  }
  if (const YamlNode* p = m.require("priority")) {
    if (auto v = read_uint(doc, *p, 1, 99)) c.loop_priority = static_cast<int>(*v);
  }
  if (const YamlNode* p = m.get("cpu")) {
    if (auto v = read_uint(doc, *p, 0, 1023)) c.loop_cpu = static_cast<int>(*v);
  }
  if (const YamlNode* p = m.get("cpu_dma_latency")) {
    if (p->kind == YamlNode::Kind::scalar && p->value == "off") {
      c.cpu_dma_latency.reset();
    } else if (auto d = read_duration(doc, *p, Sign::non_negative, true)) {
      if (*d > kMaxCpuDmaLatency) {
        doc.problem(*p, "cpu_dma_latency must be from 0 ms to 10 ms, or off, found " + in_quotes(p->value));
      } else {
        c.cpu_dma_latency = *d;
      }
    }
  }
}

void read_motor(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"volume_per_step", "max_steps_per_second", "steps_per_encoder_pulse", "stall_pulses",
                       "prime_rate"});
  bool ok = true;
  if (const YamlNode* p = m.require("volume_per_step")) {
    if (auto v = read<Volume>(doc, *p)) {
      if (*v > uL(100)) {
        doc.problem(*p, "volume per step must be at most 100 uL, found " + in_quotes(p->value));
        ok = false;
      } else {
        c.board.volume_per_step = *v;
      }
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (const YamlNode* p = m.require("max_steps_per_second")) {
    if (auto v = read_uint(doc, *p, 1, 100000)) c.board.max_steps_per_second = static_cast<std::uint32_t>(*v);
    else ok = false;
  } else {
    ok = false;
  }
  if (const YamlNode* p = m.require("steps_per_encoder_pulse")) {
    if (auto v = read_uint(doc, *p, 1, 100000)) c.board.steps_per_encoder_pulse = static_cast<std::uint32_t>(*v);
  }
  if (const YamlNode* p = m.require("stall_pulses")) {
    if (auto v = read_uint(doc, *p, 1, 1000)) c.board.stall_pulses = static_cast<std::uint32_t>(*v);
  }
  if (const YamlNode* p = m.require("prime_rate")) {
    if (auto v = read<VolumeRate>(doc, *p)) {
      c.board.prime_rate = *v;
      if (ok) {
        if (auto why = check_reachable(*v, c.board)) doc.problem(*p, "the prime rate " + *why);
      }
    }
  }
}

void read_sim(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"time_scale", "pump_drift"});
  if (const YamlNode* p = m.require("time_scale")) {
    if (auto v = read_number(doc, *p, 1, 20000)) c.sim_time_scale = *v;
  }
  // Optional fault: the plant pumps this much more ("5 %") or less ("-5 %") than commanded,
  // unseen by the encoder; the refill check is what finds it (issue 11).
  if (const YamlNode* p = m.get("pump_drift")) {
    YamlNode mag = *p;
    const bool negative = !mag.value.empty() && mag.value.front() == '-';
    if (negative) mag.value.erase(0, 1);
    if (auto q = read_quantity(doc, mag, QuantitySpec{Dim::percent, Sign::non_negative, false})) {
      if (q->canonical > 50.0) {
        doc.problem(*p, "must be within -50 % .. 50 %, found " + in_quotes(p->value));
      } else {
        c.sim_pump_drift_percent = negative ? -q->canonical : q->canonical;
      }
    }
  }
}

void read_line(Document& doc, const YamlNode* n, const LineSpec& spec, GpioLine& line) {
  MapReader m(doc, n, {"line", "active_low", "bias", "debounce"});
  if (const YamlNode* p = m.require("line")) {
    if (p->kind == YamlNode::Kind::scalar && !p->value.empty() &&
        p->value.find_first_not_of("0123456789") == std::string::npos) {
      if (auto v = read_uint(doc, *p, 0, kMaxLineOffset)) line.offset = static_cast<unsigned>(*v);
    } else if (auto s = read_string(doc, *p)) {
      bool printable = s->size() <= kMaxLineName;
      for (char ch : *s) printable = printable && static_cast<unsigned char>(ch) > 0x20 && ch != 0x7f;
      if (printable) {
        line.name = *s;
      } else {
        doc.problem(*p, "a line is an offset or a name of at most 31 characters without spaces, found " +
                            in_quotes(*s));
      }
    }
  }
  if (const YamlNode* p = m.get("active_low")) {
    if (auto v = read_bool(doc, *p)) line.active_low = *v;
  }
  if (!spec.input) {
    m.forbid("bias", "bias applies to input lines only");
    m.forbid("debounce", "debounce applies to input lines only");
    return;
  }
  if (const YamlNode* p = m.get("bias")) {
    if (auto v = read_choice(doc, *p, {"as-is", "disabled", "pull-up", "pull-down"})) {
      constexpr std::array kBias{Bias::as_is, Bias::disabled, Bias::pull_up, Bias::pull_down};
      line.bias = kBias.at(*v);
    }
  }
  if (const YamlNode* p = m.get("debounce")) {
    if (auto d = read_duration(doc, *p, Sign::non_negative, true)) {
      if (*d > kMaxDebounce) {
        doc.problem(*p, "debounce must be at most 1 s, found " + in_quotes(p->value));
      } else {
        line.debounce = *d;
      }
    }
  }
}

void read_gpio(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"chip", "lines"});
  if (const YamlNode* p = m.require("chip")) {
    if (auto s = read_string(doc, *p)) c.gpio.chip = *s;
  }
  const YamlNode* lines_node = m.require("lines");
  MapReader lines(doc, lines_node, {"step", "dir", "enable", "heartbeat", "buzzer", "fault", "encoder", "occlusion",
                                    "disconnect", "bolus_button", "low_battery"});
  c.gpio.lines.clear();
  struct Used {
    const GpioLine* line;
    std::string path;
  };
  std::vector<Used> used;
  for (const LineSpec& spec : kLines) {
    const YamlNode* ln = lines.require(spec.name);
    if (ln == nullptr) continue;
    GpioLine line;
    read_line(doc, ln, spec, line);
    auto [it, inserted] = c.gpio.lines.emplace(std::string(spec.name), line);
    (void)inserted;
    for (const Used& u : used) {
      const bool same = (line.offset && u.line->offset && *line.offset == *u.line->offset) ||
                        (!line.name.empty() && line.name == u.line->name);
      if (same) {
        doc.problem(*ln, "uses the same GPIO line as " + u.path);
        break;
      }
    }
    used.push_back(Used{&it->second, ln->path});
  }
}

void read_battery(Document& doc, const YamlNode* n, DaemonConfig& c) {
  MapReader m(doc, n, {"capacity", "use_per_step", "use_per_hour", "eri", "eos"});
  BatteryParams& b = c.board.battery;
  auto charge = [&](std::string_view key, double& out) {
    if (const YamlNode* p = m.require(key)) {
      if (auto q = read_quantity(doc, *p, QuantitySpec{Dim::charge, Sign::positive, false})) out = q->canonical;
    }
  };
  charge("capacity", b.capacity_mAs);
  charge("use_per_step", b.use_per_step_mAs);
  charge("use_per_hour", b.use_per_hour_mAs);
  const YamlNode* eri = m.require("eri");
  const YamlNode* eos = m.require("eos");
  std::optional<double> eri_v;
  std::optional<double> eos_v;
  for (auto [node, out] : {std::pair{eri, &eri_v}, std::pair{eos, &eos_v}}) {
    if (node == nullptr) continue;
    if (auto q = read_quantity(doc, *node, QuantitySpec{Dim::percent, Sign::positive, false})) {
      if (q->canonical >= 100.0) {
        doc.problem(*node, "must be below 100 %, found " + in_quotes(node->value));
      } else {
        *out = q->canonical;
      }
    }
  }
  if (eri_v) b.eri_percent = *eri_v;
  if (eos_v) b.eos_percent = *eos_v;
  if (eri_v && eos_v && *eos_v >= *eri_v) {
    doc.problem(*eos, "the end-of-service level must be below the ERI level (" + in_quotes(eri->value) + ")");
  }
  if (b.use_per_step_mAs >= b.capacity_mAs || b.use_per_hour_mAs >= b.capacity_mAs) {
    if (const YamlNode* p = m.get("capacity")) doc.problem(*p, "capacity must exceed the use per step and per hour");
  }
}

}  // namespace

/// recorder: { keep: 90 d } (optional): how much of the flight recording is kept (S15).
void read_recorder(Document& doc, const YamlNode* n, DaemonConfig& c) {
  if (n == nullptr) return;
  MapReader m(doc, n, {"keep"});
  if (const YamlNode* p = m.require("keep")) {
    if (auto d = read_duration(doc, *p, Sign::positive)) {
      if (*d < days(1) || *d > days(3650)) {
        doc.problem(*p, "recorder keep must be from 1 d to 3650 d, found " + in_quotes(p->value));
      } else {
        c.recorder_keep = *d;
      }
    }
  }
}

LoadedDaemonConfig parse_daemon_config(std::string_view text, const std::string& file) {
  LoadedDaemonConfig out;
  Document doc(text, file, out.problems);
  if (doc.root() == nullptr) return out;
  DaemonConfig c;
  MapReader top(doc, doc.root(), {"backend", "paths", "loop", "motor", "sim", "gpio", "battery", "recorder"});
  std::optional<std::size_t> backend;
  if (const YamlNode* p = top.require("backend")) {
    backend = read_choice(doc, *p, {"sim", "gpiod"});
    if (backend) c.backend = *backend == 0 ? Backend::sim : Backend::gpiod;
  }
  read_paths(doc, top.require("paths"), c);
  read_loop(doc, top.require("loop"), c);
  read_motor(doc, top.require("motor"), c);
  read_battery(doc, top.require("battery"), c);
  read_recorder(doc, top.get("recorder"), c);
  if (backend) {
    if (c.backend == Backend::sim) {
      read_sim(doc, top.require("sim"), c);
      top.forbid("gpio", "gpio is for backend gpiod only");
    } else {
      read_gpio(doc, top.require("gpio"), c);
      top.forbid("sim", "sim is for backend sim only");
    }
  }
  if (out.problems.empty()) out.config = std::move(c);
  return out;
}

LoadedDaemonConfig load_daemon_config(const std::string& path) {
  FileText f = read_config_file(path);
  if (!f.text) return LoadedDaemonConfig{std::nullopt, std::move(f.problems)};
  return parse_daemon_config(*f.text, path);
}

}  // namespace thecal::config
