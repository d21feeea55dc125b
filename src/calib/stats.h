// Activation statistics for calibration: for the input of every linear layer
// (keyed by the weight's GGUF name) per-channel min / max / absmax / mean |x| /
// mean x^2, a running 2048-bin histogram of |x| over all channels, and a
// moving average of per-batch extremes. The statistics feed llama.cpp-style
// importance weighting (mean x^2 = in_sum2 / count) and the static-range
// observers of calib/observers.h.
//
// File layout (one GGUF, written atomically): llama.cpp's imatrix GGUF
// (tools/imatrix, PR #9400 / #14842; the ../peers Feb-2025 snapshot still
// writes the legacy .dat, so the names follow llama.cpp's current writer as
// described in ../shared/docs/research/llamacpp.md §2.4):
//   general.type          = "imatrix"
//   imatrix.datasets      = [data file names]        (string array)
//   imatrix.chunk_count   = samples                  (u32)
//   imatrix.chunk_size    = tokens per sample        (u32)
//   <weight>.in_sum2      f32 ne {in, 1}   sum over tokens of x_j^2
//   <weight>.counts       f32 ne {1, 1}    tokens seen
// plus lowbit's observer statistics under other suffixes (llama.cpp's loaders
// pick the *.in_sum2 / *.counts pairs by suffix; not checked against a current
// llama.cpp build, whose GGUF imatrix reader is newer than ../peers):
//   lowbit.calib.version = 1, lowbit.calib.hist_bins = 2048,
//   lowbit.calib.ema_constant = 0.01, lowbit.calib.seed (u64)
//   <weight>.in_min / .in_max / .in_absmax / .in_mean_abs   f32 ne {in}
//   <weight>.in_hist      i64 ne {2048}    counts of |x| on [0, hist_max]
//   <weight>.in_hist_max  f32 ne {1}
//   <weight>.in_ema       f32 ne {2}       moving average of batch min, max
//   <weight>.in_tally     i64 ne {2}       exact tokens, batches
// Load also reads plain llama.cpp imatrix files (in_sum2 + counts only); the
// other fields are then empty and only importance is available.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/gguf.h"
#include "runtime/session.h"

namespace lowbit {

// Statistics of the input x (tokens, in) of one linear layer W (out, in).
struct LinearInputStats {
  std::string weight;    // GGUF tensor name, e.g. "blk.0.attn_q.weight"
  int64_t channels = 0;  // in
  int64_t count = 0;     // tokens (rows of x) seen
  // Per input channel (channels): extremes, max |x|, mean |x| and mean x^2
  // (llama.cpp's importance: in_sum2 / count).
  std::vector<float> min, max, absmax, mean_abs, mean_sq;
  // Histogram of |x| over all channels: hist[b] counts values in
  // (b, b + 1] * hist_max / bins (bin 0 also takes 0). hist_max starts at the
  // first non-zero batch's max |x| and doubles (adjacent bins merged
  // pairwise, exactly) whenever a larger value arrives, so it ends within a
  // factor 2 above the largest |x|. TensorRT's calibrator keeps the bin width
  // and adds bins instead; a fixed 2048 bins keeps the file layout fixed.
  float hist_max = 0;
  std::vector<uint64_t> hist;
  // PyTorch MovingAverageMinMaxObserver over batches (one batch = one
  // on_matmul_input call): the first batch's min/max over all channels, then
  // ema += 0.01 * (batch - ema).
  float ema_min = 0, ema_max = 0;
  int64_t batches = 0;

  bool has_observer_stats() const { return !hist.empty(); }  // false for llama.cpp files
};

// What the statistics were collected from (the imatrix.* metadata).
struct CalibrationInfo {
  std::vector<std::string> datasets;
  int64_t chunk_count = 0;  // samples
  int64_t chunk_size = 0;   // tokens per sample
  uint64_t seed = 0;
};

class ActivationStats {
 public:
  static constexpr int kHistogramBins = 2048;
  static constexpr float kEmaConstant = 0.01f;

  const LinearInputStats* Find(const std::string& weight) const;
  const std::map<std::string, LinearInputStats>& all() const { return stats_; }
  CalibrationInfo& info() { return info_; }
  const CalibrationInfo& info() const { return info_; }

  // Writes the GGUF layout above through GgufWriter (temp file + rename).
  void Save(const std::string& path) const;
  // Reads and validates a file written by Save or by llama-imatrix; throws
  // Error naming the file and the first problem (not an imatrix file, missing
  // or mis-shaped tensor, non-finite or inconsistent values).
  static ActivationStats Load(const std::string& path);
  // The same from a parsed GGUF (errors name file.name()).
  static ActivationStats FromGguf(const GgufFile& file);

  // Accumulates one batch x (n, in) that feeds weight W (out, in). Throws
  // Error on non-finite activations or a channel count that changed.
  // Sums are kept in double and added in row order: deterministic.
  void Add(const TensorView& weight, const float* x, int64_t n);

 private:
  struct Sums {
    std::vector<double> sum_abs, sum_sq;  // (channels)
  };
  std::map<std::string, LinearInputStats> stats_;
  std::map<std::string, Sums> sums_;
  CalibrationInfo info_;
};

// Runs each sample from an empty cache through `session` (logits for every
// token, so the output head sees every row too) with on_matmul_input feeding
// `stats`; restores the session's previous hook. `on_sample(i)` is called
// after each sample (progress); Ctrl-C stops with Error("interrupted").
void CollectActivationStats(Session& session, const std::vector<std::vector<int32_t>>& samples, ActivationStats* stats,
                            const std::function<void(int)>& on_sample = {});

}  // namespace lowbit
