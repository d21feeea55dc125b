// ThreadPool: every index of [0, n) is visited exactly once per call, by the
// static partition (ParallelFor) or with stolen ranges (ParallelForBalanced),
// across many back-to-back jobs (workers spinning), jobs
// after the workers went to sleep, and destruction with sleeping workers.
#include "core/thread_pool.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace lowbit {
namespace {

// Runs one ParallelFor over n and checks that each index was visited once
// and that the ranges were the contiguous static partition.
void ExpectEachIndexOnce(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<int> calls{0};
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    ASSERT_LE(0, b);
    ASSERT_LT(b, e);
    ASSERT_LE(e, n);
    ++calls;
    for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i << " of " << n;
  EXPECT_EQ(calls.load(), int(std::min<int64_t>(n, pool.size())));
}

TEST(ThreadPool, EveryIndexOnceForManySizesAndThreadCounts) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {1, 2, 3, 4, 7, 64, 1000}) ExpectEachIndexOnce(pool, n);
  }
}

// ParallelForBalanced: every index once, one call per unit of `chunk`
// indices (unit-aligned), and a thread that stalls does not keep the others
// from taking the rest of its range.
TEST(ThreadPool, BalancedVisitsEachIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 7, 64, 1000})
      for (int64_t chunk : {1, 3, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.ParallelForBalanced(n, chunk, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          if (threads > 1 && n > 1) {
            ASSERT_EQ(b % chunk, 0);
            ASSERT_EQ(e, std::min(n, b + chunk));
          }
          for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i << " of " << n << ", chunk " << chunk;
      }
  }
}

// The shares BalancedShare reports are the contiguous ranges the threads
// start on, unit-aligned, covering [0, n) in order.
TEST(ThreadPool, BalancedSharesTileTheRange) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 64, 1000, 12345})
      for (int64_t chunk : {1, 3, 64}) {
        int64_t expect_begin = 0;
        for (int t = 0; t < threads; ++t) {
          int64_t b, e;
          pool.BalancedShare(n, chunk, t, &b, &e);
          EXPECT_EQ(b, expect_begin) << "thread " << t << " n " << n << " chunk " << chunk;
          EXPECT_LE(b, e);
          EXPECT_TRUE(b % chunk == 0 || b == n);
          expect_begin = e;
        }
        EXPECT_EQ(expect_begin, n);
      }
  }
}

// Holds the worker in its first call until the caller has run every other
// unit (or 30 s pass), so the caller must steal the rest of the worker's range.
class StalledWorker {
 public:
  explicit StalledWorker(int64_t units) : units_(units) {}
  // Called at the start of every fn call; true on the caller's thread.
  bool Enter() {
    if (std::this_thread::get_id() == caller_) {
      ++caller_calls_;
      return true;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (caller_calls_.load() < units_ - 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return false;
  }

 private:
  const int64_t units_;
  const std::thread::id caller_ = std::this_thread::get_id();
  std::atomic<int64_t> caller_calls_{0};
};

TEST(ThreadPool, BalancedStealsFromAStalledThread) {
  ThreadPool pool(2);
  const int64_t n = 400;
  int64_t worker_begin, worker_end;
  pool.BalancedShare(n, 1, 1, &worker_begin, &worker_end);
  ASSERT_EQ(worker_begin, 200);
  ASSERT_EQ(worker_end, 400);
  std::vector<int> on_caller(static_cast<size_t>(n), -1);
  StalledWorker stall(n);
  pool.ParallelForBalanced(n, 1, [&](int64_t b, int64_t e) {
    const bool caller = stall.Enter();
    for (int64_t i = b; i < e; ++i) on_caller[size_t(i)] = caller ? 1 : 0;
  });
  // The worker ran its first unit at most; the caller ran everything else.
  for (int64_t i = 0; i < n; ++i)
    if (i != worker_begin) {
      ASSERT_EQ(on_caller[size_t(i)], 1) << "index " << i;
    }
}

// A stolen range is run front to back like an owned one, and a thief takes
// halves: the caller (its own half, then the stalled worker's units) jumps
// back only once per steal.
TEST(ThreadPool, BalancedRunsStolenRangesForward) {
  ThreadPool pool(2);
  const int64_t n = 1024;
  std::vector<int64_t> order;  // the caller's units in call order
  StalledWorker stall(n);
  pool.ParallelForBalanced(n, 1, [&](int64_t b, int64_t) {
    if (stall.Enter()) order.push_back(b);
  });
  ASSERT_GE(order.size(), size_t(n - 1));
  int jumps = 0;
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i] != order[i - 1] + 1) ++jumps;
  // The worker's 512 units, less the one it may hold, go in halves: 10 steals
  // at most, each one jump (a steal right after the caller's own half, of the
  // units that follow it, needs none).
  EXPECT_LE(jumps, 10);
  EXPECT_GE(jumps, 1);
}

// Prefetch spans are only read (ASan checks the bounds: sizes that are not
// a multiple of a cache line), spans for threads the pool does not have are
// ignored, and jobs run as without them, also when the next job starts
// before a worker has read all of its spans.
TEST(ThreadPool, BalancedWithPrefetchSpans) {
  std::vector<uint8_t> next(size_t(3 << 20) + 37, 1);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<ThreadPool::PrefetchSpan> spans;
    for (int t = -1; t <= threads; ++t) spans.push_back({t, next.data() + 5, int64_t(next.size()) - 5});
    spans.push_back({0, next.data(), 0});
    for (int job = 0; job < 200; ++job) {
      const int64_t n = 1 + job % 97;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelForBalanced(
          n, 2, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
          },
          spans);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i << " of " << n;
    }
  }
}

TEST(ThreadPool, ThousandsOfBackToBackJobs) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 5000; ++job)
    pool.ParallelFor(10, [&](int64_t b, int64_t e) { total += e - b; });
  EXPECT_EQ(total.load(), 50000);
}

TEST(ThreadPool, WakesWorkersThatWentToSleep) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    // Longer than the spin window: the worker is asleep on the condition variable.
    std::this_thread::sleep_for(std::chrono::microseconds(20 * ThreadPool::kSpinMicros));
    ExpectEachIndexOnce(pool, 100);
  }
}

TEST(ThreadPool, DestroysWithWorkersSpinningOrAsleep) {
  { ThreadPool pool(4); }  // never used
  {
    ThreadPool pool(4);
    ExpectEachIndexOnce(pool, 16);  // destroyed while the workers spin
  }
  {
    ThreadPool pool(4);
    ExpectEachIndexOnce(pool, 16);
    std::this_thread::sleep_for(std::chrono::microseconds(20 * ThreadPool::kSpinMicros));
  }
}

TEST(ThreadPool, EmptyRangeCallsNothing) {
  ThreadPool pool(2);
  bool called = false;
  pool.ParallelFor(0, [&](int64_t, int64_t) { called = true; });
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace lowbit
