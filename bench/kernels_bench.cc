// kernels_bench: MatMul throughput beside the roofline it is measured against.
//   GEMV (n = 1): weight GB/s vs a plain read-bandwidth loop over the same
//   bytes; GEMM (n = 128): GFLOP/s (2 * out * in * n per call).
// Weights cycle through enough copies to overflow the L3 cache ("dram"), or
// reuse one copy ("l3"), so both rooflines are visible. Not a test: prints
// numbers only. Usage: kernels_bench [threads=2] [formats=f16,q8_0,q4_0,q4_k,q6_k]
// (a format name + "p", e.g. q4_0p, runs its packed layout, kernels/packed.h)
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/stream_buffer.h"
#include "core/thread_pool.h"
#include "formats/format.h"
#include "kernels/matmul.h"
#include "kernels/packed.h"

namespace lowbit {
namespace {

double CpuTime() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Timings of `reps` calls fn(i) (i = repetition index), in seconds: the best
// wall time, and the mean process CPU time divided by `threads` -- on a
// machine shared with other jobs, the time the call would take if its
// threads had the cores to themselves.
struct Timing {
  double best_wall, cpu_per_thread;
};
template <typename Fn>
Timing Time(int reps, int threads, const Fn& fn) {
  double best = 1e30;
  const double c0 = CpuTime();
  for (int i = 0; i < reps; ++i) {
    const double t0 = Now();
    fn(i);
    best = std::min(best, Now() - t0);
  }
  return {best, (CpuTime() - c0) / reps / threads};
}

// Sums 64-bit words with 8 independent accumulators: the compiler vectorizes
// it, so it runs at the read bandwidth the cores can draw.
uint64_t ReadSum(const uint64_t* p, int64_t words) {
  uint64_t acc[8] = {};
  for (int64_t i = 0; i + 8 <= words; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  uint64_t s = 0;
  for (uint64_t v : acc) s += v;
  return s;
}

struct Matrix {
  std::vector<std::vector<uint8_t>> copies;
  std::vector<std::unique_ptr<PackedWeights>> packed;
  std::vector<TensorView> views;
  size_t bytes = 0;
};

// With `pack`, the views carry packed copies (kernels/packed.h).
Matrix MakeMatrix(const FormatInfo& f, int64_t out, int64_t in, int copies, bool pack, ThreadPool& pool) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> values(size_t(out * in));
  for (float& v : values) v = dist(rng);
  Matrix m;
  m.bytes = f.RowBytes(in) * size_t(out);
  std::vector<uint8_t> q(m.bytes);
  f.quantize(values.data(), out, in, q.data(), nullptr);
  for (int c = 0; c < copies; ++c) m.copies.push_back(q);
  for (auto& c : m.copies) {
    TensorView v;
    v.type = f.id;
    v.shape = {out, in};
    v.data = c.data();
    v.bytes = c.size();
    if (pack) {
      m.packed.push_back(PackWeights(v, pool));
      v.packed = m.packed.back().get();
    }
    m.views.push_back(v);
  }
  return m;
}

void Run(int threads, const std::vector<std::string>& formats) {
  ThreadPool pool(threads);
  // Working set: three times this (the guest's L3; the host's may be larger,
  // so KB_WORKING_SET_MB=400 makes sure the weights stream from DRAM).
  const int64_t kL3 = std::getenv("KB_WORKING_SET_MB") ? (int64_t(std::atoi(std::getenv("KB_WORKING_SET_MB"))) << 20) / 3
                                                         : 32 << 20;
  std::printf("threads %d; targets:", threads);
  for (const auto& t : KernelTargets()) std::printf(" %s", t.name.c_str());
  std::printf(" (best used)\n");

  struct Shape {
    int64_t out, in;
  };
  // TinyLlama-1.1B's MLP and attention-projection shapes (KB_SHAPES=mlp or attn picks one kind).
  const char* shapes_env = std::getenv("KB_SHAPES");
  const std::string kind = shapes_env ? shapes_env : "";
  std::vector<Shape> shapes;
  if (kind != "attn") shapes.insert(shapes.end(), {Shape{5632, 2048}, Shape{2048, 5632}});
  if (kind != "mlp") shapes.insert(shapes.end(), {Shape{2048, 2048}, Shape{256, 2048}});
  for (const Shape s : shapes) {
    for (std::string name : formats) {
      // "q4_0p": the packed layout of q4_0.
      const bool pack = name.size() > 1 && name.back() == 'p' && FindFormatByName(name.substr(0, name.size() - 1));
      const FormatInfo* f = FindFormatByName(pack ? name.substr(0, name.size() - 1) : name);
      if (!f || (pack && !(HasPackedLayout(f->id) && HasFastPackedKernel()))) continue;
      const size_t bytes = f->RowBytes(s.in) * size_t(s.out);
      const int copies = int(std::max<int64_t>(1, 3 * kL3 / int64_t(bytes) + 1));
      Matrix m = MakeMatrix(*f, s.out, s.in, copies, pack, pool);
      // Read roofline over the same bytes and copies, in huge pages.
      const size_t n_words = bytes * size_t(copies) / 8 + 8;
      const StreamBuffer<uint64_t> words = MakeStreamBuffer<uint64_t>(n_words, "read buffer");
      std::fill(words.get(), words.get() + n_words, uint64_t(1));
      const int64_t per_copy = int64_t(bytes / 8);
      volatile uint64_t sink = 0;
      auto read = [&](int i) {
        const uint64_t* base = words.get() + (i % copies) * per_copy;
        pool.ParallelFor(threads, [&](int64_t b, int64_t e) {
          for (int64_t k = b; k < e; ++k) {
            const int64_t len = per_copy / threads;
            sink = sink + ReadSum(base + k * len, len);
          }
        });
      };
      const int reps = 20 * copies;
      const Timing t_read = Time(reps, threads, read);
      std::vector<float> x(size_t(128 * s.in), 0.5f), y(size_t(128 * s.out));
      const Timing t_gemv = Time(reps, threads, [&](int i) {
        MatMul(m.views[size_t(i % copies)], x.data(), 1, y.data(), pool, false);
      });
      const Timing t_gemm = Time(5, threads, [&](int i) {
        MatMul(m.views[size_t(i % copies)], x.data(), 128, y.data(), pool, false);
      });
      const double gb = double(bytes) / 1e9, flop = 2.0 * double(s.out * s.in) * 128;
      std::printf("%-5s %5lldx%-5lld %6.2f MB | wall: read %5.1f GB/s gemv %5.1f GB/s (%3.0f%%) gemm %5.1f GFLOP/s"
                  " | cpu-normalized: read %5.1f gemv %5.1f (%3.0f%%) gemm %5.1f\n",
                  name.c_str(), (long long)s.out, (long long)s.in, double(bytes) / 1e6, gb / t_read.best_wall,
                  gb / t_gemv.best_wall, 100.0 * t_read.best_wall / t_gemv.best_wall, flop / t_gemm.best_wall / 1e9,
                  gb / t_read.cpu_per_thread, gb / t_gemv.cpu_per_thread,
                  100.0 * t_read.cpu_per_thread / t_gemv.cpu_per_thread, flop / t_gemm.cpu_per_thread / 1e9);
    }
  }
}

}  // namespace
}  // namespace lowbit

