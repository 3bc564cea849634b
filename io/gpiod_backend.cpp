#include "io/gpiod_backend.hpp"

#include <fcntl.h>
#include <gpiod.h>
#include <time.h>

#include <cerrno>
#include <cmath>
#include <cstring>

namespace thecal::io {

namespace {

constexpr std::array<const char*, kGpioRoles> kRoleNames{
    "enable", "step", "dir", "heartbeat", "buzzer", "fault", "encoder", "occlusion", "disconnect", "bolus_button",
    "low_battery"};

constexpr bool is_output(GpioRole r) { return r <= GpioRole::buzzer; }
constexpr std::size_t idx(GpioRole r) { return static_cast<std::size_t>(r); }

std::int64_t mono_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int request_flags(const GpioLineSpec& l) {
  int f = 0;
  if (l.active_low) f |= GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW;
  switch (l.bias) {
    case GpioBias::as_is: break;
    case GpioBias::disabled: f |= GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE; break;
    case GpioBias::pull_up: f |= GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP; break;
    case GpioBias::pull_down: f |= GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN; break;
  }
  return f;
}

// The safe level each output is requested with (logical).
constexpr bool safe_level(GpioRole r) { return r == GpioRole::dir; }  // dir: forward; the rest inactive

std::string describe(const GpioLineSpec& l) {
  return l.offset ? "offset " + std::to_string(*l.offset) : "name \"" + l.name + "\"";
}

std::string errno_text(int e) {
  const char* d = strerrordesc_np(e);  // thread-safe, unlike strerror
  return std::string(d != nullptr ? d : "unknown error") + " (errno " + std::to_string(e) + ")";
}

}  // namespace

const char* to_string(GpioRole r) noexcept { return r < GpioRole::count_ ? kRoleNames[idx(r)] : "none"; }

std::variant<std::unique_ptr<GpiodBackend>, std::string> GpiodBackend::open(const GpioBoard& cfg,
                                                                           const GpiodOptions& opt) {
  std::unique_ptr<GpiodBackend> b(new GpiodBackend());
  b->opt_ = opt;
  const std::int64_t pulse_ns = std::max<std::int64_t>(1, opt.pulse.high_ns + opt.pulse.low_ns);
  const double budget = std::clamp(opt.pulse_budget, 0.01, 0.9);
  b->budget_ns_ = static_cast<std::int64_t>(std::llround(static_cast<double>(opt.loop_period.count()) * 1000.0 * budget));
  b->steps_ = StepQueue(static_cast<std::uint32_t>(std::max<std::int64_t>(1, b->budget_ns_ / pulse_ns)),
                        opt.max_pending_steps);
  std::string err = b->request_all(cfg);
  if (!err.empty()) {
    b->release();
    return err;
  }
  return b;
}

std::string GpiodBackend::request_all(const GpioBoard& cfg) {
  chip_ = gpiod_chip_open_lookup(cfg.chip.c_str());
  if (chip_ == nullptr) {
    const int e = errno;
    return "cannot open GPIO chip \"" + cfg.chip + "\" (by name, /dev path, number or label): " + errno_text(e);
  }
  const std::string chip_text = std::string("GPIO chip ") + gpiod_chip_name(chip_) + " (\"" + gpiod_chip_label(chip_) + "\")";

  // Roles in enum order: enable is resolved and requested before any other line.
  for (std::size_t i = 0; i < kGpioRoles; ++i) {
    const auto role = static_cast<GpioRole>(i);
    const auto it = cfg.lines.find(kRoleNames[i]);
    if (it == cfg.lines.end()) return std::string("gpio.lines.") + kRoleNames[i] + " is not configured";
    const GpioLineSpec& l = it->second;
    gpiod_line* line = l.offset ? gpiod_chip_get_line(chip_, *l.offset) : gpiod_chip_find_line(chip_, l.name.c_str());
    if (line == nullptr) {
      const int e = errno;
      return std::string("gpio.lines.") + kRoleNames[i] + ": " + chip_text + " has no line with " + describe(l) + ": " +
             errno_text(e);
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (lines_[j] != nullptr && gpiod_line_offset(lines_[j]) == gpiod_line_offset(line)) {
        return std::string("gpio.lines.") + kRoleNames[i] + " and gpio.lines." + kRoleNames[j] + " are the same line " +
               std::to_string(gpiod_line_offset(line)) + " of " + chip_text;
      }
    }
    gpiod_line_request_config rc{};
    rc.consumer = opt_.consumer.c_str();
    rc.flags = request_flags(l);
    int r = 0;
    if (is_output(role)) {
      rc.request_type = GPIOD_LINE_REQUEST_DIRECTION_OUTPUT;
      r = gpiod_line_request(line, &rc, safe_level(role) ? 1 : 0);  // the safe level in the same request
    } else if (role == GpioRole::encoder) {
      rc.request_type = GPIOD_LINE_REQUEST_EVENT_RISING_EDGE;
      r = gpiod_line_request(line, &rc, 0);
    } else {
      rc.request_type = GPIOD_LINE_REQUEST_DIRECTION_INPUT;
      r = gpiod_line_request(line, &rc, 0);
    }
    if (r != 0) {
      const int e = errno;
      const char* consumer = gpiod_line_consumer(line);
      return std::string("gpio.lines.") + kRoleNames[i] + ": cannot request line " +
             std::to_string(gpiod_line_offset(line)) + " of " + chip_text + ": " + errno_text(e) +
             (e == EBUSY && consumer != nullptr ? std::string(", it is held by \"") + consumer + "\"" : std::string());
    }
    lines_[i] = line;
    debounce_[i] = Debouncer(l.debounce);
    if (role == GpioRole::encoder) {
      encoder_ = EdgeCounter(l.debounce.count() * 1000);
      encoder_fd_ = gpiod_line_event_get_fd(line);
      const int fl = encoder_fd_ < 0 ? -1 : fcntl(encoder_fd_, F_GETFL);
      if (fl < 0 || fcntl(encoder_fd_, F_SETFL, fl | O_NONBLOCK) < 0) {
        const int e = errno;
        return "gpio.lines.encoder: cannot make its event fd non-blocking: " + errno_text(e);
      }
    }
  }
  // Seed the debouncers with the levels present now, so a fault present at start is seen
  // in the first cycle.
  for (std::size_t i = idx(GpioRole::fault); i < kGpioRoles; ++i) {
    if (static_cast<GpioRole>(i) == GpioRole::encoder) continue;
    const int v = gpiod_line_get_value(lines_[i]);
    if (v < 0) {
      const int e = errno;
      return std::string("gpio.lines.") + kRoleNames[i] + ": cannot read line " +
             std::to_string(gpiod_line_offset(lines_[i])) + " of " + chip_text + ": " + errno_text(e);
    }
    debounce_[i].seed(v != 0);
  }
  last_.occlusion = debounce_[idx(GpioRole::occlusion)].level();
  last_.disconnect = debounce_[idx(GpioRole::disconnect)].level();
  last_.driver_fault = debounce_[idx(GpioRole::fault)].level();
  last_.low_battery = debounce_[idx(GpioRole::low_battery)].level();
  last_.bolus_button = debounce_[idx(GpioRole::bolus_button)].level();
  return {};
}

GpiodBackend::~GpiodBackend() { release(); }

void GpiodBackend::release() noexcept {
  safe_state();
  if (chip_ != nullptr) gpiod_chip_close(chip_);  // releases every line requested from it
  chip_ = nullptr;
  lines_.fill(nullptr);
  encoder_fd_ = -1;
}

void GpiodBackend::io_error(GpioRole role, int err) noexcept {
  stat_errors_.fetch_add(1, std::memory_order_relaxed);
  last_errno_.store(err, std::memory_order_relaxed);
  last_error_role_.store(static_cast<std::uint8_t>(role), std::memory_order_relaxed);
  if (hw_ok_.exchange(false, std::memory_order_relaxed) && role != GpioRole::enable) {
    // First failure: stop the motor now if the enable line still works.
    gpiod_line* en = lines_[idx(GpioRole::enable)];
    if (en != nullptr && gpiod_line_set_value(en, 0) == 0) enabled_.store(false, std::memory_order_relaxed);
  }
}

bool GpiodBackend::set(GpioRole role, bool level) noexcept {
  gpiod_line* l = lines_[idx(role)];
  if (l == nullptr) return false;
  if (gpiod_line_set_value(l, level ? 1 : 0) != 0) {
    io_error(role, errno);
    return false;
  }
  return true;
}

int GpiodBackend::get(GpioRole role) noexcept {
  gpiod_line* l = lines_[idx(role)];
  if (l == nullptr) return -1;
  const int v = gpiod_line_get_value(l);
  if (v < 0) io_error(role, errno);
  return v;
}

void GpiodBackend::read_encoder() noexcept {
  if (encoder_fd_ < 0) return;
  // The kernel keeps 16 events per line; a few reads bound the work per cycle.
  std::array<gpiod_line_event, 16> ev{};
  for (int batch = 0; batch < 4; ++batch) {
    const int n = gpiod_line_event_read_fd_multiple(encoder_fd_, ev.data(), static_cast<unsigned>(ev.size()));
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) io_error(GpioRole::encoder, errno);
      return;
    }
    for (int i = 0; i < n; ++i) {
      const auto& e = ev[static_cast<std::size_t>(i)];
      if (e.event_type != GPIOD_LINE_EVENT_RISING_EDGE) continue;
      encoder_.edge(static_cast<std::int64_t>(e.ts.tv_sec) * 1'000'000'000 + e.ts.tv_nsec);
    }
    if (n < static_cast<int>(ev.size())) return;
  }
}

