// The pump service with no bus and no thread: app::PumpService on a synchronous dosing core
// (SyncChannel runs the real PumpCore one cycle at a time, in the order loop::DosingLoop
// does: commands, tick, events, status, replies), a real journal in a temp dir behind a
// FileOps that can fail on demand, and a made-up monotonic clock.  Nothing sleeps: a test
// runs cycles until the condition it waits for holds, with a bound on the cycles.
#pragma once

#include <cerrno>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/journal_keeper.hpp"
#include "app/pump_service.hpp"
#include "app/startup.hpp"
#include "config/drug_library.hpp"
#include "io/atomic_file.hpp"
#include "io/journal.hpp"
#include "tests/app/journal_test_util.hpp"

namespace thecal::test {

/// A continuous prescription fast enough for reservations to matter: 1.5 mg/day at 1 mg/mL
/// is 1500 uL/day, 6000 steps of 0.25 uL a day.
inline std::string continuous_yaml(const std::string& rate = "1.5 mg/day", const std::string& extra = "") {
  return "version: 1\npatient: APP-TEST\nphase: maintenance\ndrug:\n  name: morphine\n  concentration: 1 mg/mL\n"
         "reservoir:\n  capacity: 20 mL\n  low_alarm: 2 mL\ncatheter:\n  volume: 0.22 mL\ntimezone: Europe/Berlin\n"
         "basal:\n  mode: continuous\n  rate: " + rate + "\n" + extra + "limits:\n  max_daily_dose: 3 mg\n";
}

inline std::string bolus_yaml() {
  return continuous_yaml("1.5 mg/day", "patient_bolus:\n  dose: 0.1 mg\n  duration: 10 min\n  lockout: 3 h\n  max_per_day: 4\n");
}

/// The dosing thread, synchronously: the real core, the harness's plant (encoder pulses).
class SyncChannel final : public app::LoopChannel {
 public:
  static constexpr std::size_t kQueue = 64;  // as loop::DosingLoop's command queue

  [[nodiscard]] bool post(const Command& cmd) override {
    if (queue_.size() >= kQueue) return false;
    queue_.push_back(cmd);
    return true;
  }
  void drain_replies(const std::function<void(const Reply&)>& f) override {
    for (const auto& r : replies_) f(r);
    replies_.clear();
  }
  void drain_events(const std::function<void(const Event&)>& f) override {
    for (; drained_ < h.events.size(); ++drained_) f(h.events[drained_]);
  }
  bool latest_status(Status& out) override {
    if (!fresh_) return false;
    out = h.core->status();
    fresh_ = false;
    return true;
  }
  [[nodiscard]] Now now() const override { return h.now; }
  [[nodiscard]] loop::LoopDiagnostics diagnostics() const override { return diag; }
  std::uint64_t take_interval_max() override { return std::exchange(interval_max_ns, 0); }

  /// One dosing cycle of `dt`.
  void cycle(Duration dt) {
    std::vector<Reply> replies;
    while (!queue_.empty()) {
      replies.push_back(h.core->apply(queue_.front(), h.now));
      queue_.pop_front();
    }
    h.drain();
    h.cycle(dt);
    fresh_ = true;
    for (const auto& r : replies) replies_.push_back(r);
  }
  void hold_queue_full() {
    while (queue_.size() < kQueue) queue_.push_back(Command{.kind = CommandKind::export_state});
  }
  void drop_queue() { queue_.clear(); }

  Harness h;
  loop::LoopDiagnostics diag;
  std::uint64_t interval_max_ns = 0;

 private:
  std::deque<Command> queue_;
  std::vector<Reply> replies_;
  std::size_t drained_ = 0;
  bool fresh_ = false;
};

/// FileOps that fails writes or fsyncs on demand and remembers what was durable: the journal
/// file's bytes as of its last successful fsync (or directory fsync, after a rename).
class FailingOps final : public io::FileOps {
 public:
  explicit FailingOps(std::string journal_path) : path_(std::move(journal_path)) {}
  int write_errno = 0;  // e.g. ENOSPC
  int fsync_errno = 0;  // e.g. EIO
  ssize_t write(int fd, const void* buf, std::size_t n) override {
    if (write_errno != 0) return -write_errno;
    return io::FileOps::write(fd, buf, n);
  }
  int fsync(int fd) override {
    if (fsync_errno != 0) return -fsync_errno;
    const int r = io::FileOps::fsync(fd);
    if (r >= 0) snapshot();
    return r;
  }
  int fsync_dir(const std::string& dir) override {
    const int r = io::FileOps::fsync_dir(dir);
    if (r >= 0) snapshot();
    return r;
  }
  /// The highest reservation in the durable bytes (0 if none).
  [[nodiscard]] std::uint64_t durable_reservation() const {
    const io::JournalScan scan = io::scan_journal(durable_);
    std::uint64_t best = 0;
    for (const auto& rec : scan.records) {
      if (rec.type != io::RecordType::reserve) continue;
      if (auto rr = app::decode_reserve_payload(rec.payload)) best = std::max(best, rr->reserved);
    }
    return best;
  }

