#include "loop/dosing_loop.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "io/log.hpp"

namespace thecal::loop {

namespace {

constexpr std::int64_t kNsPerUs = 1000;
constexpr std::size_t kCommandsPerCycle = 8;

timespec to_timespec(std::int64_t ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

std::int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Touch this much stack once, so the loop takes no page fault growing it (mlockall keeps
// it resident afterwards).
constexpr std::size_t kPrefaultStack = std::size_t{256} * 1024;

void prefault_stack() {
  unsigned char stack[kPrefaultStack];
  for (std::size_t i = 0; i < kPrefaultStack; i += 4096) {
    // A volatile store through a pointer the compiler cannot see through.
    *static_cast<volatile unsigned char*>(stack + i) = 0;
  }
  asm volatile("" : : "r"(stack) : "memory");
}

bool thread_faults(std::int64_t& minor, std::int64_t& major) {
  rusage ru{};
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return false;
  minor = ru.ru_minflt;
  major = ru.ru_majflt;
  return true;
}

// Writes every slot of a queue once, so the dosing thread never takes the first-touch
// page fault on its storage (the queues live inside the DosingLoop, which may sit on a
// stack or heap region that mlockall covers but nothing has touched yet).
template <class Queue, class T>
void prefault_queue(Queue& q, const T& value) {
  while (q.push(value)) {
  }
  q.consume_all([](const T&) {});
}

}  // namespace

DosingLoop::DosingLoop(PumpCore& core, io::Backend& backend, const LoopOptions& options)
    : core_(core), backend_(backend), opt_(options), clock_(options.simulated, options.time_scale),
      scale_(options.time_scale), capture_(core.board().steps_per_encoder_pulse) {
  // Safe state before anything else (issue 8: enable inactive first).
  backend_.safe_state();
  prefault_queue(commands_, Command{});
  prefault_queue(replies_, Reply{});
  prefault_queue(events_, Event{});
  prefault_queue(inputs_, io::LoopInput{});
  status_.prefault(Status{});
  const Now n = clock_.now(real_monotonic_us(), opt_.time_scale);
  now_mono_.store(to_usec(n.mono));
  now_wall_.store(to_usec(n.wall));
}

DosingLoop::~DosingLoop() { stop(); }

// A small, fixed stack: with mlockall(MCL_FUTURE) the whole stack is resident, and the
// default 8 MiB would be most of the daemon's footprint (SPEC 7: RSS < 16 MiB).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
// Sanitizer runtimes keep large thread-local state, which glibc places in the thread's stack.
constexpr std::size_t kThreadStack = 16 * 1024 * 1024;
#else
constexpr std::size_t kThreadStack = std::size_t{1024} * 1024;
#endif

void* DosingLoop::thread_main(void* self) {
  static_cast<DosingLoop*>(self)->run();
  return nullptr;
}

std::optional<std::string> DosingLoop::start() {
  if (started_) return std::nullopt;
  stop_.store(false);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kThreadStack);
  const int r = pthread_create(&thread_, &attr, &DosingLoop::thread_main, this);
  pthread_attr_destroy(&attr);
  if (r != 0) return std::string("cannot create the dosing thread: ") + std::strerror(r);
  started_ = true;
  return std::nullopt;
}

void DosingLoop::stop() {
  stop_.store(true);
  if (started_) {
    pthread_join(thread_, nullptr);
    started_ = false;
  }
  backend_.safe_state();
}

bool DosingLoop::latest_status(Status& out) { return status_.read(out); }

LoopDiagnostics DosingLoop::diagnostics() const {
  LoopDiagnostics d;
  d.cycles = cycles_.load(std::memory_order_relaxed);
  d.overruns = overruns_.load(std::memory_order_relaxed);
  d.control_step_max_ns = step_max_ns_.load(std::memory_order_relaxed);
  d.realtime = realtime_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < latency_bins_.size(); ++i) d.latency.counts[i] = latency_bins_[i].load(std::memory_order_relaxed);
  d.latency.max_ns = latency_max_ns_.load(std::memory_order_relaxed);
  return d;
}

Now DosingLoop::now() const {
  return {mono_us(now_mono_.load(std::memory_order_relaxed)), wall_us(now_wall_.load(std::memory_order_relaxed))};
}

void DosingLoop::setup_thread() {
  (void)pthread_setname_np(pthread_self(), "thecal-dosing");
  if (opt_.cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(*opt_.cpu), &set);
    const int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (r != 0) log_warning("Failed to pin the dosing thread to CPU %d: %s, ignoring", *opt_.cpu, std::strerror(r));
  }
  if (opt_.priority > 0) {
    sched_param sp{};
    sp.sched_priority = opt_.priority;
    const int r = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    if (r != 0) {
      log_warning("SCHED_FIFO priority %d refused (%s): the dosing loop runs as SCHED_OTHER, "
                  "its timing is not guaranteed", opt_.priority, std::strerror(r));
    } else {
      realtime_.store(true);
    }
  }
  prefault_stack();
}

