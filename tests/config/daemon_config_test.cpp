#include "config/daemon_config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/config/test_util.hpp"

namespace thecal::config {
namespace {

using test::dump;
using test::source_dir;

std::string load_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DaemonConfig, SimExampleLoads) {
  const LoadedDaemonConfig r = load_daemon_config(source_dir() + "/examples/thecald-sim.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  const DaemonConfig& c = *r.config;
  EXPECT_EQ(c.backend, Backend::sim);
  EXPECT_EQ(c.prescription_path, "/var/lib/thecal/prescription.yaml");
  EXPECT_EQ(c.drugs_path, "/usr/share/thecal/drugs.yaml");
  EXPECT_EQ(c.state_dir, "/var/lib/thecal");
  EXPECT_EQ(c.board.loop_period, msec(1));
  EXPECT_EQ(c.loop_priority, 80);
  ASSERT_TRUE(c.loop_cpu.has_value());
  EXPECT_EQ(*c.loop_cpu, 1);
  EXPECT_DOUBLE_EQ(to_uL(c.board.volume_per_step), 0.25);
  EXPECT_EQ(c.board.max_steps_per_second, 400U);
  EXPECT_EQ(c.board.steps_per_encoder_pulse, 8U);
  EXPECT_EQ(c.board.stall_pulses, 3U);
  EXPECT_DOUBLE_EQ(to_uL_per_h(c.board.prime_rate), 1000.0);
  EXPECT_DOUBLE_EQ(c.sim_time_scale, 1.0);
  EXPECT_DOUBLE_EQ(c.board.battery.capacity_mAs, 3.6e7);
  EXPECT_DOUBLE_EQ(c.board.battery.use_per_step_mAs, 0.05);
  EXPECT_DOUBLE_EQ(c.board.battery.use_per_hour_mAs, 3600.0);
  EXPECT_DOUBLE_EQ(c.board.battery.eri_percent, 15.0);
  EXPECT_DOUBLE_EQ(c.board.battery.eos_percent, 5.0);
  EXPECT_TRUE(c.gpio.lines.empty());
}

TEST(DaemonConfig, Rpi4ExampleLoads) {
  const LoadedDaemonConfig r = load_daemon_config(source_dir() + "/examples/thecald-rpi4.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  const DaemonConfig& c = *r.config;
  EXPECT_EQ(c.backend, Backend::gpiod);
  EXPECT_EQ(c.gpio.chip, "gpiochip0");
  ASSERT_EQ(c.gpio.lines.size(), 11U);
  const GpioLine& step = c.gpio.lines.at("step");
  EXPECT_EQ(step.offset, 17U);
  EXPECT_FALSE(step.active_low);
  EXPECT_EQ(step.bias, Bias::as_is);
  EXPECT_EQ(step.debounce, Duration{0});
  const GpioLine& enable = c.gpio.lines.at("enable");
  EXPECT_EQ(enable.offset, 22U);
  EXPECT_TRUE(enable.active_low);
  const GpioLine& fault = c.gpio.lines.at("fault");
  EXPECT_EQ(fault.offset, 23U);
  EXPECT_EQ(fault.bias, Bias::pull_up);
  const GpioLine& button = c.gpio.lines.at("bolus_button");
  EXPECT_EQ(button.offset, 26U);
  EXPECT_TRUE(button.active_low);
  EXPECT_EQ(button.bias, Bias::pull_up);
  EXPECT_EQ(button.debounce, msec(20));
  const std::pair<const char*, unsigned> expected[] = {
      {"dir", 27},      {"heartbeat", 12}, {"buzzer", 16},    {"encoder", 24},
      {"occlusion", 5}, {"disconnect", 6}, {"low_battery", 13},
  };
  for (const auto& [name, offset] : expected) {
    ASSERT_TRUE(c.gpio.lines.at(name).offset.has_value()) << name;
    EXPECT_EQ(*c.gpio.lines.at(name).offset, offset) << name;
  }
  EXPECT_TRUE(c.gpio.lines.at("low_battery").active_low);
}

TEST(DaemonConfig, LinesByNameOrOffset) {
  std::string text = load_text(source_dir() + "/examples/thecald-rpi4.yaml");
  text.replace(text.find("{ line: 17 }"), 12, "{ line: GPIO17 }");
  text.replace(text.find("chip: gpiochip0"), 15, "chip: pinctrl-bcm2711");
  const LoadedDaemonConfig r = parse_daemon_config(text, "rpi4.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(r.config->gpio.chip, "pinctrl-bcm2711");
  EXPECT_FALSE(r.config->gpio.lines.at("step").offset.has_value());
  EXPECT_EQ(r.config->gpio.lines.at("step").name, "GPIO17");
  EXPECT_EQ(r.config->gpio.lines.at("dir").offset, 27U);
  EXPECT_TRUE(r.config->gpio.lines.at("dir").name.empty());
}

TEST(DaemonConfig, MicrosecondPeriodIsRefusedWithItsUnitNamed) {
  std::string text = load_text(source_dir() + "/examples/thecald-sim.yaml");
  text.replace(text.find("period: 1 ms"), 12, "period: 0.5 ms");
  LoadedDaemonConfig r = parse_daemon_config(text, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(r.config->board.loop_period, usec(500));
  text.replace(text.find("period: 0.5 ms"), 14, "period: 500 us");
  r = parse_daemon_config(text, "t.yaml");
  ASSERT_EQ(r.problems.size(), 1U) << dump(r.problems);
  EXPECT_EQ(r.problems[0].format(),
            "t.yaml:10:11: loop.period: unknown unit \"us\": expected a duration in s, min, h, d or ms");
}

TEST(DaemonConfig, DefaultsOfOptionalKeys) {
  std::string text = load_text(source_dir() + "/examples/thecald-sim.yaml");
  text.replace(text.find("  cpu: 1"), 8, "");
  const LoadedDaemonConfig r = parse_daemon_config(text, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_FALSE(r.config->loop_cpu.has_value());
}

TEST(DaemonConfig, CpuDmaLatencyIsZeroByDefaultADurationUpTo10msOrOff) {
  const std::string base = load_text(source_dir() + "/examples/thecald-sim.yaml");
  auto with = [&](const std::string& v) {
    std::string text = base;
    const std::string key = "  cpu_dma_latency: 0 ms";
    text.replace(text.find(key), key.size(), "  cpu_dma_latency: " + v);
    return parse_daemon_config(text, "t.yaml");
  };
  std::string without = base;
  const std::size_t line = without.find("  cpu_dma_latency:");
  without.erase(line, without.find('\n', line) + 1 - line);
  LoadedDaemonConfig r = parse_daemon_config(without, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  ASSERT_TRUE(r.config->cpu_dma_latency.has_value());
  EXPECT_EQ(*r.config->cpu_dma_latency, Duration{0});
  r = with("0.05 ms");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(*r.config->cpu_dma_latency, usec(50));
  r = with("off");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_FALSE(r.config->cpu_dma_latency.has_value());
  const std::pair<const char*, const char*> bad[] = {
      {"-1 ms", "loop.cpu_dma_latency: "},
      {"20 ms", "loop.cpu_dma_latency: cpu_dma_latency must be from 0 ms to 10 ms, or off, found \"20 ms\""},
      {"0", "loop.cpu_dma_latency: "},
      {"fast", "loop.cpu_dma_latency: "},
  };
  for (const auto& [v, msg] : bad) {
    r = with(v);
    EXPECT_FALSE(r.config.has_value()) << v;
    ASSERT_EQ(r.problems.size(), 1U) << v << ": " << dump(r.problems);
    EXPECT_NE(r.problems[0].format().find(msg), std::string::npos) << r.problems[0].format();
    EXPECT_EQ(r.problems[0].format().rfind("t.yaml:13:", 0), 0U) << r.problems[0].format();
  }
}

TEST(DaemonConfig, SimPumpDriftIsASignedPercentWithinFifty) {
  const std::string base = load_text(source_dir() + "/examples/thecald-sim.yaml");
  auto with = [&](const std::string& drift) {
    std::string text = base;
    const std::string key = "  time_scale: 1 ";
    text.insert(text.find(key), "  pump_drift: " + drift + "\n");
    return parse_daemon_config(text, "t.yaml");
  };
  LoadedDaemonConfig r = parse_daemon_config(base, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_DOUBLE_EQ(r.config->sim_pump_drift_percent, 0.0);
  r = with("5 %");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_DOUBLE_EQ(r.config->sim_pump_drift_percent, 5.0);
  r = with("-7.5 %");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_DOUBLE_EQ(r.config->sim_pump_drift_percent, -7.5);
  for (const char* bad : {"60 %", "-60 %", "5", "5 mL", "--5 %"}) {
    r = with(bad);
    EXPECT_FALSE(r.config.has_value()) << bad;
    ASSERT_EQ(r.problems.size(), 1U) << bad << dump(r.problems);
    EXPECT_NE(r.problems[0].format().find("sim.pump_drift"), std::string::npos) << r.problems[0].format();
  }
}

}  // namespace
}  // namespace thecal::config

namespace thecal::config {
namespace {

TEST(DaemonConfig, RecorderKeepIsNinetyDaysByDefaultFromOneDayToTenYears) {
  const std::string base = load_text(source_dir() + "/examples/thecald-sim.yaml");
  const std::string key = "  keep: 90 d";
  ASSERT_NE(base.find(key), std::string::npos);
  auto with = [&](const std::string& v) {
    std::string text = base;
    text.replace(text.find(key), key.size(), v);
    return parse_daemon_config(text, "t.yaml");
  };
  LoadedDaemonConfig r = parse_daemon_config(base, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(r.config->recorder_keep, days(90));
  r = with("  keep: 30 d");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(r.config->recorder_keep, days(30));
  std::string without = base;
  const std::size_t at = without.find("recorder:");
  without.erase(at, without.find(key) + key.size() + 1 - at);
  r = parse_daemon_config(without, "t.yaml");
  ASSERT_TRUE(r.config.has_value()) << dump(r.problems);
  EXPECT_EQ(r.config->recorder_keep, days(90));
  const std::pair<const char*, const char*> bad[] = {
      {"  keep: 12 h", "recorder.keep: recorder keep must be from 1 d to 3650 d, found \"12 h\""},
      {"  keep: 4000 d", "recorder.keep: recorder keep must be from 1 d to 3650 d, found \"4000 d\""},
      {"  keep: 30", "recorder.keep: "},
      {"  keep: -3 d", "recorder.keep: "},
      {"  keep: 30 d\n  size: 1 MB", "recorder.size: "},
  };
  for (const auto& [v, want] : bad) {
    r = with(v);
    EXPECT_FALSE(r.config.has_value()) << v;
    ASSERT_EQ(r.problems.size(), 1U) << v << ": " << dump(r.problems);
    EXPECT_NE(r.problems[0].format().find(want), std::string::npos) << r.problems[0].format();
  }
}

}  // namespace
}  // namespace thecal::config
