// Shared by the journal tests: a temp dir, and a journal written by the real keeper from a
// real dosing core that delivered basal and boluses.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "app/journal_keeper.hpp"
#include "io/atomic_file.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal::test {

struct JTempDir {
  std::string path;
  JTempDir() {
    char tmpl[] = "/tmp/thecal-journal-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~JTempDir() { std::filesystem::remove_all(path); }
  JTempDir(const JTempDir&) = delete;
  JTempDir& operator=(const JTempDir&) = delete;
};

inline TherapyPlan bolus_plan() {
  TherapyPlan p = continuous_plan(mg_per_day(1.5), mg_per_mL(10), mg(3));
  p.patient_bolus = PatientBolusRule{mg(0.1), minutes(10), hours(3), 4};
  return p;
}

/// Writes a journal like the daemon does: a rewrite at start, then checkpoints with
/// reservations every 10 simulated minutes and events in between.
struct JournalFixture {
  JTempDir dir;
  Harness h;
  app::JournalKeeper keeper{io::real_file_ops(), dir.path, h.board, "/proc/sys/kernel/random/boot_id"};
  TherapyPlan plan = bolus_plan();

  void build(int checkpoints = 6) {
    h.ready(plan);
    (void)keeper.recover();
    CoreState s;
    h.core->export_state(s, h.now);
    ASSERT_FALSE(keeper.rewrite(s, s.steps_issued + 40, {}));
    for (int i = 0; i < checkpoints; ++i) {
      if (i == 2) {
        ASSERT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
      }
      h.run(minutes(10), seconds(1));
      keeper.add_event({to_usec(h.now.wall), "test_event", "pump", "checkpoint " + std::to_string(i)});
      h.core->export_state(s, h.now);
      ASSERT_FALSE(keeper.checkpoint(s, s.steps_issued + 40));
    }
  }
  [[nodiscard]] std::string bytes() const { return *io::read_file(dir.path + "/journal"); }
};

}  // namespace thecal::test
