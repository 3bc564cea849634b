#include "app/preview.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>

#include "app/event_log.hpp"
#include "control/pump_core.hpp"
#include "control/solution.hpp"

namespace thecal::app {

namespace {

constexpr Duration kRetry = minutes(1);
constexpr std::size_t kWorkerStack = 512 * 1024;
constexpr int kWorkerNice = 10;

Error refused(const Reply& r) { return Error{error_code(r.refusal), std::string(r.message.view())}; }

/// Whether the catheter still holds solution other than what the reservoir now pumps.
bool in_bridge(const PumpCore& core, Concentration reservoir) {
  return std::any_of(core.catheter().segments().begin(), core.catheter().segments().end(),
                     [&](const Catheter::Segment& s) { return s.concentration != reservoir && s.volume > uL(1e-9); });
}

}  // namespace

std::optional<Error> check_preview_limits(std::uint64_t horizon_us, std::uint64_t bucket_us) {
  const auto max_h = static_cast<std::uint64_t>(to_usec(kPreviewMaxHorizon));
  const auto min_b = static_cast<std::uint64_t>(to_usec(kPreviewMinBucket));
  if (horizon_us == 0 || horizon_us > max_h) {
    return Error{ErrorCode::out_of_range, "horizon_usec must be more than 0 and at most 180 days (" + std::to_string(max_h) +
                                              " us), got " + std::to_string(horizon_us)};
  }
  if (bucket_us < min_b) {
    return Error{ErrorCode::out_of_range,
                 "bucket_usec must be at least 1 min (60000000 us), got " + std::to_string(bucket_us)};
  }
  const std::uint64_t n = horizon_us / bucket_us + (horizon_us % bucket_us != 0 ? 1 : 0);
  if (n > kPreviewMaxBuckets) {
    return Error{ErrorCode::out_of_range, "at most 100000 buckets: horizon_usec / bucket_usec gives " + std::to_string(n)};
  }
  return std::nullopt;
}

Outcome<PreviewResult> run_preview(const BoardParams& board, const CoreState& live, const PreviewRequest& req,
                                   const std::atomic<bool>* cancel) {
  using Out = Outcome<PreviewResult>;
  if (auto e = check_preview_limits(static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_usec(req.horizon))),
                                    static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_usec(req.bucket))))) {
    return Out::fail(e->code, e->message);
  }
  const Duration period = board.loop_period;
  if (period <= Duration{0}) return Out::fail(ErrorCode::invalid_state, "the loop period is not positive");

  // The copy: a new core with the live state, on the live state's clocks (nothing elapsed).
  const Now t0{live.mono, live.wall};
  auto core = std::make_unique<PumpCore>(board, t0);
  (void)core->restore_state(live, RestoreClock{t0, Duration{0}}, 0);
  core->drain_events([](const Event&) {});

  Out out;
  PreviewResult& res = out.value;
  bool truncated = false;
  auto keep = [&](const Event& e) {
    if (res.events.size() >= kPreviewMaxEvents) {
      truncated = true;
      return;
    }
    auto d = describe(e);
    res.events.push_back({e.when, std::move(d.type), std::move(d.detail)});
  };
  std::uint64_t cmd_id = 0;
  auto send = [&](Command c, Now now) {
    c.id = ++cmd_id;
    c.caller = {req.uid, true};
    return core->apply(c, now);
  };
  // The journal's budget (S7) is not the preview's business: enough for the horizon.
  (void)send({.kind = CommandKind::grant_budget, .steps = Steps{std::numeric_limits<std::int64_t>::max() / 4}}, t0);

  // What the reservoir pumps once the candidate is in force (the bridge's end).
  Concentration pumped = live.reservoir_conc;
  // The candidate, as LoadPrescription (or, for another solution, a refill) would apply it.
  if (req.plan != nullptr) {
    const TherapyPlan& p = *req.plan;
    // Another solution: another drug or concentration, of the primary or of the admixture.
    const bool other_solution = live.plan && live.reservoir > uL(0) && !same_solution(*live.plan, p);
    if (!other_solution) {
      if (!live.plan || live.reservoir <= uL(0)) pumped = p.concentration;
      const Reply r = send({.kind = CommandKind::load_prescription, .plan = &p}, t0);
      if (!r.ok()) return Out::fail(error_code(r.refusal), std::string(r.message.view()));
    } else {
      pumped = p.concentration;
      const bool was_infusing = core->state() == PumpState::infusing;
      if (was_infusing) {
        const Reply r = send({.kind = CommandKind::suspend}, t0);
        if (!r.ok()) return Out::fail(refused(r).code, refused(r).message);
      }
      const Reply r = send({.kind = CommandKind::refill, .plan = &p, .volume = p.reservoir_capacity,
                            .withdrawn = live.reservoir}, t0);
      if (!r.ok()) return Out::fail(refused(r).code, "a new solution is applied as a refill: " + refused(r).message);
      if (was_infusing) (void)send({.kind = CommandKind::resume}, t0);  // a refusal shows in the events
    }
  } else if (!live.plan) {
    return Out::fail(ErrorCode::invalid_state, "no prescription is loaded: give the prescription to preview");
  }
  core->drain_events(keep);

  // Patient boluses: the lockout, the count per 24 h and the running bolus, from the
  // copied history and the boluses this preview takes.
  const TherapyPlan* plan = core->plan();
  const bool boluses = req.with_patient_boluses && plan != nullptr && plan->patient_bolus.has_value();
  std::deque<MonoTime> starts(live.patient_starts.begin(), live.patient_starts.end());
  const auto cycle_at = [&](MonoTime t) -> std::int64_t {
    const Duration d = t - t0.mono;
    if (d <= Duration{0}) return 0;
    return (d.count() + period.count() - 1) / period.count();
  };
  const auto next_allowed = [&](MonoTime t) {
    const PatientBolusRule& rule = *plan->patient_bolus;
    while (!starts.empty() && starts.front() <= t - days(1)) starts.pop_front();
    MonoTime x = t;
    if (!starts.empty()) x = std::max({x, starts.back() + rule.lockout, starts.back() + rule.duration});
    if (rule.max_per_day > 0 && starts.size() >= rule.max_per_day) x = std::max(x, starts[starts.size() - rule.max_per_day] + days(1));
    return x;
  };
  constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
  std::int64_t attempt = boluses ? cycle_at(next_allowed(t0.mono)) : kNever;

  const std::int64_t total = req.horizon / period;
  const std::int64_t nbuckets = (req.horizon.count() + req.bucket.count() - 1) / req.bucket.count();
  res.buckets.reserve(static_cast<std::size_t>(nbuckets));
  auto bucket_end = [&](std::int64_t k) {
    return std::min(total, ((k + 1) * req.bucket.count()) / period.count());
  };

  IdealPlant plant;
  Now now = t0;
  std::int64_t n = 0;
  std::int64_t k = 0;
  Mass mass0 = live.total_mass;
  Volume vol0 = live.total_volume;
  bool bridge = plan != nullptr && in_bridge(*core, pumped);
  Mass bridge_mass;

  while (k < nbuckets) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
      return Out::fail(ErrorCode::invalid_state, "the preview was cancelled: the pump daemon is shutting down");
    }
    if (attempt != kNever && attempt <= n) attempt = n + 1;
    if (attempt == n + 1 && n < total) {
      const Now at{now.mono + period, now.wall + period};
      const Reply r = send({.kind = CommandKind::patient_bolus}, at);
      if (r.ok()) {
        starts.push_back(at.mono);
        ++res.boluses_taken;
        core->drain_events(keep);
        attempt = std::max(n + 2, cycle_at(next_allowed(at.mono)));
      } else {
        core->drain_events([](const Event&) {});  // the preview's own asking, not the pump's
        attempt = std::max(n + 2, cycle_at(std::max(next_allowed(at.mono), at.mono + kRetry)));
      }
    }
    const std::int64_t target = std::min(bucket_end(k), std::max(n + 1, attempt == kNever ? kNever : attempt - 1));
    while (n < target) {
      const FastForward r = core->fast_forward(now, period, target - n, plant);
      n += r.cycles;
      now = r.now;
      res.iterations += r.iterations();
      core->drain_events(keep);
    }
    if (n < bucket_end(k)) continue;
    const Status& s = core->status();
    PreviewBucket b;
    b.start = t0.wall + req.bucket * k;
    b.tip_mass = s.total_delivered_mass - mass0;
    b.pump_volume = s.total_pumped_volume - vol0;
    b.reservoir_end = s.reservoir;
    b.rolling_24h_end = s.delivered_24h;
    mass0 = s.total_delivered_mass;
    vol0 = s.total_pumped_volume;
    res.buckets.push_back(b);
    if (bridge) {
      bridge_mass += b.tip_mass;
      if (!in_bridge(*core, s.concentration)) {
        bridge = false;
        const double h = static_cast<double>(to_usec(now.wall - t0.wall)) / 3.6e9;
        char buf[200];
        (void)std::snprintf(buf, sizeof buf,
                            "the new solution reaches the catheter tip: bridge of %.1f h (to the end of its bucket); "
                            "%.1f mcg at the tip through it",
                            h, to_mcg(bridge_mass));
        if (res.events.size() < kPreviewMaxEvents) res.events.push_back({now.wall, "bridge_end", buf});
      }
    }
    ++k;
  }
  if (truncated) {
    res.events.push_back({now.wall, "preview_truncated",
                          "more than " + std::to_string(kPreviewMaxEvents) + " events: the rest are not listed"});
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The worker

struct PreviewRunner::Job {
  BoardParams board;
  std::unique_ptr<CoreState> live;
  std::unique_ptr<TherapyPlan> plan;
  PreviewRequest req;
  Done done;
  Outcome<PreviewResult> result;
};

PreviewRunner::PreviewRunner() = default;

PreviewRunner::~PreviewRunner() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    wake_ = nullptr;
  }
  cancel_.store(true);
  cv_.notify_all();
  if (started_) (void)pthread_join(static_cast<pthread_t>(thread_), nullptr);
}