// Profiling mode: `kernels_bench loop FORMAT N ITERS [OUT IN]` runs MatMul on
// one matrix ITERS times on 1 thread (for perf stat / perf record).
int Loop(int argc, char** argv) {
  using namespace lowbit;
  std::string name = argv[2];
  const bool pack = name.size() > 1 && name.back() == 'p' && FindFormatByName(name.substr(0, name.size() - 1));
  const FormatInfo* f = FindFormatByName(pack ? name.substr(0, name.size() - 1) : name);
  if (!f) return 1;
  const int64_t n = std::atoll(argv[3]), iters = std::atoll(argv[4]);
  const int64_t out = argc > 6 ? std::atoll(argv[5]) : 5632, in = argc > 6 ? std::atoll(argv[6]) : 2048;
  ThreadPool pool(1);
  Matrix m = MakeMatrix(*f, out, in, 1, pack, pool);
  std::vector<float> x(size_t(n * in), 0.5f), y(size_t(n * out));
  const double t0 = Now(), c0 = CpuTime();
  for (int64_t i = 0; i < iters; ++i) MatMul(m.views[0], x.data(), n, y.data(), pool, false);
  const double t = (Now() - t0) / double(iters), c = (CpuTime() - c0) / double(iters);
  // CPU time leaves out the time other processes held the core (shared machines).
  std::printf("%s n=%lld: %.3f ms/call wall, %.3f ms cpu; per cpu time %.1f GB/s, %.1f GFLOP/s\n", argv[2],
              (long long)n, t * 1e3, c * 1e3, double(m.bytes) / c / 1e9, 2.0 * double(out * in * n) / c / 1e9);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 4 && std::string(argv[1]) == "loop") return Loop(argc, argv);
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::vector<std::string> formats = {"f16", "q8_0", "q8_0p", "q4_0", "q4_0p", "q4_k", "q4_kp", "q6_k"};
  if (argc > 2) {
    formats.clear();
    std::stringstream ss(argv[2]);
    for (std::string f; std::getline(ss, f, ',');) formats.push_back(f);
  }
  lowbit::Run(threads, formats);
  return 0;
}
