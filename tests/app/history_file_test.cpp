// The delivery history on disk (app/history_file): what a first run was told comes back in
// a second; a torn or corrupt line and what follows is ignored; old minutes are dropped.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "app/history_file.hpp"

namespace thecal::app {
namespace {

constexpr std::int64_t kMin = DeliveryHistory::kMinuteUs;
constexpr std::int64_t kT0 = 1'790'000'000'000'000 - 1'790'000'000'000'000 % kMin;

class HistoryFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thecal-hist-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/delivery-history";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static double mcg(const DeliveryHistory& h, std::int64_t from, std::int64_t to) {
    const auto buckets = h.query(static_cast<std::uint64_t>(from), static_cast<std::uint64_t>(to),
                                 static_cast<std::uint64_t>(to - from));
    if (!buckets) return -1.0;
    double m = 0;
    for (const auto& b : *buckets) m += b.mcg;
    return m;
  }
  std::string dir_;
  std::string path_;
};

TEST_F(HistoryFileTest, ASecondRunSeesTheFirstRunsMinutesAndRefills) {
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    h.record_totals(kT0, 0, 0);
    h.record_totals(kT0 + 10'000'000, 5, 0.5);
    h.record_totals(kT0 + 20'000'000, 7, 0.7);
    h.record_totals(kT0 + kMin + 1, 10, 1.0);
    h.record_refill({kT0 + 2 * kMin, 20000, 3, 4, 5, 98.5, false});
  }
  DeliveryHistory again;
  HistoryFile f(path_);
  ASSERT_EQ(f.attach(again, kT0 + 5 * kMin), std::nullopt);
  EXPECT_DOUBLE_EQ(mcg(again, kT0, kT0 + kMin), 7.0);
  EXPECT_DOUBLE_EQ(mcg(again, kT0 + kMin, kT0 + 2 * kMin), 3.0);
  ASSERT_EQ(again.refills_since(0).size(), 1U);
  EXPECT_DOUBLE_EQ(again.refills_since(0)[0].accuracy_percent, 98.5);
  // Compacted: one line per minute and per refill.
  EXPECT_EQ(f.lines_read(), 4U);
  std::ifstream in(path_);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
}

TEST_F(HistoryFileTest, ATornOrCorruptLineEndsTheReadingAndOldMinutesAreDropped) {
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    h.record_totals(kT0, 0, 0);
    for (int i = 1; i <= 4; ++i) h.record_totals(kT0 + i * kMin, i, i / 10.0);
  }
  std::string text;
  {
    std::ifstream in(path_);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Flip a digit in the third line: it and the fourth are ignored.
  std::size_t third = 0;
  for (int i = 0; i < 2; ++i) third = text.find('\n', third) + 1;
  text[third + 2] = text[third + 2] == '9' ? '8' : '9';
  std::ofstream(path_) << text;
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    EXPECT_EQ(f.lines_read(), 2U);
    EXPECT_DOUBLE_EQ(mcg(h, kT0, kT0 + 10 * kMin), 2.0);
  }
  // A torn last line (no newline) is ignored too; 62 days later everything is gone.
  std::ofstream(path_, std::ios::app) << "M 1 2";
  DeliveryHistory h;
  HistoryFile f(path_);
  ASSERT_EQ(f.attach(h, kT0 + DeliveryHistory::kRetentionUs + 10 * kMin), std::nullopt);
  EXPECT_EQ(f.lines_read(), 2U);
  EXPECT_DOUBLE_EQ(mcg(h, kT0, kT0 + 10 * kMin), 0.0);
}

}  // namespace
}  // namespace thecal::app
