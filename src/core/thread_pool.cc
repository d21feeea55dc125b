// ThreadPool implementation: one job at a time; workers spin, then sleep,
// waiting for the next generation.
//
// Publishing a job: job_/job_n_/pending_ are written, then generation_ is
// incremented (seq_cst); a worker that sees the new generation (acquire) sees
// the job. Sleeping: a worker increments sleepers_ and re-checks generation_
// under mutex_ before it waits; the caller increments generation_ and then
// reads sleepers_ (both seq_cst), so either the worker sees the new job or the
// caller sees the sleeper and notifies under the mutex: no lost wake-up.
#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOWBIT_CPU_RELAX() _mm_pause()
#else
#define LOWBIT_CPU_RELAX() std::this_thread::yield()
#endif

namespace lowbit {

namespace {
void Range(int64_t n, int parts, int index, int64_t* begin, int64_t* end) {
  const int64_t base = n / parts, extra = n % parts;
  *begin = index * base + std::min<int64_t>(index, extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  num_threads_ = num_threads;
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Publish(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  job_static_ = chunk > 0 ? n - n / kTailShare : n;
  next_.store(job_static_, std::memory_order_relaxed);
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job, ordered before the sleepers_ read
  if (sleepers_.load() > 0) {
    { std::lock_guard lock(mutex_); }
    start_cv_.notify_all();
  }
}

void ThreadPool::RunPart(int index) {
  int64_t begin, end;
  Range(job_static_, num_threads_, index, &begin, &end);
  if (begin < end) (*job_)(begin, end);
  if (job_chunk_ == 0) return;
  for (;;) {
    const int64_t b = next_.fetch_add(job_chunk_, std::memory_order_relaxed);
    if (b >= job_n_) return;
    (*job_)(b, std::min(job_n_, b + job_chunk_));
  }
}

void ThreadPool::WaitForWorkers() {
  // The workers' parts are as long as ours: spin for up to kSpinMicros, then
  // yield in case a worker was descheduled (an oversubscribed machine). A
  // fixed count of pauses was too short on Zen 4 (a few ns each): the caller
  // went into sched_yield on ordinary end-of-product waits, 1.5% of a token.
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
  bool spin = true;
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spin) {
      LOWBIT_CPU_RELAX();
      if ((spins & 63) == 63 && Clock::now() > deadline) spin = false;
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  Publish(n, 0, fn);
  RunPart(0);
  WaitForWorkers();
}

void ThreadPool::ParallelForBalanced(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  Publish(n, std::max<int64_t>(1, chunk), fn);
  RunPart(0);
  WaitForWorkers();
}

uint64_t ThreadPool::WaitForJob(uint64_t seen) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
  for (int spins = 0;; ++spins) {
    const uint64_t g = generation_.load(std::memory_order_acquire);
    if (g != seen || stop_.load(std::memory_order_relaxed)) return g;
    LOWBIT_CPU_RELAX();
    if ((spins & 63) == 63 && Clock::now() > deadline) break;
  }
  std::unique_lock lock(mutex_);
  sleepers_.fetch_add(1);  // seq_cst, before the re-check below
  start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
  sleepers_.fetch_sub(1);
  return generation_.load(std::memory_order_acquire);
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    seen = WaitForJob(seen);
    if (stop_.load()) return;
    RunPart(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace lowbit
