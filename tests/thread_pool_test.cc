// ThreadPool: every index of [0, n) is visited exactly once per call, by the
// static partition, across many back-to-back jobs (workers spinning), jobs
// after the workers went to sleep, and destruction with sleeping workers.
#include "core/thread_pool.h"

#include <atomic>
#include <chrono>
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
