// llama-bench-style pp/tg timing over lowbit::Session, and the streaming-read
// bandwidth probe behind the generation roofline.
#include "eval/bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "core/stream_buffer.h"
#include "core/thread_pool.h"
#include "runtime/session.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// Sums words [begin, end) with 8 independent accumulators so the loop is
// bound by loads, not by one add chain; the compiler vectorises it.
uint64_t SumWords(const uint64_t* p, int64_t begin, int64_t end) {
  uint64_t acc[8] = {};
  int64_t i = begin;
  for (; i + 8 <= end; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  for (; i < end; ++i) acc[0] += p[i];
  uint64_t s = 0;
  for (uint64_t a : acc) s += a;
  return s;
}

}  // namespace

MeanStdev MeanAndStdev(const std::vector<double>& samples) {
  MeanStdev r;
  if (samples.empty()) return r;
  for (double s : samples) r.mean += s;
  r.mean /= double(samples.size());
  if (samples.size() > 1) {
    double ss = 0;
    for (double s : samples) ss += (s - r.mean) * (s - r.mean);
    r.stdev = std::sqrt(ss / double(samples.size() - 1));  // sample stdev, as llama-bench
  }
  return r;
}

uint64_t BytesPerGeneratedToken(const Model& model) {
  uint64_t bytes = 0;
  for (const TensorView& t : model.tensors())
    if (t.name != "token_embd.weight" && t.name != "position_embd.weight") bytes += t.bytes;
  if (model.config.tied_output) bytes += model.Get("token_embd.weight").bytes;
  return bytes;
}

namespace {

// The streaming-read probe: `threads` threads each sum their contiguous share
// of a buffer in huge pages (as the packed weights are: the best read rate,
// not one that stops the prefetchers at every 4 KiB page). One Run() is one
// timed pass.
class ReadProbe {
 public:
  ReadProbe(int threads, size_t bytes)
      : pool_(threads), words_(int64_t(bytes / sizeof(uint64_t))) {
    if (words_ <= 0) Fail("bandwidth probe: empty buffer");
    buf_ = MakeStreamBuffer<uint64_t>(size_t(words_), "bandwidth probe");
    // First touch from the threads that will read each part (NUMA-local pages).
    pool_.ParallelFor(words_, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) buf_[size_t(i)] = uint64_t(i);
    });
  }
  ~ReadProbe() {
    volatile uint64_t sink = sum_.load();  // the sums are used, so the reads cannot be elided
    (void)sink;
  }
  double Run() {  // bytes/s
    const Clock::time_point t0 = Clock::now();
    pool_.ParallelFor(words_, [&](int64_t b, int64_t e) { sum_ += SumWords(buf_.get(), b, e); });
    return double(words_) * sizeof(uint64_t) / Seconds(t0);
  }
  // Passes for at least `seconds` (one at least): their mean rate (total
  // bytes / total time); `best` keeps the fastest single pass.
  double RunFor(double seconds, double* best) {
    const Clock::time_point t0 = Clock::now();
    int passes = 0;
    do {
      *best = std::max(*best, Run());
      ++passes;
    } while (Seconds(t0) < seconds);
    return double(passes) * double(words_) * sizeof(uint64_t) / Seconds(t0);
  }

 private:
  ThreadPool pool_;
  int64_t words_;
  StreamBuffer<uint64_t> buf_;
  std::atomic<uint64_t> sum_{0};
};

}  // namespace