void PreviewRunner::set_wake(std::function<void()> wake) {
  const std::lock_guard<std::mutex> lock(mu_);
  wake_ = std::move(wake);
}

bool PreviewRunner::admit() {
  const std::lock_guard<std::mutex> lock(mu_);
  if (admitted_ >= kMaxAdmitted) return false;
  ++admitted_;
  return true;
}

void PreviewRunner::release() {
  const std::lock_guard<std::mutex> lock(mu_);
  if (admitted_ > 0) --admitted_;
}

std::size_t PreviewRunner::in_flight() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return admitted_;
}

void* PreviewRunner::thread_main(void* self) {
  // Below the bus thread: a preview never competes with a D-Bus reply (the dosing thread
  // is SCHED_FIFO on its own CPU anyway).
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kWorkerNice);
  static_cast<PreviewRunner*>(self)->work();
  return nullptr;
}

void PreviewRunner::submit(const BoardParams& board, std::unique_ptr<CoreState> live, std::unique_ptr<TherapyPlan> plan,
                           PreviewRequest req, Done done) {
  auto job = std::make_unique<Job>();
  job->board = board;
  job->live = std::move(live);
  job->plan = std::move(plan);
  job->req = req;
  job->req.plan = job->plan.get();
  job->done = std::move(done);
  std::unique_lock<std::mutex> lock(mu_);
  if (!started_) {
    pthread_attr_t attr;
    (void)pthread_attr_init(&attr);
    (void)pthread_attr_setstacksize(&attr, kWorkerStack);
    pthread_t t{};
    const int r = pthread_create(&t, &attr, &PreviewRunner::thread_main, this);
    (void)pthread_attr_destroy(&attr);
    if (r != 0) {
      if (admitted_ > 0) --admitted_;
      lock.unlock();
      job->done(Outcome<PreviewResult>::fail(ErrorCode::invalid_state, "cannot start the preview worker thread"));
      return;
    }
    thread_ = static_cast<unsigned long>(t);
    started_ = true;
  }
  waiting_.push_back(std::move(job));
  lock.unlock();
  cv_.notify_one();
}

void PreviewRunner::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !waiting_.empty(); });
    if (stop_) return;
    std::unique_ptr<Job> job = std::move(waiting_.front());
    waiting_.pop_front();
    lock.unlock();
    job->result = run_preview(job->board, *job->live, job->req, &cancel_);
    job->live.reset();
    lock.lock();
    finished_.push_back(std::move(job));
    if (wake_) wake_();
  }
}

std::size_t PreviewRunner::take() {
  std::deque<std::unique_ptr<Job>> done;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    done.swap(finished_);
    admitted_ -= std::min(admitted_, done.size());
  }
  for (auto& j : done) j->done(j->result);
  return done.size();
}

}  // namespace thecal::app
