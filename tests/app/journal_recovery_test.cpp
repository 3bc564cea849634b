// Recovery in the style of database engines: every truncation offset of the last records,
// random bit flips, a zero-filled tail, a duplicated record, a newer version, a missing
// journal.  Each is detected, named, and safe: the pump never starts from zero, never
// under-counts a reservation that was durable, and never resumes by itself.
#include <random>

#include <gtest/gtest.h>

#include "tests/app/journal_test_util.hpp"

namespace thecal::test {
namespace {

using app::interpret;
using app::Recovery;
using io::JournalProblem;

/// Offsets where each record starts, and the highest reservation complete before each.
struct Layout {
  std::vector<std::size_t> starts;
  std::vector<std::uint64_t> reserved_before;  // per record start
  std::vector<std::uint64_t> issued_before;    // steps in the last complete state
};

Layout layout_of(const std::string& f) {
  Layout l;
  const auto s = io::scan_journal(f);
  std::size_t pos = io::kJournalHeaderSize;
  std::uint64_t reserved = 0;
  std::uint64_t issued = 0;
  for (const auto& r : s.records) {
    l.starts.push_back(pos);
    l.reserved_before.push_back(reserved);
    l.issued_before.push_back(issued);
    if (r.type == io::RecordType::reserve) reserved = std::max(reserved, app::decode_reserve_payload(r.payload)->reserved);
    if (r.type == io::RecordType::state) issued = app::decode_state_payload(r.payload, nullptr)->second.steps_issued;
    pos += io::kRecordHeaderSize + r.payload.size();
  }
  l.starts.push_back(pos);
  l.reserved_before.push_back(reserved);
  l.issued_before.push_back(issued);
  return l;
}

TEST(JournalRecovery, AnIntactJournalRestoresAndCountsTheReservation) {
  JournalFixture fx;
  fx.build();
  const auto rec = interpret(io::scan_journal(fx.bytes()), true);
  ASSERT_EQ(rec.kind, Recovery::Kind::restored) << rec.explanation;
  ASSERT_TRUE(rec.state);
  EXPECT_EQ(rec.state->state, PumpState::infusing);
  EXPECT_EQ(rec.state->patient_starts.size(), 1u);
  EXPECT_EQ(rec.unconfirmed, 40);
  EXPECT_EQ(rec.reserved, rec.state->steps_issued + 40);
  EXPECT_EQ(rec.events.size(), 6u);
}

TEST(JournalRecovery, EveryTruncationOffsetOfTheLastRecordsIsDetectedAndSafe) {
  JournalFixture fx;
  fx.build();
  const std::string f = fx.bytes();
  const Layout l = layout_of(f);
  ASSERT_GE(l.starts.size(), 5u);
  // The last three records (event, state, reserve): every offset inside them.
  const std::size_t from = l.starts[l.starts.size() - 4];
  std::size_t checked = 0;
  for (std::size_t cut = from; cut < f.size(); ++cut) {
    const auto scan = io::scan_journal(std::string_view(f).substr(0, cut));
    // Which records are complete at this cut?
    std::size_t complete = 0;
    while (complete + 1 < l.starts.size() && l.starts[complete + 1] <= cut) ++complete;
    const bool on_boundary = l.starts[complete] == cut;
    if (on_boundary) {
      ASSERT_EQ(scan.problem, JournalProblem::none) << cut;
    } else {
      ASSERT_EQ(scan.problem, JournalProblem::torn_tail) << "cut at " << cut << ": " << scan.message;
      ASSERT_EQ(scan.problem_offset, l.starts[complete]);
    }
    ASSERT_EQ(scan.records.size(), complete) << cut;
    const auto rec = interpret(scan, true);
    ASSERT_TRUE(rec.state) << cut;
    if (!on_boundary) {
      ASSERT_EQ(rec.kind, Recovery::Kind::lost) << cut;
      ASSERT_NE(rec.explanation.find("torn_tail"), std::string::npos) << rec.explanation;
    }
    // Never an under-count: every reservation that was complete on disk is counted.
    ASSERT_EQ(rec.state->steps_issued + static_cast<std::uint64_t>(rec.unconfirmed),
              std::max(l.reserved_before[complete], l.issued_before[complete])) << cut;
    ++checked;
  }
  EXPECT_GT(checked, 100u);
}

TEST(JournalRecovery, RandomBitFlipsAreAlwaysDetected) {
  JournalFixture fx;
  fx.build(3);
  const std::string f = fx.bytes();
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::size_t> pos(0, f.size() - 1);
  std::uniform_int_distribution<int> bit(0, 7);
  for (int i = 0; i < 2000; ++i) {
    std::string g = f;
    const std::size_t p = pos(rng);
    g[p] = static_cast<char>(g[p] ^ (1 << bit(rng)));
    const auto scan = io::scan_journal(g);
    ASSERT_NE(scan.problem, JournalProblem::none) << "flip at " << p;
    ASSERT_FALSE(scan.message.empty());
    const auto rec = interpret(scan, true);
    ASSERT_EQ(rec.kind, Recovery::Kind::lost) << "flip at " << p;
    ASSERT_FALSE(rec.explanation.empty());
  }
}

TEST(JournalRecovery, AZeroFilledTailIsNamedAndTheStateBeforeItIsKept) {
  JournalFixture fx;
  fx.build(3);
  const std::string f = fx.bytes();
  const auto full = interpret(io::scan_journal(f), true);
  for (std::size_t zeros : {1u, 16u, 17u, 4096u}) {
    const auto scan = io::scan_journal(f + std::string(zeros, '\0'));
    EXPECT_EQ(scan.problem, JournalProblem::zero_tail) << zeros << ": " << scan.message;
    const auto rec = interpret(scan, true);
    EXPECT_EQ(rec.kind, Recovery::Kind::lost);
    EXPECT_EQ(rec.reserved, full.reserved);
  }
}

TEST(JournalRecovery, ADuplicatedRecordIsNamed) {
  JournalFixture fx;
  fx.build(3);
  const std::string f = fx.bytes();
  const Layout l = layout_of(f);
  const std::string last = f.substr(l.starts[l.starts.size() - 2]);
  const auto scan = io::scan_journal(f + last);
  EXPECT_EQ(scan.problem, JournalProblem::duplicate_record) << scan.message;
  const auto rec = interpret(scan, true);
  EXPECT_EQ(rec.kind, Recovery::Kind::lost);
  EXPECT_NE(rec.explanation.find("duplicate_record"), std::string::npos);
  // A record from elsewhere in the journal re-appearing (sequence going back) too.
  const std::string first = f.substr(l.starts[0], l.starts[1] - l.starts[0]);
  EXPECT_EQ(io::scan_journal(f + first).problem, JournalProblem::duplicate_record);
}

TEST(JournalRecovery, AJournalFromANewerVersionIsRefusedWhole) {
  JournalFixture fx;
  fx.build(2);
  std::string f = fx.bytes();
  f.replace(0, io::kJournalHeaderSize, io::journal_header(io::kJournalFormat + 1));
  const auto scan = io::scan_journal(f);
  EXPECT_EQ(scan.problem, JournalProblem::newer_version);
  EXPECT_TRUE(scan.records.empty());
  const auto rec = interpret(scan, true);
  EXPECT_EQ(rec.kind, Recovery::Kind::lost);
  EXPECT_FALSE(rec.state);
  EXPECT_NE(rec.explanation.find("newer"), std::string::npos) << rec.explanation;
}

TEST(JournalRecovery, AMissingJournalIsLostOnlyIfTheUnitRanBefore) {
  EXPECT_EQ(interpret(std::nullopt, false).kind, Recovery::Kind::fresh);
  const auto rec = interpret(std::nullopt, true);
  EXPECT_EQ(rec.kind, Recovery::Kind::lost);
  EXPECT_EQ(rec.problem, JournalProblem::missing);
  EXPECT_NE(rec.explanation.find("missing"), std::string::npos);
}

TEST(JournalRecovery, TheKeeperKeepsADamagedJournalAsideAndTheMarkerMakesAMissingOneLost) {
  JournalFixture fx;
  fx.build(2);
  std::string f = fx.bytes();
  f.resize(f.size() - 3);
  ASSERT_FALSE(io::write_atomic(fx.dir.path + "/journal", f));
  app::JournalKeeper again(io::real_file_ops(), fx.dir.path, fx.h.board, "/proc/sys/kernel/random/boot_id");
  auto rec = again.recover();
  EXPECT_EQ(rec.kind, Recovery::Kind::lost);
  EXPECT_TRUE(std::filesystem::exists(fx.dir.path + "/journal.damaged-1"));
  EXPECT_NE(rec.explanation.find("journal.damaged-1"), std::string::npos) << rec.explanation;
  // The marker is still there: with the journal gone, the next start is a lost state.
  app::JournalKeeper third(io::real_file_ops(), fx.dir.path, fx.h.board, "/proc/sys/kernel/random/boot_id");
  rec = third.recover();
  EXPECT_EQ(rec.kind, Recovery::Kind::lost);
  EXPECT_EQ(rec.problem, JournalProblem::missing);
}

}  // namespace
}  // namespace thecal::test