SensorInputs GpiodBackend::read(MonoTime now) noexcept {
  auto level = [&](GpioRole r, bool& out) {
    const int v = get(r);
    if (v >= 0) out = debounce_[idx(r)].update(v != 0, now);
  };
  level(GpioRole::fault, last_.driver_fault);
  level(GpioRole::occlusion, last_.occlusion);
  level(GpioRole::disconnect, last_.disconnect);
  level(GpioRole::bolus_button, last_.bolus_button);
  level(GpioRole::low_battery, last_.low_battery);
  read_encoder();
  last_.encoder_pulses = encoder_.count();
  last_.hardware_ok = hw_ok_.load(std::memory_order_relaxed);
  stat_edges_.store(encoder_.count(), std::memory_order_relaxed);
  stat_bounces_.store(encoder_.bounces(), std::memory_order_relaxed);
  return last_;
}

void GpiodBackend::write(const Actuation& out, MonoTime /*now*/) noexcept {
  const bool ok = hw_ok_.load(std::memory_order_relaxed);
  const bool want_enable = out.motor_enable && ok;
  if (want_enable != enabled_.load(std::memory_order_relaxed)) {
    if (set(GpioRole::enable, want_enable)) enabled_.store(want_enable, std::memory_order_relaxed);
  }
  const bool can_step = want_enable && enabled_.load(std::memory_order_relaxed) && hw_ok_.load(std::memory_order_relaxed);
  const std::uint32_t n = steps_.plan(out.steps, can_step);
  if (n > 0) {
    bool pulses_ok = true;
    const std::uint32_t done = pulse_train(
        n, opt_.pulse, budget_ns_, [this](bool v) { return set(GpioRole::step, v); }, mono_ns, pulses_ok);
    steps_.issued(done);
    if (!pulses_ok) steps_.clear();
  }
  if (out.buzzer != buzzer_.load(std::memory_order_relaxed)) {
    if (set(GpioRole::buzzer, out.buzzer)) buzzer_.store(out.buzzer, std::memory_order_relaxed);
  }
  // The external watchdog sees the heartbeat toggle every cycle (S9), hardware error or not.
  if (out.heartbeat != heartbeat_ && set(GpioRole::heartbeat, out.heartbeat)) heartbeat_ = out.heartbeat;
  stat_steps_.store(steps_.total_issued(), std::memory_order_relaxed);
  stat_dropped_.store(steps_.total_dropped(), std::memory_order_relaxed);
}

