#include "config/tz_offsets.hpp"

#include <gtest/gtest.h>

#include "tests/config/test_util.hpp"

namespace thecal::config {
namespace {

// 2026-03-29T01:00:00Z and 2026-10-25T01:00:00Z: the EU switches to and from summer time.
constexpr std::int64_t kEuSpring2026 = 1774746000;
constexpr std::int64_t kEuAutumn2026 = 1792890000;

WallTime at_s(std::int64_t unix_seconds) { return wall_us(unix_seconds * 1'000'000); }

TEST(TzOffsets, BerlinDstTransitionsOnTheRightInstants) {
  UtcOffsetTable t;
  const WallTime now = at_s(kEuSpring2026) - days(30);  // late February 2026
  ASSERT_FALSE(compute_utc_offsets("Europe/Berlin", now, t).has_value());
  ASSERT_GE(t.size(), 3U);
  EXPECT_EQ(t[0].from, now - kTzTableBack);
  EXPECT_EQ(t[0].offset, hours(1));
  EXPECT_EQ(t[1].from, at_s(kEuSpring2026));
  EXPECT_EQ(t[1].offset, hours(2));
  EXPECT_EQ(t[2].from, at_s(kEuAutumn2026));
  EXPECT_EQ(t[2].offset, hours(1));
  // One microsecond either side of the spring change.
  EXPECT_EQ(utc_offset_at(t, at_s(kEuSpring2026) - usec(1)), hours(1));
  EXPECT_EQ(utc_offset_at(t, at_s(kEuSpring2026)), hours(2));
  // The first entry holds for all earlier times.
  EXPECT_EQ(utc_offset_at(t, at_s(0)), hours(1));
  // Sorted, alternating, and no entry repeats the previous offset.
  for (std::size_t i = 1; i < t.size(); ++i) {
    EXPECT_LT(t[i - 1].from, t[i].from);
    EXPECT_NE(t[i - 1].offset, t[i].offset);
  }
}

TEST(TzOffsets, ReachesAheadAsFarAsTheTzDatabaseDoes) {
  UtcOffsetTable t;
  ASSERT_FALSE(compute_utc_offsets("Europe/Berlin", at_s(kEuSpring2026), t).has_value());
  // The OS tz database's explicit transitions end in 2037 (TZif "fat" data; the date
  // library does not extend them with the POSIX rule of the file's footer): 2 a year.
  EXPECT_GE(t.size(), 2U * 11U);
  EXPECT_LE(t.size(), kMaxTzTransitions);
  EXPECT_LE(t.back().from, at_s(kEuSpring2026) + kTzTableAhead);
}

TEST(TzOffsets, ZonesWithoutDstHaveOneEntry) {
  UtcOffsetTable t;
  ASSERT_FALSE(compute_utc_offsets("UTC", test::kTestNow, t).has_value());
  ASSERT_EQ(t.size(), 1U);
  EXPECT_EQ(t[0].offset, Duration{0});
  ASSERT_FALSE(compute_utc_offsets("Asia/Kolkata", test::kTestNow, t).has_value());
  ASSERT_EQ(t.size(), 1U);
  EXPECT_EQ(t[0].offset, hours(5) + minutes(30));
}

TEST(TzOffsets, SouthernHemisphere) {
  UtcOffsetTable t;
  ASSERT_FALSE(compute_utc_offsets("Australia/Sydney", test::kTestNow, t).has_value());
  EXPECT_EQ(utc_offset_at(t, test::kTestNow), hours(11));            // November: summer
  EXPECT_EQ(utc_offset_at(t, test::kTestNow + days(180)), hours(10)); // May: winter
}

TEST(TzOffsets, UnknownZones) {
  UtcOffsetTable t;
  for (const char* z : {"Europe/Berln", "", "/etc/localtime", "../zoneinfo/UTC", "Europe/Berlin ", "CEST"}) {
    const auto err = compute_utc_offsets(z, test::kTestNow, t);
    ASSERT_TRUE(err.has_value()) << z;
    EXPECT_EQ(*err, "unknown time zone") << z;
    EXPECT_FALSE(is_known_time_zone(z)) << z;
  }
  EXPECT_TRUE(is_known_time_zone("America/New_York"));
}

}  // namespace
}  // namespace thecal::config