LoopFaults DosingLoop::page_faults() const {
  LoopFaults f;
  const int tid = tid_.load(std::memory_order_acquire);
  if (tid == 0) return f;
  std::int64_t minor = minflt_end_.load(std::memory_order_acquire);
  std::int64_t major = majflt_end_.load(std::memory_order_acquire);
  if (minor < 0) {
    // Still running: the thread's counters from procfs (fields 10 and 12 of stat).
    char path[64];
    (void)std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    std::FILE* fp = std::fopen(path, "re");
    if (fp == nullptr) return f;
    char buf[1024];
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, fp);
    (void)std::fclose(fp);
    buf[n] = '\0';
    const char* p = std::strrchr(buf, ')');  // after "pid (comm)"
    long long minflt = 0;
    long long majflt = 0;
    if (p == nullptr || std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %lld %*u %lld", &minflt, &majflt) != 2) return f;
    minor = minflt;
    major = majflt;
  }
  f.minor = minor - minflt_start_.load(std::memory_order_relaxed);
  f.major = major - majflt_start_.load(std::memory_order_relaxed);
  f.valid = true;
  return f;
}

void DosingLoop::run() {
  setup_thread();
  std::int64_t minor = 0;
  std::int64_t major = 0;
  if (thread_faults(minor, major)) {
    minflt_start_.store(minor, std::memory_order_relaxed);
    majflt_start_.store(major, std::memory_order_relaxed);
    minflt_end_.store(-1, std::memory_order_relaxed);
    tid_.store(static_cast<int>(gettid()), std::memory_order_release);
  }
  running_.store(true, std::memory_order_release);
  const std::int64_t period_ns = to_usec(opt_.period) * kNsPerUs;
  std::int64_t deadline = mono_ns() + period_ns;
  while (!stop_.load(std::memory_order_relaxed)) {
    const timespec ts = to_timespec(deadline);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    const std::int64_t woke = mono_ns();
    const auto late = static_cast<std::uint64_t>(std::max<std::int64_t>(0, woke - deadline));
    latency_bins_[LatencyHistogram::bin_of(late)].fetch_add(1, std::memory_order_relaxed);
    if (late > latency_max_ns_.load(std::memory_order_relaxed)) latency_max_ns_.store(late, std::memory_order_relaxed);
    // The main thread may reset this one between the load and the store: the sample stored
    // is then one of the new interval's first, which is where it belongs.
    if (late > interval_max_ns_.load(std::memory_order_relaxed)) interval_max_ns_.store(late, std::memory_order_relaxed);

    // The core is given the scheduled deadline, not the measured wake-up: cycles then
    // advance by exactly one period, which the flight recorder need not keep (S15).
    cycle(deadline / kNsPerUs);
    const std::int64_t done = mono_ns();
    const auto step = static_cast<std::uint64_t>(done - woke);
    if (step > step_max_ns_.load(std::memory_order_relaxed)) step_max_ns_.store(step, std::memory_order_relaxed);
    cycles_.fetch_add(1, std::memory_order_relaxed);

    deadline += period_ns;
    if (done > deadline) {
      // Missed one or more deadlines: count them and start again from now, never catch up
      // with a burst (the core scales its work by the real elapsed time anyway).
      overruns_.fetch_add(static_cast<std::uint64_t>((done - deadline) / period_ns + 1), std::memory_order_relaxed);
      deadline = done + period_ns;
    }
  }
  backend_.safe_state();
  if (thread_faults(minor, major)) {
    majflt_end_.store(major, std::memory_order_relaxed);
    minflt_end_.store(minor, std::memory_order_release);
  }
  running_.store(false, std::memory_order_release);
}

void DosingLoop::hand_over_events() {
  if (events_.write_available() >= PumpCore::kEventCapacity) {
    core_.drain_events([this](const Event& e) {
      (void)events_.push(e);
      ++events_pushed_;
    });
  }
}

template <class Sink>
void DosingLoop::take_snapshot(Now now, Sink& sink) {
  if (snapshot_requests_.read_available() == 0) return;
  hand_over_events();  // the image holds no pending event: they go out first
  CoreImage* buf = snapshot_requests_.front();
  if (!core_.export_image(*buf)) return;  // events still pending (the main thread is behind): next cycle
  snapshot_requests_.pop();
  io::LoopInput r;
  r.kind = io::RecKind::snapshot;
  r.cycle = capture_.cycle();
  r.digest = io::status_digest(core_.status());
  r.now = now;
  r.period = capture_.period();
  r.in = capture_.plant().in;
  r.plant_steps = capture_.plant().steps;
  r.image = buf;
  r.events_before = events_pushed_;
  sink(r);
}

