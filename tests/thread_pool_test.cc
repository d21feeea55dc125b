// ThreadPool: every index of [0, n) is visited exactly once per call, by the
// static partition (ParallelFor) or with a claimed tail (ParallelForBalanced), across many back-to-back jobs (workers spinning), jobs
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

// ParallelForBalanced: every index once, calls no longer than the chunk
// beyond the static prefix, and a thread that stalls in its static part does
// not keep the others from taking the whole tail.
TEST(ThreadPool, BalancedVisitsEachIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 7, 64, 1000})
      for (int64_t chunk : {1, 3, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        const int64_t prefix = n - n / ThreadPool::kTailShare;
        pool.ParallelForBalanced(n, chunk, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          if (b >= prefix && threads > 1) ASSERT_LE(e - b, chunk);
          for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i << " of " << n << ", chunk " << chunk;
      }
  }
}

TEST(ThreadPool, BalancedTailGoesToTheThreadsThatAreFree) {
  ThreadPool pool(2);
  const int64_t n = 400, prefix = n - n / ThreadPool::kTailShare;
  std::vector<std::thread::id> owner(static_cast<size_t>(n));
  const std::thread::id caller = std::this_thread::get_id();
  pool.ParallelForBalanced(n, 1, [&](int64_t b, int64_t e) {
    // The worker's static part stalls long enough for the caller to finish
    // its own part and claim the whole tail.
    if (std::this_thread::get_id() != caller && b < prefix) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int64_t i = b; i < e; ++i) owner[size_t(i)] = std::this_thread::get_id();
  });
  for (int64_t i = prefix; i < n; ++i) ASSERT_EQ(owner[size_t(i)], caller) << "tail index " << i;
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
