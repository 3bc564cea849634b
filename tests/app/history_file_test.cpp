// The delivery history on disk (app/history_file): what a first run was told comes back in
// a second; a torn or corrupt line and what follows is ignored; old minutes are dropped.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>
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

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// One drug's mass in [from, to) as GetDrugDeliveryHistory gives it; -1 on a refusal.
double drug_mcg(const DeliveryHistory& h, const char* drug, std::int64_t from, std::int64_t to) {
  const auto buckets = h.query_drug(drug, static_cast<std::uint64_t>(from), static_cast<std::uint64_t>(to),
                                    static_cast<std::uint64_t>(to - from));
  if (!buckets) return -1.0;
  double m = 0;
  for (const auto& b : *buckets) m += b.mcg;
  return m;
}

/// A first run told the pump's totals, and morphine (the primary) and bupivacaine (slot 0),
/// in two minutes.
void first_run(const std::string& path) {
  DeliveryHistory h;
  HistoryFile f(path);
  ASSERT_EQ(f.attach(h, kT0), std::nullopt);
  using T = std::vector<DeliveryHistory::DrugTotal>;
  h.record_totals(kT0, 0, 0);  // the primary's own file: two minutes
  h.record_totals(kT0 + 10'000'000, 5, 0.5);
  h.record_totals(kT0 + kMin + 1, 10, 1.0);
  h.record_drug_totals(kT0, T{{"morphine", 100}, {"bupivacaine", 10}});  // the base
  h.record_drug_totals(kT0 + 10'000'000, T{{"morphine", 104}, {"bupivacaine", 13}});
  h.record_drug_totals(kT0 + 20'000'000, T{{"morphine", 106}, {"bupivacaine", 14.5}});
  h.record_drug_totals(kT0 + kMin + 1, T{{"morphine", 110}, {"bupivacaine", 17.5}});
  ASSERT_TRUE(h.knows_drug("bupivacaine"));
}

// Issue 16: each drug's own history (GetDrugDeliveryHistory) is kept on disk like the
// primary's, in the companion file, and comes back in a second run.
TEST_F(HistoryFileTest, EachDrugsMinutesComeBackInASecondRunAndTheFileIsCompacted) {
  ASSERT_NO_FATAL_FAILURE(first_run(path_));
  const std::string drugs = path_ + "-drugs";
  // One line per increase: 3 increases of each drug.
  const std::string before = slurp(drugs);
  EXPECT_EQ(std::count(before.begin(), before.end(), '\n'), 6);
  // The primary's file keeps its own format: no drug line in it.
  EXPECT_EQ(slurp(path_).find("D "), std::string::npos);

  DeliveryHistory again;
  HistoryFile f(path_);
  ASSERT_EQ(f.attach(again, kT0 + 5 * kMin), std::nullopt);
  EXPECT_EQ(f.drug_lines_read(), 6U);
  EXPECT_TRUE(again.knows_drug("bupivacaine"));
  EXPECT_TRUE(again.knows_drug("morphine"));
  EXPECT_FALSE(again.knows_drug("clonidine"));
  EXPECT_DOUBLE_EQ(drug_mcg(again, "bupivacaine", kT0, kT0 + kMin), 4.5);
  EXPECT_DOUBLE_EQ(drug_mcg(again, "bupivacaine", kT0 + kMin, kT0 + 2 * kMin), 3.0);
  EXPECT_DOUBLE_EQ(drug_mcg(again, "morphine", kT0, kT0 + kMin), 6.0);
  EXPECT_DOUBLE_EQ(drug_mcg(again, "morphine", kT0 + kMin, kT0 + 2 * kMin), 4.0);
  // Compacted at start: one line per drug and minute.
  const std::string after = slurp(drugs);
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n'), 4);
  // What this run is told is appended after the compacted lines, and a third run sums it.
  again.record_drug_totals(kT0 + 5 * kMin, {{"morphine", 0}, {"bupivacaine", 0}});  // a new core: the base
  again.record_drug_totals(kT0 + 5 * kMin + 1, {{"morphine", 2}, {"bupivacaine", 1}});
  DeliveryHistory third;
  HistoryFile g(path_);
  ASSERT_EQ(g.attach(third, kT0 + 6 * kMin), std::nullopt);
  EXPECT_EQ(g.drug_lines_read(), 6U);
  EXPECT_DOUBLE_EQ(drug_mcg(third, "bupivacaine", kT0, kT0 + 10 * kMin), 8.5);
  EXPECT_DOUBLE_EQ(drug_mcg(third, "morphine", kT0, kT0 + 10 * kMin), 12.0);
}

