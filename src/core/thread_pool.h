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
#include <span>
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
  // product's output rows). [0, n) is cut into units of `chunk` indices (the
  // last shorter), one fn call each. Thread i owns the i-th contiguous share
  // of the units and runs them front to back; a thread whose range is empty
  // steals the back half of the largest range left and runs it likewise,
  // until no range has a unit left. A thread slowed by the other core's
  // memory traffic or a preemption thus does not hold up the call, while
  // every thread still reads one long forward stream between steals (the
  // hardware prefetchers start over at every jump, so handing out small
  // chunks from a shared counter cost speed). Which thread runs a unit
  // varies from run to run.
  //
  // `prefetch` names bytes a thread will read first in the next job (its
  // share of the next matrix product): a worker reads its spans into its
  // caches once its part of this job is done, while the caller finishes and
  // runs its serial steps, and the caller reads its own spans while it waits
  // for the workers. Either stops as soon as there is other work (the next
  // job, or the workers done). Results never depend on it.
  struct PrefetchSpan {
    int thread = 0;  // the index of the thread that reads it (0: the caller)
    const void* data = nullptr;
    int64_t bytes = 0;
  };
  void ParallelForBalanced(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn,
                           std::span<const PrefetchSpan> prefetch = {});
  // [begin, end): the indices thread `index` owns at the start of a
  // ParallelForBalanced(n, chunk, ...), the ones it runs first.
  void BalancedShare(int64_t n, int64_t chunk, int index, int64_t* begin, int64_t* end) const;
  // Spans per thread per job that are kept (the rest are dropped).
  static constexpr int kMaxPrefetchSpans = 8;

  // How long an idle worker spins for the next job before it sleeps.
  static constexpr int64_t kSpinMicros = 300;

 private:
  void WorkerLoop(int index);
  void Publish(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn,
               std::span<const PrefetchSpan> prefetch);
  // Runs thread `index`'s part of the published job.
  void RunPart(int index);
  // ParallelForBalanced: moves the back half of the largest other range into
  // thread `index`'s (empty) range; false when no range has a unit left.
  bool Steal(int index);
  void WaitForWorkers();
  // Waits until generation_ differs from `seen` (or stop_); returns the new value.
  uint64_t WaitForJob(uint64_t seen);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;  // 0: static partition; else ParallelForBalanced's unit
  // ParallelForBalanced: per thread, the units [begin, end) it still owns,
  // packed with a tag that changes whenever the owner stores a stolen range
  // (so a compare-exchange against an older range of the same bounds fails).
  struct alignas(64) UnitRange {
    std::atomic<uint64_t> v{0};
  };
  std::vector<UnitRange> ranges_;
  // Per thread, kMaxPrefetchSpans slots: the current job's prefetch spans
  // (bytes 0 ends the list); written before the job is published.
  std::vector<PrefetchSpan> prefetch_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace lowbit
