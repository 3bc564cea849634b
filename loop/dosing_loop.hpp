// The dosing thread: a SCHED_FIFO loop that wakes at absolute deadlines (previous deadline
// + period, so the period does not drift), applies queued commands, reads the pump, runs
// one control cycle of the core and drives the pump.
//
// It shares nothing with the rest of the daemon but lock-free single-producer /
// single-consumer queues (boost::lockfree::spsc_queue, fixed capacity: no lock, no
// allocation after start) and relaxed atomic counters:
//   commands  main -> loop      replies, events  loop -> main
// and a triple buffer for the newest status snapshot (loop -> main).
// The main thread never waits on the loop; the loop never waits on anything but its clock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <pthread.h>

#include <boost/lockfree/spsc_queue.hpp>

#include "control/pump_core.hpp"
#include "io/recording.hpp"
#include "loop/input_capture.hpp"
#include "loop/latency_histogram.hpp"
#include "loop/loop_clock.hpp"
#include "loop/triple_buffer.hpp"
#include "io/backend.hpp"

namespace thecal::loop {

struct LoopOptions {
  Duration period = msec(1);
  int priority = 80;            // SCHED_FIFO; 0 = do not ask for RT
  std::optional<int> cpu;       // affinity
  bool simulated = false;       // use the scaled simulated clock
  double time_scale = 1.0;
  std::uint32_t status_every = 10;  // cycles between status snapshots
  bool record = false;          // hand the flight recorder's inputs over (drain_inputs)
};

/// Page faults the dosing thread took since its first cycle (SPEC 7: zero after start).
struct LoopFaults {
  std::int64_t minor = 0;
  std::int64_t major = 0;
  bool valid = false;  // false before the thread started its loop
};

class DosingLoop {
 public:
  DosingLoop(PumpCore& core, io::Backend& backend, const LoopOptions& options);
  DosingLoop(const DosingLoop&) = delete;
  DosingLoop& operator=(const DosingLoop&) = delete;
  ~DosingLoop();

  /// Starts the thread; returns an error text if the thread could not be created.
  std::optional<std::string> start();
  /// Stops the thread and leaves the pump in its safe state.  Idempotent.
  void stop();