 private:
  void snapshot() {
    if (auto bytes = io::read_file(path_)) durable_ = std::move(*bytes);
  }
  std::string path_;
  std::string durable_;
};

/// What the D-Bus object would announce.
struct Announcements final : app::Listener {
  std::vector<std::pair<AlarmCode, std::string>> raised;
  std::vector<AlarmCode> cleared;
  int statuses = 0;
  int boluses_started = 0;
  void status_changed(const Status& /*s*/, bool /*urgent*/) override { ++statuses; }
  void alarm_raised(AlarmCode c, const std::string& m) override { raised.emplace_back(c, m); }
  void alarm_cleared(AlarmCode c) override { cleared.push_back(c); }
  void bolus_started(BolusSource /*s*/, Mass /*d*/) override { ++boluses_started; }
  void bolus_finished(BolusSource /*s*/, Mass /*d*/) override {}
};

inline config::DrugLibrary shipped_drugs() {
  auto lib = config::load_drug_library(std::string(THECAL_SOURCE_DIR) + "/config/drugs.yaml");
  EXPECT_TRUE(lib.library.has_value()) << config::format_all(lib.problems);
  return lib.library ? *lib.library : config::DrugLibrary{};
}

inline app::Identity clinician(std::uint32_t uid = 1000) { return {uid, true, false}; }
inline app::Identity patient(std::uint32_t uid = 1001) { return {uid, false, true}; }

/// One unit: service, journal, event log and history on a synchronous core.
struct Unit {
  JTempDir dir;
  SyncChannel loop;
  FailingOps ops{dir.path + "/journal"};
  app::EventLog events{50'000, false};
  app::DeliveryHistory history;
  app::JournalKeeper journal{ops, dir.path, loop.h.board, "/proc/sys/kernel/random/boot_id"};
  std::int64_t mono_us = 86'400'000'000;  // the service's "real" monotonic clock (a day of uptime)
  Announcements heard;
  app::Recovered recovered;
  std::unique_ptr<app::PumpService> service;

  Unit() {
    recovered = app::recover_state(journal, *loop.h.core, loop.h.now, events);
    events.on_append = [this](const app::LoggedEvent& e) { journal.add_event(e); };
    service = std::make_unique<app::PumpService>(
        app::PrescriptionStore(shipped_drugs(), loop.h.board, dir.path + "/prescription.yaml"),
        app::ServiceParts{&loop, nullptr, &events, &history, &journal, [this] { return mono_us; }});
    service->set_granted(recovered.granted_steps);
    service->set_listener(&heard);
  }

  /// Cycles of `dt` (the service polled after each, as the main thread does) for `d`.
  void run(Duration d, Duration dt = seconds(1), const std::function<void()>& each = {}) {
    const MonoTime end = loop.h.now.mono + d;
    while (loop.h.now.mono < end) {
      loop.cycle(std::min(dt, end - loop.h.now.mono));
      mono_us += to_usec(dt);
      service->poll();
      if (each) each();
    }
  }

  /// Makes a call and runs 1 ms cycles until it completes (at most `max_cycles`).
  app::CallResult call(const std::function<void(app::Completion)>& f, int max_cycles = 100) {
    std::optional<app::CallResult> got;
    f([&got](const app::CallResult& r) { got = r; });
    for (int i = 0; i < max_cycles && !got; ++i) {
      loop.cycle(msec(1));
      mono_us += 1000;
      service->poll();
    }
    EXPECT_TRUE(got.has_value()) << "the call did not complete within " << max_cycles << " cycles";
    return got.value_or(app::CallResult{app::Error{app::ErrorCode::invalid_state, "no reply"}});
  }

  /// Load `yaml`, fill 20 mL, prime the catheter and (optionally) start, each checked.
  void ready(const std::string& yaml, bool start = true) {
    auto& s = *service;
    ASSERT_TRUE(call([&](auto done) { s.load_prescription(clinician(), yaml, done); }).ok());
    ASSERT_TRUE(call([&](auto done) { s.refill(clinician(), uL(0), mL(20), "", done); }).ok());
    ASSERT_TRUE(call([&](auto done) { s.prime(clinician(), uL(220), done); }).ok());
    run(minutes(15));  // 220 uL at 1 mL/h
    ASSERT_EQ(s.status().state, PumpState::idle);
    ASSERT_TRUE(s.status().catheter_primed);
    if (start) {
      ASSERT_TRUE(call([&](auto done) { s.start(clinician(), done); }).ok());
      ASSERT_EQ(s.status().state, PumpState::infusing);
    }
  }

  [[nodiscard]] bool alarm(AlarmCode c) const { return service->status().alarms[static_cast<std::size_t>(c)].active; }
  [[nodiscard]] std::size_t logged(const std::string& type) const {
    std::size_t n = 0;
    for (const auto& e : events.since(0, 1'000'000)) n += e.type == type ? 1 : 0;
    return n;
  }
};

}  // namespace thecal::test
