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

// ParallelForBalanced's unit ranges: begin and end in 24 bits each, a 16-bit tag.
constexpr int kUnitBits = 24;
constexpr int64_t kMaxUnits = (int64_t(1) << kUnitBits) - 1;
uint64_t PackUnits(int64_t begin, int64_t end, uint64_t tag) {
  return uint64_t(begin) | uint64_t(end) << kUnitBits | (tag & 0xffff) << (2 * kUnitBits);
}
int64_t UnitsBegin(uint64_t v) { return int64_t(v & uint64_t(kMaxUnits)); }
int64_t UnitsEnd(uint64_t v) { return int64_t(v >> kUnitBits & uint64_t(kMaxUnits)); }
uint64_t UnitsTag(uint64_t v) { return v >> (2 * kUnitBits); }

// The unit size actually used: at least `chunk`, and few enough units to pack.
int64_t UnitSize(int64_t n, int64_t chunk) {
  return std::max({int64_t(1), chunk, (n + kMaxUnits - 1) / kMaxUnits});
}

// Reads spans (up to kMaxPrefetchSpans, bytes 0 ends the list) into this
// core's caches, a page at a time while keep_going() holds.
template <typename KeepGoing>
void PrefetchSpans(const ThreadPool::PrefetchSpan* spans, KeepGoing keep_going) {
  constexpr int64_t kStep = 4096, kLine = 64;
  for (int s = 0; s < ThreadPool::kMaxPrefetchSpans && spans[s].bytes > 0; ++s) {
    const char* p = static_cast<const char*>(spans[s].data);
    for (int64_t off = 0; off < spans[s].bytes; off += kStep) {
      if (!keep_going()) return;
      const int64_t end = std::min(spans[s].bytes, off + kStep);
      uint8_t sink = 0;
      for (int64_t o = off; o < end; o += kLine) sink ^= *reinterpret_cast<const volatile uint8_t*>(p + o);
      (void)sink;
    }
  }
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  num_threads_ = num_threads;
  prefetch_.resize(size_t(num_threads_) * kMaxPrefetchSpans);
  ranges_ = std::vector<UnitRange>(size_t(num_threads_));
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

void ThreadPool::Publish(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn,
                         std::span<const PrefetchSpan> prefetch) {
  std::fill(prefetch_.begin(), prefetch_.end(), PrefetchSpan{});
  for (const PrefetchSpan& s : prefetch) {
    if (s.thread < 0 || s.thread >= num_threads_ || s.bytes <= 0) continue;
    PrefetchSpan* slots = &prefetch_[size_t(s.thread) * kMaxPrefetchSpans];
    int k = 0;
    while (k < kMaxPrefetchSpans && slots[k].bytes > 0) ++k;
    if (k < kMaxPrefetchSpans) slots[k] = s;
  }
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  if (chunk > 0) {
    const int64_t units = (n + chunk - 1) / chunk;
    for (int t = 0; t < num_threads_; ++t) {
      int64_t b, e;
      Range(units, num_threads_, t, &b, &e);
      const uint64_t tag = UnitsTag(ranges_[size_t(t)].v.load(std::memory_order_relaxed)) + 1;
      ranges_[size_t(t)].v.store(PackUnits(b, e, tag), std::memory_order_relaxed);
    }
  }
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job, ordered before the sleepers_ read
  if (sleepers_.load() > 0) {
    { std::lock_guard lock(mutex_); }
    start_cv_.notify_all();
  }
}

void ThreadPool::RunPart(int index) {
  if (job_chunk_ == 0) {
    int64_t begin, end;
    Range(job_n_, num_threads_, index, &begin, &end);
    if (begin < end) (*job_)(begin, end);
    return;
  }
  std::atomic<uint64_t>& mine = ranges_[size_t(index)].v;
  do {
    // Our range front to back; a thief may shrink its back meanwhile.
    uint64_t v = mine.load(std::memory_order_relaxed);
    while (UnitsBegin(v) < UnitsEnd(v)) {
      if (!mine.compare_exchange_weak(v, v + 1, std::memory_order_relaxed)) continue;  // begin + 1
      const int64_t b = UnitsBegin(v) * job_chunk_;
      (*job_)(b, std::min(job_n_, b + job_chunk_));
      v = mine.load(std::memory_order_relaxed);
    }
  } while (Steal(index));
}

bool ThreadPool::Steal(int index) {
  for (;;) {
    int victim = -1;
    int64_t most = 0;
    uint64_t seen = 0;
    for (int t = 0; t < num_threads_; ++t) {
      const uint64_t v = ranges_[size_t(t)].v.load(std::memory_order_relaxed);
      if (t != index && UnitsEnd(v) - UnitsBegin(v) > most) {
        victim = t;
        most = UnitsEnd(v) - UnitsBegin(v);
        seen = v;
      }
    }
    if (victim < 0) return false;
    const int64_t end = UnitsEnd(seen), take = (most + 1) / 2;
    if (!ranges_[size_t(victim)].v.compare_exchange_strong(seen, PackUnits(UnitsBegin(seen), end - take, UnitsTag(seen)),
                                                          std::memory_order_relaxed))
      continue;  // the victim or another thief moved first: look again
    std::atomic<uint64_t>& mine = ranges_[size_t(index)].v;
    mine.store(PackUnits(end - take, end, UnitsTag(mine.load(std::memory_order_relaxed)) + 1),
               std::memory_order_relaxed);
    return true;
  }
}

void ThreadPool::WaitForWorkers() {
  // The workers' parts are as long as ours: spin for up to kSpinMicros, then
  // yield in case a worker was descheduled (an oversubscribed machine). A
  // fixed count of pauses was too short on Zen 4 (a few ns each): the caller
  // went into sched_yield on ordinary end-of-product waits, 1.5% of a token.
  using Clock = std::chrono::steady_clock;
  if (prefetch_[0].bytes > 0)
    PrefetchSpans(&prefetch_[0], [this] { return pending_.load(std::memory_order_relaxed) != 0; });
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
  Publish(n, 0, fn, {});
  RunPart(0);
  WaitForWorkers();
}

void ThreadPool::BalancedShare(int64_t n, int64_t chunk, int index, int64_t* begin, int64_t* end) const {
  const int64_t unit = UnitSize(n, chunk);
  Range((n + unit - 1) / unit, num_threads_, index, begin, end);
  *begin = std::min(n, *begin * unit);
  *end = std::min(n, *end * unit);
}

void ThreadPool::ParallelForBalanced(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn,
                                     std::span<const PrefetchSpan> prefetch) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  Publish(n, UnitSize(n, chunk), fn, prefetch);
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
    // This job's spans are copied before the part is reported done: the
    // caller rewrites prefetch_ for the next job only after that.
    PrefetchSpan spans[kMaxPrefetchSpans];
    std::copy_n(&prefetch_[size_t(index) * kMaxPrefetchSpans], kMaxPrefetchSpans, spans);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
    if (spans[0].bytes > 0)
      PrefetchSpans(spans, [this, seen] { return generation_.load(std::memory_order_relaxed) == seen; });
  }
}

}  // namespace lowbit
