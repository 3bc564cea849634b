// GpiodBackend::open on this machine: no board, so every failure must come back as a
// clear text (never an exception, never a crash).  The backend on real lines: the gpio-sim
// rig, tests/system/gpio-sim-rig.sh.
#include "io/gpiod_backend.hpp"

#include <gtest/gtest.h>

namespace thecal::io {
namespace {

GpioBoard rpi4_lines(const std::string& chip) {
  GpioBoard c;
  c.chip = chip;
  const std::pair<const char*, unsigned> lines[] = {{"step", 17},      {"dir", 27},       {"enable", 22},
                                                    {"heartbeat", 12}, {"buzzer", 16},    {"fault", 23},
                                                    {"encoder", 24},   {"occlusion", 5},  {"disconnect", 6},
                                                    {"bolus_button", 26}, {"low_battery", 13}};
  for (const auto& [name, offset] : lines) {
    GpioLineSpec l;
    l.offset = offset;
    c.lines.emplace(name, l);
  }
  return c;
}

TEST(GpiodBackend, AMissingChipIsAClearError) {
  auto r = GpiodBackend::open(rpi4_lines("/dev/gpiochip-thecal-none"), GpiodOptions{});
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  const std::string& e = std::get<std::string>(r);
  EXPECT_NE(e.find("cannot open GPIO chip \"/dev/gpiochip-thecal-none\""), std::string::npos) << e;
  EXPECT_NE(e.find("errno"), std::string::npos) << e;
}

TEST(GpiodBackend, AMissingLabelIsAClearError) {
  auto r = GpiodBackend::open(rpi4_lines("no-such-pinctrl"), GpiodOptions{});
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("no-such-pinctrl"), std::string::npos);
}

TEST(GpiodBackend, RoleNamesAreTheConfigKeys) {
  EXPECT_STREQ(to_string(GpioRole::enable), "enable");
  EXPECT_STREQ(to_string(GpioRole::bolus_button), "bolus_button");
  EXPECT_STREQ(to_string(GpioRole::low_battery), "low_battery");
  EXPECT_STREQ(to_string(GpioRole::count_), "none");
}

}  // namespace
}  // namespace thecal::io
