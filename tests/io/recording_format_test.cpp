// The flight recorder's file format and store (io/recording): round trip of every record
// kind, a torn tail at every byte, a corrupt record, a wrong header or version, the end
// record's count, the store's torn-tail repair, retention bound and windows.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "io/journal.hpp"
#include "io/recording.hpp"
#include "control/pump_core.hpp"

namespace thecal::io {
namespace {

TherapyPlan plan() {
  TherapyPlan p;
  p.id = "abc";
  p.drug = "morphine";
  p.concentration = mg_per_mL(10);
  p.reservoir_capacity = mL(20);
  p.low_alarm = mL(2);
  p.catheter_volume = uL(220);
  p.basal_mode = BasalMode::continuous;
  p.continuous_rate = mg_per_day(1.5);
  p.max_daily_dose = mg(3);
  return p;
}

constexpr Now kT0{mono_us(5'000'000), wall_us(1'790'000'000'000'000)};

std::string sample_recording(std::uint64_t& records) {
  BoardParams b;
  b.volume_per_step = uL(0.3);
  CoreState s;
  s.state = PumpState::suspended;
  s.reservoir = uL(1234.5);
  std::string out = recording_header() + encode_start(b, kT0, 77, s, 3);
  LoopInput c;
  c.kind = RecKind::clock;
  c.cycle = 0;
  c.digest = 42;
  c.now = Now{kT0.mono + msec(1), kT0.wall + msec(1)};
  c.period = msec(1);
  out += encode_input(c);
  const TherapyPlan p = plan();
  LoopInput cmd;
  cmd.kind = RecKind::command;
  cmd.cycle = 9;
  cmd.cmd.kind = CommandKind::refill;
  cmd.cmd.caller = {1000, true};
  cmd.cmd.volume = uL(20000);
  cmd.cmd.withdrawn = uL(12.5);
  cmd.cmd.plan = &p;
  cmd.reply.refusal = Refusal::out_of_range;
  out += encode_input(cmd);
  LoopInput sen;
  sen.kind = RecKind::sensors;
  sen.cycle = 12;
  sen.in.occlusion = true;
  sen.in.encoder_pulses = 99;
  out += encode_input(sen);
  Event e;
  e.type = EventType::alarm_raised;
  e.mono = kT0.mono + msec(13);
  e.when = kT0.wall + msec(13);
  out += encode_event(e);
  records = 5;
  return out;
}

TEST(RecordingFormat, EveryEventTypeScansAndOneBeyondTheLastIsRefused) {
  // Issue 17's events (refill_begun .. risk_event: S14's 48 h mark) are recorded like the
  // others; a recording holding one must scan (and so replay) past it.
  for (auto t = static_cast<int>(EventType::state_changed); t <= static_cast<int>(kLastEventType); ++t) {
    Event e;
    e.type = static_cast<EventType>(t);
    e.index = kRiskLongStop;
    e.mono = kT0.mono + msec(5);
    e.when = kT0.wall + msec(5);
    const Scan s = scan_recording(recording_header() + encode_event(e) + encode_end(1));
    ASSERT_EQ(s.problem, "") << to_string(e.type);
    ASSERT_EQ(s.records.size(), 1U) << to_string(e.type);
    EXPECT_EQ(s.records[0].event_type, e.type);
  }
  Event beyond;
  beyond.type = static_cast<EventType>(static_cast<int>(kLastEventType) + 1);
  const Scan s = scan_recording(recording_header() + encode_event(beyond) + encode_end(1));
  EXPECT_NE(s.problem.find("unknown event type"), std::string::npos) << s.problem;
  EXPECT_TRUE(s.records.empty());
}

TEST(RecordingFormat, EveryKindRoundTrips) {
  std::uint64_t n = 0;
  const std::string bytes = sample_recording(n) + encode_end(5);
  const Scan s = scan_recording(bytes);
  ASSERT_EQ(s.problem, "");
  ASSERT_TRUE(s.has_end);
  ASSERT_EQ(s.records.size(), n);
  EXPECT_EQ(s.records[0].kind, RecKind::start);
  EXPECT_EQ(s.records[0].budget, 77);
  EXPECT_EQ(s.records[0].events_before, 3U);
  EXPECT_EQ(s.records[0].board.volume_per_step, uL(0.3));
  EXPECT_EQ(s.records[0].state->state, PumpState::suspended);
  EXPECT_EQ(s.records[0].state->reservoir, uL(1234.5));
  EXPECT_EQ(s.records[1].kind, RecKind::clock);
  EXPECT_EQ(s.records[1].digest, 42U);
  EXPECT_EQ(s.records[1].now.wall, kT0.wall + msec(1));
  EXPECT_EQ(s.records[1].period, msec(1));
  const Recorded& c = s.records[2];
  EXPECT_EQ(c.kind, RecKind::command);
  EXPECT_EQ(c.cycle, 9U);
  EXPECT_EQ(c.cmd.kind, CommandKind::refill);
  EXPECT_EQ(c.cmd.caller.uid, 1000U);
  EXPECT_TRUE(c.cmd.caller.clinician);
  EXPECT_EQ(c.cmd.withdrawn, uL(12.5));
  ASSERT_TRUE(c.plan != nullptr);
  EXPECT_EQ(c.plan->continuous_rate, mg_per_day(1.5));
  EXPECT_EQ(c.plan->drug.view(), "morphine");
  EXPECT_EQ(c.reply.refusal, Refusal::out_of_range);
  EXPECT_TRUE(s.records[3].in.occlusion);
  EXPECT_FALSE(s.records[3].in.disconnect);
  EXPECT_EQ(s.records[3].in.encoder_pulses, 99U);
  EXPECT_EQ(s.records[4].event_type, EventType::alarm_raised);
  EXPECT_EQ(s.records[4].now.mono, kT0.mono + msec(13));
}

TEST(RecordingFormat, ATornTailAtEveryByteKeepsTheWholeRecordsBeforeIt) {
  std::uint64_t n = 0;
  const std::string whole = sample_recording(n);
  const Scan full = scan_recording(whole);
  ASSERT_EQ(full.records.size(), n);
  const std::size_t last = full.offsets.back();
  for (std::size_t cut = last + 1; cut < whole.size(); ++cut) {
    const Scan s = scan_recording(std::string_view(whole).substr(0, cut));
    ASSERT_EQ(s.records.size(), n - 1) << "cut at " << cut;
    EXPECT_EQ(s.valid_bytes, last);
    EXPECT_NE(s.problem.find("torn"), std::string::npos) << s.problem;
    EXPECT_FALSE(s.has_end);
  }
}

TEST(RecordingFormat, ACorruptRecordEndsTheScanAndIsNamed) {
  std::uint64_t n = 0;
  std::string bytes = sample_recording(n);
  const Scan full = scan_recording(bytes);
  bytes[full.offsets[2] + 12] ^= 0x10;  // inside record 2's payload
  const Scan s = scan_recording(bytes);
  EXPECT_EQ(s.records.size(), 2U);
  EXPECT_EQ(s.problem, "bad checksum in record 2 at byte " + std::to_string(full.offsets[2]));
}

TEST(RecordingFormat, AWrongHeaderOrVersionGivesNoRecords) {
  std::uint64_t n = 0;
  std::string bytes = sample_recording(n);
  std::string other = bytes;
  other[0] = 'X';
  EXPECT_TRUE(scan_recording(other).records.empty());
  EXPECT_NE(scan_recording(other).problem.find("not a thecal recording"), std::string::npos);
  // Version 3 with a valid header checksum: named as newer.
  auto with_version = [&](char v) {
    std::string out = bytes;
    out[8] = v;
    const std::uint32_t crc = crc32c(std::string_view(out).substr(0, 12));
    for (int i = 0; i < 4; ++i) out[12 + i] = static_cast<char>(crc >> (8 * i));
    return out;
  };
  const Scan s = scan_recording(with_version(3));
  EXPECT_TRUE(s.records.empty());
  EXPECT_EQ(s.problem, "recording format 3 is not 2 (written by a newer thecald)");
  // Format 1 (before snapshots; the same records) is still read whole.
  const Scan v1 = scan_recording(with_version(1));
  EXPECT_EQ(v1.problem, "");
  EXPECT_EQ(v1.records.size(), n);
}

TEST(RecordingFormat, AnEndRecordThatMiscountsIsReported) {
  std::uint64_t n = 0;
  const Scan s = scan_recording(sample_recording(n) + encode_end(4));
  EXPECT_FALSE(s.has_end);
  EXPECT_EQ(s.problem, "the end record counts 4 records, not 5");
}

class RecordingStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thecal-rec-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static std::string start(WallTime w) {
    CoreState s;
    return encode_start(BoardParams{}, Now{mono_us(1'000'000), w}, 0, s);
  }
  static std::string clock(std::uint64_t cycle, WallTime w, Duration period) {
    LoopInput c;
    c.kind = RecKind::clock;
    c.cycle = cycle;
    c.now = Now{mono_us(2'000'000), w};
    c.period = period;
    return encode_input(c);
  }
  std::string dir_;
};

TEST_F(RecordingStoreTest, SegmentsOlderThanKeepAreRemovedWholeAndYoungerOnesKept) {
  const WallTime t0 = wall_us(1'790'000'000'000'000);
  {
    RecordingStore a(dir_ + "/rec", days(90));
    ASSERT_EQ(a.begin(t0, start(t0)), std::nullopt);
    a.append(clock(0, t0 + seconds(1), seconds(1)));
    ASSERT_EQ(a.sync(), std::nullopt);
    EXPECT_EQ(a.syncs(), 1U);
  }
  {
    RecordingStore b(dir_ + "/rec", days(90));
    ASSERT_EQ(b.begin(t0 + days(60), start(t0 + days(60))), std::nullopt);
    EXPECT_EQ(b.segments().size(), 2U);  // 60 d old: kept
  }
  RecordingStore c(dir_ + "/rec", days(90));
  ASSERT_EQ(c.begin(t0 + days(91), start(t0 + days(91))), std::nullopt);
  const auto segs = c.segments();
  ASSERT_EQ(segs.size(), 2U);  // the first ended 91 d ago: gone
  EXPECT_NE(segs.front().find(std::to_string(to_usec(t0 + days(60)))), std::string::npos);
}

TEST_F(RecordingStoreTest, ATornTailIsCutAtTheNextStartAndAWindowIsSelfContained) {
  const WallTime t0 = wall_us(1'790'000'000'000'000);
  std::string first;
  {
    RecordingStore a(dir_, days(90));
    ASSERT_EQ(a.begin(t0, start(t0)), std::nullopt);
    for (std::uint64_t k = 1; k <= 10; ++k) a.append(clock(k * 100, t0 + seconds(static_cast<std::int64_t>(k) * 100), seconds(1)));
    ASSERT_EQ(a.flush(), std::nullopt);
    first = a.segments().front();
  }
  // A crash in the middle of the last record.
  const auto size = std::filesystem::file_size(first);
  std::filesystem::resize_file(first, size - 5);
  RecordingStore b(dir_, days(90));
  ASSERT_EQ(b.begin(t0 + hours(1), start(t0 + hours(1))), std::nullopt);
  std::ifstream in(first, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Scan repaired = scan_recording(data);
  EXPECT_EQ(repaired.problem, "");
  EXPECT_EQ(repaired.records.size(), 10U);  // start + 9 whole clock records
  EXPECT_EQ(data.size(), repaired.valid_bytes);

  // [t0 + 250 s, t0 + 450 s]: the first run from its start to the record at 400 s.
  const Scan w = scan_recording(b.window(t0 + seconds(250), t0 + seconds(450)));
  EXPECT_TRUE(w.has_end) << w.problem;
  ASSERT_EQ(w.records.size(), 5U);
  EXPECT_EQ(w.records.front().kind, RecKind::start);
  EXPECT_EQ(w.records.back().now.wall, t0 + seconds(400));
  // A window that covers both runs has both starts; one before everything is empty.
  const Scan both = scan_recording(b.window(t0, t0 + hours(2)));
  EXPECT_TRUE(both.has_end);
  EXPECT_EQ(both.records.size(), 11U);
  const Scan none = scan_recording(b.window(t0 - days(2), t0 - days(1)));
  EXPECT_TRUE(none.has_end);
  EXPECT_TRUE(none.records.empty());
}

// Rotation within one long run (issue 15): a segment a day, each from a snapshot, and
// `keep` removes the old ones while the run goes on (simulated days, real files); a window
// then starts at the last snapshot at or before `from`.
TEST_F(RecordingStoreTest, RotationWithinOneLongRunAndKeepRemoveOldSegments) {
  const WallTime t0 = wall_us(1'790'000'000'000'000);
  BoardParams board;
  PumpCore core(board, Now{mono_us(1'000'000), t0});
  auto image = std::make_unique<CoreImage>();
  ASSERT_TRUE(core.export_image(*image));
  auto snapshot = [&](std::uint64_t cycle, WallTime w) {
    LoopInput in;
    in.kind = RecKind::snapshot;
    in.cycle = cycle;
    in.now = Now{mono_us(1'000'000) + (w - t0), w};
    in.period = seconds(1);
    in.image = image.get();
    return encode_snapshot(board, in);
  };
  RecordingStore st(dir_ + "/rec", days(3));
  ASSERT_EQ(st.begin(t0, start(t0)), std::nullopt);
  std::uint64_t cycle = 0;
  std::size_t most = 0;
  for (std::int64_t day = 0; day < 10; ++day) {
    for (int h = 1; h < 24; ++h) {
      cycle += 3600;
      st.append(clock(cycle, t0 + days(day) + hours(h), seconds(1)));
    }
    const std::uint64_t syncs = st.syncs();
    ASSERT_EQ(st.rotate(t0 + days(day + 1), snapshot(cycle + 3600, t0 + days(day + 1))), std::nullopt);
    cycle += 3600;
    ASSERT_EQ(st.sync(), std::nullopt);
    EXPECT_EQ(st.syncs(), syncs + 2) << "the segment before and the new one, with the journal's fsync";
    most = std::max(most, st.segments().size());
  }
  // keep 3 d: the open segment, the three days before it, and the one that ended exactly
  // 3 d ago; never more, while the run went on for 10 days (the first 6 days are gone).
  const auto segs = st.segments();
  EXPECT_EQ(segs.size(), 5U);
  EXPECT_LE(most, 5U);
  EXPECT_NE(segs.front().find(std::to_string(to_usec(t0 + days(6)))), std::string::npos) << segs.front();
  // Each closed segment reads alone: its snapshot first, its 23 clock records.
  std::ifstream in(segs[1], std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Scan one = scan_recording(data);
  EXPECT_EQ(one.problem, "");
  ASSERT_EQ(one.records.size(), 24U);
  EXPECT_EQ(one.records.front().kind, RecKind::snapshot);
  ASSERT_TRUE(one.records.front().image);

  // A window in the middle of a day starts at that day's snapshot, not at the run's start.
  const WallTime from = t0 + days(8) + hours(13);
  const Scan w = scan_recording(st.window(from, from + hours(30)));
  EXPECT_TRUE(w.has_end) << w.problem;
  ASSERT_FALSE(w.records.empty());
  EXPECT_EQ(w.records.front().kind, RecKind::snapshot);
  EXPECT_EQ(w.records.front().now.wall, t0 + days(8));
  const auto walls = record_walls(w.records);
  EXPECT_LE(walls.front(), from);
  EXPECT_GE(walls.front(), from - kSegmentSpan);
  EXPECT_LE(walls.back(), from + hours(30));
  EXPECT_EQ(w.records.size(), 24U + 20U);  // day 8 whole; day 9's snapshot and its first 19 hours
}

TEST_F(RecordingStoreTest, ARotationThatCannotCreateItsFileGoesOnInTheSameSegment) {
  const WallTime t0 = wall_us(1'790'000'000'000'000);
  RecordingStore st(dir_ + "/rec", days(3));
  ASSERT_EQ(st.begin(t0, start(t0)), std::nullopt);
  ASSERT_EQ(::chmod((dir_ + "/rec").c_str(), 0500), 0);
  const bool root = ::geteuid() == 0;
  const auto err = st.rotate(t0 + days(1), start(t0 + days(1)));
  ASSERT_EQ(::chmod((dir_ + "/rec").c_str(), 0750), 0);
  if (root) {
    EXPECT_EQ(err, std::nullopt);  // root writes anyway: nothing to refuse
    return;
  }
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("cannot create"), std::string::npos) << *err;
  st.append(clock(5, t0 + days(1) + seconds(1), seconds(1)));
  ASSERT_EQ(st.flush(), std::nullopt);
  ASSERT_EQ(st.segments().size(), 1U);
  std::ifstream in(st.segments().front(), std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(scan_recording(data).records.size(), 2U);
}

}  // namespace
}  // namespace thecal::io