BenchResult RunBench(const Model& model, const BenchOptions& o,
                     const std::function<void(const std::string&)>& on_step) {
  auto step = [&](const std::string& s) {
    if (on_step) on_step(s);
  };
  if (o.prompt_tokens < 0 || o.gen_tokens < 0 || o.repetitions < 1)
    Fail("bench: need p >= 0, n >= 0 and at least one repetition");
  BenchResult r;
  r.threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  r.prompt_tokens = o.prompt_tokens;
  r.gen_tokens = o.gen_tokens;
  r.repetitions = o.repetitions;
  for (const TensorView& t : model.tensors()) r.model_bytes += t.bytes;
  r.bytes_per_token = BytesPerGeneratedToken(model);

  const int vocab = model.config.vocab_size;
  const int32_t bos = model.tokenizer->bos();
  std::mt19937_64 rng(o.seed);
  auto random_token = [&] { return int32_t(rng() % uint64_t(vocab)); };

  SessionOptions so;
  so.threads = r.threads;
  so.pack_weights = o.pack_weights;
  so.max_context = std::max({o.prompt_tokens, o.gen_tokens, 1});
  so.max_batch = std::max(o.prompt_tokens, 1);  // the whole prompt is one batch
  Session session(model, so);

  std::vector<int32_t> prompt(size_t(o.prompt_tokens));
  for (int32_t& t : prompt) t = random_token();
  if (!prompt.empty() && bos >= 0) prompt[0] = bos;
  auto run_pp = [&] {
    session.Reset();
    const Clock::time_point t0 = Clock::now();
    session.Eval(prompt, false);
    return double(o.prompt_tokens) / Seconds(t0);
  };
  auto run_tg = [&](int n) {
    session.Reset();
    int32_t token = bos >= 0 ? bos : random_token();
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      session.Eval(std::span(&token, 1), false);
      token = random_token();
    }
    return double(n) / Seconds(t0);
  };

  std::vector<double> pp, tg;
  if (o.prompt_tokens > 0) {
    step(fmt::format("warmup pp{}", o.prompt_tokens));
    run_pp();
    for (int k = 0; k < o.repetitions; ++k) {
      ThrowIfInterrupted();
      step(fmt::format("pp{} {}/{}", o.prompt_tokens, k + 1, o.repetitions));
      pp.push_back(run_pp());
    }
  }
  // The read bandwidth of a shared machine drifts: here 31-36 GB/s most of
  // the time, with spells of 45-60 GB/s that last from tens of ms to tens of
  // seconds. A tg repetition takes about a second, so the probe reads
  // for as long as one (a window, several 1 GiB passes) before and after
  // every repetition: the roofline is the best window, and each repetition
  // is also set against the faster window beside it
  // (roofline_fraction_paired). The best single pass (a burst a short
  // probe may catch) is reported as the peak.
  if (o.bandwidth_runs <= 0) Fail("bench: need at least one bandwidth run");
  step("read bandwidth");
  ReadProbe probe(r.threads, o.bandwidth_bytes);
  double peak = 0, window = kNoTgWindowSeconds;
  std::vector<double> windows, paired;
  if (o.gen_tokens > 0) {
    step("warmup tg");
    const Clock::time_point t0 = Clock::now();
    run_tg(1);
    window = Seconds(t0) * o.gen_tokens;  // about one repetition
    windows.push_back(probe.RunFor(window, &peak));
    for (int k = 0; k < o.repetitions; ++k) {
      ThrowIfInterrupted();
      step(fmt::format("tg{} {}/{}", o.gen_tokens, k + 1, o.repetitions));
      tg.push_back(run_tg(o.gen_tokens));
      window = o.gen_tokens / tg.back();
      windows.push_back(probe.RunFor(window, &peak));
      const double beside = std::max(windows[windows.size() - 2], windows.back());
      if (r.bytes_per_token > 0) paired.push_back(tg.back() * double(r.bytes_per_token) / beside);
    }
  }
  r.pp_tokens_per_s = MeanAndStdev(pp);
  r.tg_tokens_per_s = MeanAndStdev(tg);
  r.tg_repetitions = tg;

  while (int(windows.size()) < o.bandwidth_runs) windows.push_back(probe.RunFor(window, &peak));
  r.read_bandwidth_gb_s = *std::max_element(windows.begin(), windows.end()) / 1e9;
  r.read_bandwidth_peak_gb_s = peak / 1e9;
  for (double w : windows) r.bandwidth_windows_gb_s.push_back(w / 1e9);
  if (!paired.empty()) {
    std::sort(paired.begin(), paired.end());
    const size_t m = paired.size() / 2;
    r.roofline_fraction_paired = paired.size() % 2 ? paired[m] : 0.5 * (paired[m - 1] + paired[m]);
  }
  if (r.bytes_per_token > 0) r.tg_roofline_tokens_per_s = r.read_bandwidth_gb_s * 1e9 / double(r.bytes_per_token);
  if (r.tg_roofline_tokens_per_s > 0) r.roofline_fraction = r.tg_tokens_per_s.mean / r.tg_roofline_tokens_per_s;
  return r;
}

}  // namespace lowbit