  // ---- main thread ----
  /// Queues a command for the next cycle; false if the queue is full (caller refuses).
  [[nodiscard]] bool post(const Command& cmd) { return commands_.push(cmd); }
  template <class F>
  void drain_replies(F&& f) { replies_.consume_all(f); }
  template <class F>
  void drain_events(F&& f) { events_.consume_all(f); }
  /// The flight recorder's inputs (LoopOptions::record), oldest first.  Call before
  /// drain_replies(): a command's plan is still the sender's then.
  template <class F>
  void drain_inputs(F&& f) { inputs_.consume_all(f); }
  /// Asks for an exact image of the core (the flight recorder's mid-run snapshot) into
  /// `buf`, which the main thread owns and does not touch until the snapshot input comes
  /// back through drain_inputs (LoopInput::image == buf).  Taken at the start of a cycle
  /// with no event pending, by a plain copy (no allocation, no lock).  False: one is
  /// already asked for.
  [[nodiscard]] bool request_snapshot(CoreImage* buf) { return snapshot_requests_.push(buf); }
  /// The newest status snapshot, if one arrived since the last call.
  bool latest_status(Status& out);
  [[nodiscard]] LoopDiagnostics diagnostics() const;
  /// The exact largest wake-up latency (ns) since the previous call (0 if no cycle ran):
  /// the main thread takes it once a minute for the *LastMinute figures.
  std::uint64_t take_interval_max() { return interval_max_ns_.exchange(0, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t cycles() const { return cycles_.load(std::memory_order_relaxed); }
  /// The loop's current time (simulated with the sim backend), at most one cycle old.
  [[nodiscard]] Now now() const;
  void set_time_scale(double s) { scale_.store(s, std::memory_order_relaxed); }
  [[nodiscard]] double time_scale() const { return scale_.load(std::memory_order_relaxed); }
  /// Simulated world only: step the simulated wall clock by `by` at the next cycle (the
  /// monotonic clock is untouched), as an NTP step or a manual clock set would (S8).
  void step_sim_wall(Duration by) { wall_step_us_.fetch_add(by.count(), std::memory_order_relaxed); }
  [[nodiscard]] bool running() const { return running_.load(std::memory_order_acquire); }
  /// Simulated world only: cycles in which the simulated clock was slowed or held for a
  /// step budget.
  [[nodiscard]] std::uint64_t held_cycles() const { return held_cycles_.load(std::memory_order_relaxed); }
  /// How long (real time) the simulated world waits at most for a grant before it runs on
  /// and the core runs out of budget as a real pump would (a failing journal, S7).
  static constexpr std::int64_t kMaxHoldUs = 10'000'000;
  /// Page faults of the dosing thread since its first cycle.  Costs the loop nothing: the
  /// thread samples getrusage(RUSAGE_THREAD) once before its first cycle and once after
  /// its last; in between this reads /proc/self/task/TID/stat (any thread but the loop).
  [[nodiscard]] LoopFaults page_faults() const;

 private:
  static void* thread_main(void* self);
  void run();
  void setup_thread();
  void cycle(std::int64_t real_now_us);
  /// The core's pending events into the queue to the main thread, if it has room for all.
  void hand_over_events();
  /// A requested exact image, at the start of a cycle (after its clock record).
  template <class Sink>
  void take_snapshot(Now now, Sink& sink);
  /// Simulated world only: how far the simulated clock may move this cycle so that the
  /// step budget the journal granted covers it (see the .cpp); nullopt: no limit.
  std::optional<Duration> sim_advance_limit(std::int64_t real_now_us);

  PumpCore& core_;
  io::Backend& backend_;
  LoopOptions opt_;
  LoopClock clock_;
  pthread_t thread_{};
  bool started_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  std::atomic<double> scale_;

  boost::lockfree::spsc_queue<Command, boost::lockfree::capacity<64>> commands_;
  boost::lockfree::spsc_queue<Reply, boost::lockfree::capacity<64>> replies_;
  boost::lockfree::spsc_queue<Event, boost::lockfree::capacity<4096>> events_;
  TripleBuffer<Status> status_;
  boost::lockfree::spsc_queue<io::LoopInput, boost::lockfree::capacity<1024>> inputs_;
  InputCapture capture_;
  boost::lockfree::spsc_queue<CoreImage*, boost::lockfree::capacity<2>> snapshot_requests_;
  std::uint64_t events_pushed_ = 0;  // events handed to the main thread (loop thread only)
  bool inputs_lost_ = false;  // the queue overflowed: recording stops (a gap record says so)
  bool gap_sent_ = false;

  // Written by the loop, read by anyone (relaxed: statistics only).
  std::atomic<std::uint64_t> cycles_{0};
  std::atomic<std::uint64_t> overruns_{0};
  std::atomic<std::uint64_t> step_max_ns_{0};
  std::atomic<std::uint64_t> latency_max_ns_{0};
  std::atomic<std::uint64_t> interval_max_ns_{0};  // since the last take_interval_max()
  std::atomic<bool> realtime_{false};
  std::array<std::atomic<std::uint64_t>, LatencyHistogram::kBins + 1> latency_bins_{};
  std::atomic<std::int64_t> now_mono_{0};
  std::atomic<std::int64_t> now_wall_{0};
  std::uint32_t since_status_ = 0;
  std::int64_t starved_since_us_ = -1;  // real monotonic time the simulated world began to wait
  std::int64_t last_real_us_ = 0;       // real monotonic time of the previous cycle
  std::atomic<std::uint64_t> held_cycles_{0};
  std::atomic<std::int64_t> wall_step_us_{0};
  // Page-fault accounting (see page_faults()).
  std::atomic<int> tid_{0};
  std::atomic<std::int64_t> minflt_start_{0};
  std::atomic<std::int64_t> majflt_start_{0};
  std::atomic<std::int64_t> minflt_end_{-1};
  std::atomic<std::int64_t> majflt_end_{-1};
};

}  // namespace thecal::loop