TEST_F(HistoryFileTest, ADrugLineTornOrWithABadChecksumEndsTheReadingAndOldDrugMinutesAreDropped) {
  ASSERT_NO_FATAL_FAILURE(first_run(path_));
  const std::string drugs = path_ + "-drugs";
  std::string text = slurp(drugs);
  // Change a figure in the fourth line without its checksum: it and what follows is ignored.
  std::size_t fourth = 0;
  for (int i = 0; i < 3; ++i) fourth = text.find('\n', fourth) + 1;
  const std::size_t digit = text.find(' ', text.find(' ', fourth) + 1) + 1;  // the mcg figure
  text[digit] = text[digit] == '9' ? '8' : '9';
  std::ofstream(drugs) << text;
  const auto lines = [&](const std::string& t, std::size_t n) {
    std::size_t end = 0;
    for (std::size_t i = 0; i < n; ++i) end = t.find('\n', end) + 1;
    return t.substr(0, end);
  };
  // Independent expectation: the first three lines as written, summed by hand.
  double bupi = 0, morphine = 0;
  {
    std::istringstream in(lines(text, 3));
    std::string l;
    while (std::getline(in, l)) {
      long long t = 0;
      double m = 0;
      char name[32] = {};
      ASSERT_EQ(std::sscanf(l.c_str(), "D %lld %lf %31[a-z]", &t, &m, name), 3) << l;
      (std::string(name) == "bupivacaine" ? bupi : morphine) += m;
    }
  }
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    EXPECT_EQ(f.drug_lines_read(), 3U);
    EXPECT_DOUBLE_EQ(drug_mcg(h, "bupivacaine", kT0, kT0 + 10 * kMin), bupi);
    EXPECT_DOUBLE_EQ(drug_mcg(h, "morphine", kT0, kT0 + 10 * kMin), morphine);
    // The primary's own file is untouched by the damage in the companion.
    EXPECT_EQ(f.lines_read(), 2U);
  }
  // A torn last line (no newline, no checksum) is ignored too: the compacted file comes back
  // as it was.
  const std::string compacted = slurp(drugs);
  ASSERT_EQ(std::count(compacted.begin(), compacted.end(), '\n'), 2);  // one per drug and minute
  std::ofstream(drugs, std::ios::app) << "D 1 2 bupiv";
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    EXPECT_EQ(f.drug_lines_read(), 2U);
    EXPECT_EQ(slurp(drugs), compacted);
    EXPECT_DOUBLE_EQ(drug_mcg(h, "bupivacaine", kT0, kT0 + 10 * kMin), bupi);
  }
  // 62 days later every drug minute is gone, and the drug with it.
  DeliveryHistory h;
  HistoryFile f(path_);
  ASSERT_EQ(f.attach(h, kT0 + DeliveryHistory::kRetentionUs + 10 * kMin), std::nullopt);
  EXPECT_FALSE(h.knows_drug("bupivacaine"));
  EXPECT_EQ(slurp(drugs), "");
}

// A history written before the drug file existed (M and R lines only, no companion file)
// loads as before, and the companion starts empty.
TEST_F(HistoryFileTest, AHistoryWithoutTheDrugFileLoadsAsBefore) {
  {
    DeliveryHistory h;
    HistoryFile f(path_);
    ASSERT_EQ(f.attach(h, kT0), std::nullopt);
    h.record_totals(kT0, 0, 0);
    h.record_totals(kT0 + 10'000'000, 5, 0.5);
    h.record_refill({kT0 + 2 * kMin, 20000, 3, 4, 5, 98.5, false});
  }
  std::filesystem::remove(path_ + "-drugs");
  DeliveryHistory h;
  HistoryFile f(path_);
  ASSERT_EQ(f.attach(h, kT0 + 5 * kMin), std::nullopt);
  EXPECT_EQ(f.lines_read(), 2U);
  EXPECT_EQ(f.drug_lines_read(), 0U);
  EXPECT_DOUBLE_EQ(mcg(h, kT0, kT0 + kMin), 5.0);
  EXPECT_EQ(h.refills_since(0).size(), 1U);
  EXPECT_TRUE(std::filesystem::exists(path_ + "-drugs"));
}

}  // namespace
}  // namespace thecal::app
