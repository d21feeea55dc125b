// A fixed pool of worker threads with a static-partition ParallelFor.
// Static partitioning keeps results bit-identical for a given thread count;
// ParallelForBalanced adds a dynamically claimed tail for loops whose results
// do not depend on the split.
//
// Generation runs a few hundred short parallel loops per token (every matmul,
// the attention heads), each a few tens of microseconds long, so handing a job
// to a sleeping thread (a futex wake, 5-20 us) would cost a large share of
// the token. Workers therefore spin on an atomic job counter for a while
// (kSpinMicros) after each job before they sleep on a condition variable, and
// the caller spins for the workers to finish.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit {

class ThreadPool {
 public:
  // num_threads <= 0 means one per hardware core.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // Splits [0, n) into size() contiguous ranges and calls fn(begin, end) for
  // each, the caller's thread taking the first. Returns when all are done.
  // One caller at a time; fn must not call ParallelFor on the same pool.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // Like ParallelFor, for loops whose fn(begin, end) results do not depend on
  // how [0, n) is split (every index computed whole by one call, as a matrix
  // product's output rows): each thread first takes its contiguous share of
  // the first (1 - 1/kTailShare) of [0, n), then threads that finish early
  // claim the rest in chunks of `chunk` from an atomic counter, so a thread
  // slowed by the other core's memory traffic or a preemption does not hold
  // up the call. Which thread runs a chunk varies from run to run.
  void ParallelForBalanced(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);
  static constexpr int64_t kTailShare = 4;

  // How long an idle worker spins for the next job before it sleeps.
  static constexpr int64_t kSpinMicros = 300;

 private:
  void WorkerLoop(int index);
  void Publish(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);
  // Runs thread `index`'s part of the published job.
  void RunPart(int index);
  void WaitForWorkers();
  // Waits until generation_ differs from `seen` (or stop_); returns the new value.
  uint64_t WaitForJob(uint64_t seen);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;   // 0: static partition; else ParallelForBalanced's chunk
  int64_t job_static_ = 0;  // ParallelForBalanced: the statically split prefix
  std::atomic<int64_t> next_{0};  // ParallelForBalanced: the first unclaimed index
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace lowbit
