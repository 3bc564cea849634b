// The journal's framing: CRC-32C against published vectors, the header, and a writer that
// survives ENOSPC and EIO (injected through FileOps) without leaving a half record.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "io/atomic_file.hpp"
#include "io/journal.hpp"

namespace thecal::io {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/thecal-journal-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

/// FileOps that fails the n-th write or fsync with a chosen errno, optionally after a
/// partial write (what a full disk does to a large write).
class FaultyOps : public FileOps {
 public:
  int fail_write_at = -1;  // 0-based index of the write call to fail
  int fail_fsync_at = -1;
  int err = ENOSPC;
  bool partial = false;
  int writes = 0;
  int fsyncs = 0;
  ssize_t write(int fd, const void* buf, std::size_t n) override {
    if (writes++ == fail_write_at) {
      if (partial && n > 10) (void)FileOps::write(fd, buf, n / 2);
      return -err;
    }
    return FileOps::write(fd, buf, n);
  }
  int fsync(int fd) override {
    if (fsyncs++ == fail_fsync_at) return -err;
    return FileOps::fsync(fd);
  }
};

TEST(Crc32c, KnownVectors) {
  // RFC 3720 B.4 and the classic check value.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string inc;
  for (int i = 0; i < 32; ++i) inc.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
}

TEST(JournalFormat, HeaderAndRecordsRoundTrip) {
  std::string f = journal_header();
  ASSERT_EQ(f.size(), kJournalHeaderSize);
  f += frame_record(RecordType::event, 1, "one");
  f += frame_record(RecordType::reserve, 2, "two");
  const auto s = scan_journal(f);
  EXPECT_EQ(s.problem, JournalProblem::none) << s.message;
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[1].payload, "two");
  EXPECT_EQ(s.valid_bytes, f.size());
}

TEST(JournalFormat, EmptyOrForeignFileIsABadHeader) {
  EXPECT_EQ(scan_journal("").problem, JournalProblem::bad_header);
  EXPECT_EQ(scan_journal("version: 1\nphase: trial\n").problem, JournalProblem::bad_header);
}

TEST(JournalWriter, RewriteThenAppend) {
  TempDir d;
  JournalWriter w(real_file_ops(), d.path + "/journal");
  ASSERT_FALSE(w.rewrite({{RecordType::event, "a"}}));
  ASSERT_FALSE(w.append({{RecordType::event, "b"}, {RecordType::event, "c"}}, true));
  const auto s = scan_journal(*read_file(d.path + "/journal"));
  EXPECT_EQ(s.problem, JournalProblem::none);
  ASSERT_EQ(s.records.size(), 3u);
  EXPECT_EQ(s.records[2].seq, 3u);
  EXPECT_FALSE(fs::exists(d.path + "/journal.tmp"));
}

class WriterFaults : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(WriterFaults, AFailedWriteLeavesNoHalfRecordAndIsNamed) {
  const auto [err, partial] = GetParam();
  TempDir d;
  FaultyOps ops;
  JournalWriter w(ops, d.path + "/journal");
  ASSERT_FALSE(w.rewrite({{RecordType::event, "first"}}));
  ops.err = err;
  ops.partial = partial;
  ops.fail_write_at = ops.writes;
  const auto e = w.append({{RecordType::event, std::string(5000, 'x')}}, true);
  ASSERT_TRUE(e);
  EXPECT_NE(e->find(std::strerror(err)), std::string::npos) << *e;
  EXPECT_FALSE(w.poisoned()) << "a failed write is cut back, the journal stays usable";
  // The file still ends on a record boundary: nothing of the failed append is there.
  auto s = scan_journal(*read_file(d.path + "/journal"));
  EXPECT_EQ(s.problem, JournalProblem::none) << s.message;
  EXPECT_EQ(s.records.size(), 1u);
  // Space comes back: the next append works and continues the sequence.
  ASSERT_FALSE(w.append({{RecordType::event, "second"}}, true));
  s = scan_journal(*read_file(d.path + "/journal"));
  EXPECT_EQ(s.problem, JournalProblem::none) << s.message;
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[1].seq, 2u);
}

INSTANTIATE_TEST_SUITE_P(EnospcAndEio, WriterFaults,
                         ::testing::Combine(::testing::Values(ENOSPC, EIO), ::testing::Bool()));

class FsyncFaults : public ::testing::TestWithParam<int> {};

TEST_P(FsyncFaults, AFailedFsyncPoisonsUntilARewrite) {
  TempDir d;
  FaultyOps ops;
  JournalWriter w(ops, d.path + "/journal");
  ASSERT_FALSE(w.rewrite({{RecordType::event, "first"}}));
  ops.err = GetParam();
  ops.fail_fsync_at = ops.fsyncs;
  auto e = w.append({{RecordType::reserve, "r"}}, true);
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("cannot fsync"), std::string::npos) << *e;
  EXPECT_TRUE(w.poisoned());
  // Nothing more is called durable: the next append is refused, by name.
  e = w.append({{RecordType::reserve, "r2"}}, true);
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("failed fsync"), std::string::npos) << *e;
  // A rewrite into a new file clears it.
  ASSERT_FALSE(w.rewrite({{RecordType::event, "fresh"}}));
  EXPECT_FALSE(w.poisoned());
  EXPECT_FALSE(w.append({{RecordType::event, "ok"}}, true));
}

TEST_P(FsyncFaults, AFailedRewriteKeepsTheOldFile) {
  TempDir d;
  FaultyOps ops;
  JournalWriter w(ops, d.path + "/journal");
  ASSERT_FALSE(w.rewrite({{RecordType::event, "old"}}));
  ops.err = GetParam();
  ops.fail_fsync_at = ops.fsyncs;  // the temp file's fsync
  ASSERT_TRUE(w.rewrite({{RecordType::event, "new"}}));
  const auto s = scan_journal(*read_file(d.path + "/journal"));
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].payload, "old");
}

INSTANTIATE_TEST_SUITE_P(EnospcAndEio, FsyncFaults, ::testing::Values(ENOSPC, EIO));

}  // namespace
}  // namespace thecal::io