std::optional<Duration> DosingLoop::sim_advance_limit(std::int64_t real_now_us) {
  // With the simulator, simulated time runs `scale` times faster than the fsyncs that grant
  // the step budget (S7).  A real pump has minutes of budget ahead; at 20,000x those minutes
  // pass in milliseconds, and a slow fsync on a loaded host (or a late cycle, which moves
  // the simulated clock by its whole real length times the scale) would make the core drop
  // programmed steps that a real pump would have delivered.  So the simulated world moves
  // in a cycle at most as far as half the budget left covers at the commanded rate, and
  // stands still when none is left, until the grant arrives.  Bounded: a journal that
  // grants nothing for kMaxHoldUs of real time lets the world run on and out of budget as a
  // real pump would (storage_fault, budget_exhausted).
  const Status& s = core_.status();
  const double step_ul = to_uL(core_.board().volume_per_step);
  const double rate_ul_per_us = to_uL(s.pump_rate * Duration{1'000'000}) / 1e6;
  if (!(step_ul > 0.0) || !(rate_ul_per_us > 0.0)) {
    starved_since_us_ = -1;
    return std::nullopt;
  }
  const double covered_us = static_cast<double>(std::max<std::int64_t>(0, core_.budget().count)) * step_ul /
                            rate_ul_per_us / 2.0;
  const double natural_us = static_cast<double>(real_now_us - last_real_us_) * scale_.load(std::memory_order_relaxed);
  last_real_us_ = real_now_us;
  if (covered_us >= natural_us) {
    starved_since_us_ = -1;
    return std::nullopt;
  }
  if (starved_since_us_ < 0) starved_since_us_ = real_now_us;
  if (real_now_us - starved_since_us_ >= kMaxHoldUs) return std::nullopt;
  return Duration{static_cast<std::int64_t>(covered_us)};
}

void DosingLoop::cycle(std::int64_t real_now_us) {
  const double scale = scale_.load(std::memory_order_relaxed);
  const std::optional<Duration> limit = opt_.simulated ? sim_advance_limit(real_now_us) : std::nullopt;
  if (limit) held_cycles_.fetch_add(1, std::memory_order_relaxed);
  if (const std::int64_t step = wall_step_us_.exchange(0, std::memory_order_relaxed); step != 0) {
    clock_.step_wall(Duration{step});
  }
  const Now now = limit ? clock_.now_at_most(real_now_us, scale, *limit) : clock_.now(real_now_us, scale);
  now_mono_.store(to_usec(now.mono), std::memory_order_relaxed);
  now_wall_.store(to_usec(now.wall), std::memory_order_relaxed);

  // Commands first; their replies are published after this cycle's events and status, so
  // a client that gets a reply and then reads a property sees the state after its command.
  const bool rec = opt_.record && !inputs_lost_;
  auto sink = [this](const io::LoopInput& r) {
    if (!inputs_.push(r)) inputs_lost_ = true;
  };
  if (rec) {
    const Duration nominal = opt_.simulated ? Duration{std::llround(static_cast<double>(to_usec(opt_.period)) * scale)}
                                            : opt_.period;
    capture_.begin_cycle(now, nominal, core_.status(), sink);
    take_snapshot(now, sink);
  }
  std::array<Reply, kCommandsPerCycle> replies;
  std::size_t n = 0;
  Command cmd;
  while (n < replies.size() && replies_.write_available() > n && commands_.pop(cmd)) {
    const std::uint64_t digest = rec ? io::status_digest(core_.status()) : 0;
    replies[n] = core_.apply(cmd, now);
    if (rec) capture_.command(cmd, replies[n], digest, sink);
    ++n;
  }

  const SensorInputs in = backend_.read(now.mono);
  if (rec) capture_.sensors(in, core_.status(), sink);
  Actuation out;
  core_.tick(now, in, out);
  backend_.write(out, now.mono);
  if (rec) capture_.end_cycle(out.steps);
  if (opt_.record && inputs_lost_ && !gap_sent_) {
    io::LoopInput g;
    g.kind = io::RecKind::gap;
    g.cycle = capture_.cycle();
    gap_sent_ = inputs_.push(g);
  }

  // Events wait in the core while the main thread is behind; the core's own buffer counts
  // what it had to drop.
  hand_over_events();
  if (n > 0 || ++since_status_ >= opt_.status_every) {
    since_status_ = 0;
    status_.write(core_.status());
  }
  for (std::size_t i = 0; i < n; ++i) (void)replies_.push(replies[i]);
}

}  // namespace thecal::loop
