#include "loop/triple_buffer.hpp"

#include <atomic>
#include <cstdint>
#include <thread>

#include <gtest/gtest.h>

namespace thecal::loop {
namespace {

struct Big {
  std::uint64_t seq = 0;
  std::uint64_t check = 0;  // = seq * 3 + 1: a torn read would break it
  std::array<std::uint64_t, 64> pad{};
};

TEST(TripleBuffer, ReaderSeesNothingUntilWritten) {
  TripleBuffer<int> b;
  int v = -1;
  EXPECT_FALSE(b.read(v));
  b.write(7);
  ASSERT_TRUE(b.read(v));
  EXPECT_EQ(v, 7);
  EXPECT_FALSE(b.read(v)) << "a value is read once";
}

TEST(TripleBuffer, NewestWinsWhenTheReaderFallsBehind) {
  TripleBuffer<int> b;
  for (int i = 0; i < 100; ++i) b.write(i);
  int v = -1;
  ASSERT_TRUE(b.read(v));
  EXPECT_EQ(v, 99);
}

TEST(TripleBuffer, ConcurrentWriterAndReaderNeverTearAndNeverGoBack) {
  TripleBuffer<Big> b;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::uint64_t i = 1; i <= 200'000; ++i) {
      Big x;
      x.seq = i;
      x.check = i * 3 + 1;
      b.write(x);
    }
    done = true;
  });
  std::uint64_t last = 0;
  std::uint64_t reads = 0;
  Big got;
  for (;;) {
    const bool finished = done.load();
    if (b.read(got)) {
      ASSERT_EQ(got.check, got.seq * 3 + 1) << "torn value";
      ASSERT_GT(got.seq, last) << "went back in time";
      last = got.seq;
      ++reads;
    } else if (finished) {
      break;
    }
  }
  writer.join();
  EXPECT_EQ(last, 200'000u) << "the last value written is the last read";
  EXPECT_GT(reads, 0u);
}

}  // namespace
}  // namespace thecal::loop