void GpiodBackend::safe_state() noexcept {
  // ioctls and lock-free atomics only: this runs in a fatal-signal handler too.
  if (gpiod_line* en = lines_[idx(GpioRole::enable)]; en != nullptr) {
    if (gpiod_line_set_value(en, 0) == 0) enabled_.store(false, std::memory_order_relaxed);
  }
  if (gpiod_line* st = lines_[idx(GpioRole::step)]; st != nullptr) (void)gpiod_line_set_value(st, 0);
  if (gpiod_line* bz = lines_[idx(GpioRole::buzzer)]; bz != nullptr) {
    if (gpiod_line_set_value(bz, 0) == 0) buzzer_.store(false, std::memory_order_relaxed);
  }
}

GpiodStats GpiodBackend::stats() const noexcept {
  GpiodStats s;
  s.steps_issued = stat_steps_.load(std::memory_order_relaxed);
  s.steps_dropped = stat_dropped_.load(std::memory_order_relaxed);
  s.encoder_edges = stat_edges_.load(std::memory_order_relaxed);
  s.encoder_bounces = stat_bounces_.load(std::memory_order_relaxed);
  s.io_errors = stat_errors_.load(std::memory_order_relaxed);
  s.last_errno = last_errno_.load(std::memory_order_relaxed);
  s.last_error_role = static_cast<GpioRole>(last_error_role_.load(std::memory_order_relaxed));
  return s;
}

}  // namespace thecal::io
