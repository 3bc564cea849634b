// PreviewPrescription (SPEC 2, 4, S16; issue 19): what a prescription would do from now on,
// computed by the dosing core itself on a copy of the pump's state, faster than real time.
//
//   run_preview(board, live, request)   pure: a new PumpCore restored from `live` (catheter
//                                       contents, ledger, lockout, reservoir, battery,
//                                       alarms), the candidate applied as LoadPrescription
//                                       would, then PumpCore::fast_forward to the horizon
//   PreviewRunner                       the worker thread that runs them off the bus thread
//                                       and off the dosing thread (PumpService owns one)
//
// The candidate (docs/prescription.md, "Preview"): none, the active prescription unchanged;
// the same drug and concentration, a LoadPrescription at the preview's start; another drug
// or concentration, what the clinician does at the next refill: Suspend (if infusing),
// Refill to the new reservoir's capacity with the new solution (the measured residual taken
// equal to the pump's estimate), Resume (if it was infusing), so that the bridge shows.  A
// candidate the core refuses gets the error LoadPrescription (or Refill) would get.
//
// The plant is ideal (every step executed, no new fault): IdealPlant of the fast-forward.
// With patient boluses, each one is asked for at the first loop cycle at which the lockout,
// the count per 24 h and the running bolus allow it; one the core still refuses (S1 room,
// reservoir, state) is asked for again a minute later, and those refusals are not shown.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "app/call.hpp"
#include "control/board_params.hpp"
#include "control/core_state.hpp"
#include "control/therapy_plan.hpp"

namespace thecal::app {

inline constexpr Duration kPreviewMaxHorizon = days(180);
inline constexpr Duration kPreviewMinBucket = minutes(1);
inline constexpr std::uint64_t kPreviewMaxBuckets = 100'000;
/// More events than this (a pump that alarms every minute for months) end the list with
/// one `preview_truncated` event.
inline constexpr std::size_t kPreviewMaxEvents = 100'000;

struct PreviewRequest {
  const TherapyPlan* plan = nullptr;  // the candidate; null: the active one, unchanged
  bool with_patient_boluses = false;
  Duration horizon{0};
  Duration bucket{0};
  std::uint32_t uid = kSystemUid;  // who the simulated programming acts are logged for
};

struct PreviewBucket {
  WallTime start{};
  Mass tip_mass;          // primary drug mass that left the catheter tip in the bucket
  Volume pump_volume;     // volume the pump stepped in the bucket
  Volume reservoir_end;   // reservoir estimate at the bucket's end
  Mass rolling_24h_end;   // rolling-24 h mass at the tip at the bucket's end
};

struct PreviewEvent {
  WallTime when{};
  std::string type;
  std::string detail;
};

struct PreviewResult {
  std::vector<PreviewBucket> buckets;
  std::vector<PreviewEvent> events;
  std::uint64_t iterations = 0;        // fast-forward iterations (cost, for the benchmark)
  std::uint64_t boluses_taken = 0;     // patient boluses the preview took
};

/// OutOfRange unless 0 < horizon <= 180 days, bucket >= 1 min and at most 100,000 buckets.
std::optional<Error> check_preview_limits(std::uint64_t horizon_us, std::uint64_t bucket_us);

/// The preview itself: pure, deterministic, allocates only its result (never on the dosing
/// thread).  `cancel` (optional) stops it early with InvalidState (daemon shutdown).
Outcome<PreviewResult> run_preview(const BoardParams& board, const CoreState& live, const PreviewRequest& req,
                                   const std::atomic<bool>* cancel = nullptr);

/// Runs previews one at a time on its own worker thread (small stack, nice 10, started on
/// first use so that it inherits the main thread's CPU affinity, off the dosing CPU).  At
/// most kMaxAdmitted previews are admitted (one running, the rest waiting); more are refused
/// by the caller.  `wake` is called from the worker when a result is ready; take() hands the
/// results over on the caller's thread.
class PreviewRunner {
 public:
  static constexpr std::size_t kMaxAdmitted = 2;
  using Done = std::function<void(const Outcome<PreviewResult>&)>;

  PreviewRunner();
  PreviewRunner(const PreviewRunner&) = delete;
  PreviewRunner& operator=(const PreviewRunner&) = delete;
  ~PreviewRunner();

  /// Called from the worker thread when a result is ready (under the runner's lock).
  void set_wake(std::function<void()> wake);
  /// Whether another preview may be admitted (counts those still waiting for their state copy).
  [[nodiscard]] bool admit();
  /// Gives back an admission that did not reach submit() (the state copy failed).
  void release();
  /// Queues a preview admitted before; `done` runs later from take().
  void submit(const BoardParams& board, std::unique_ptr<CoreState> live, std::unique_ptr<TherapyPlan> plan,
              PreviewRequest req, Done done);
  /// Completes every finished preview (caller's thread).  Returns how many.
  std::size_t take();
  [[nodiscard]] std::size_t in_flight() const;

 private:
  struct Job;
  void work();
  static void* thread_main(void* self);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> waiting_;
  std::deque<std::unique_ptr<Job>> finished_;
  std::function<void()> wake_;
  std::size_t admitted_ = 0;
  bool started_ = false;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};
  unsigned long thread_ = 0;  // pthread_t
};

}  // namespace thecal::app
