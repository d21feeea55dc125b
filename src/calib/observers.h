// Observers: turn calibration statistics into one static, symmetric
// activation range per tensor (the absmax threshold T; int8 then uses
// scale = T / 127). The algorithms follow PyTorch's observers and NVIDIA's
// TensorRT / pytorch-quantization histogram calibrator
// (../shared/docs/research/peers.md §7):
//   minmax      largest |x| seen (MinMaxObserver, symmetric)
//   ema         max(|ema_min|, |ema_max|) of the per-batch moving average,
//               constant 0.01 (MovingAverageMinMaxObserver)
//   percentile  the |x| below which `param` % of values fall (default
//               99.99), read off the 2048-bin histogram with linear
//               interpolation inside the bin (NVIDIA takes the bin's left
//               edge, up to one bin width lower)
//   kl          TensorRT entropy calibration, as NVIDIA's pytorch-quantization
//               codes it (_compute_amax_entropy): bin 0 set to bin 1 (the
//               zero spike), then for each i from 128 to the last non-empty
//               bin the reference P = bins[0, i) with the clipped tail added
//               to its last bin, and the candidate Q = bins[0, i) merged into
//               128 groups (bin b in group floor(128 b / i)), each group's
//               sum spread evenly over its non-empty bins (empty bins stay 0,
//               so an i whose last bin is empty but has a clipped tail scores
//               infinity); T = the upper edge of bin i of the last minimum of
//               KL(P||Q). The MXNet/TVM ports differ (Q's empty bins follow P,
//               eps-smoothing); cross-checked against a plain Python port of
//               the NVIDIA code on Gaussian and exponential histograms.
//   mse         the bin centre c_i (128 <= i < last non-empty bin) minimising
//               sum_b count_b * (fq(c_b) - c_b)^2 with symmetric int8
//               fake-quantization at T = c_i (_compute_amax_mse)
// The histogram methods search only up to the last non-empty bin: TensorRT's
// histogram ends at the bin holding the largest value, ours may reach 2x
// beyond it after its range doubled (calib/stats.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "calib/stats.h"

namespace lowbit {

enum class Observer { kMinMax, kEma, kPercentile, kKl, kMse };

// "minmax", "ema", "percentile", "kl" (or "entropy"), "mse"; throws Error on
// anything else, listing the names.
Observer ParseObserver(const std::string& name);
const char* ObserverName(Observer observer);

constexpr double kDefaultPercentile = 99.99;

// The static range T for the input of `stats.weight`. `param` is the
// percentile for kPercentile (0 = 99.99, else in (0, 100]) and must be 0 for
// the others. Throws Error when the stats have no observations or (llama.cpp
// imatrix files) no histogram. All-zero inputs give 0.
float ActivationRange(const LinearInputStats& stats, Observer observer, double param = 0);

// The histogram methods on their own: `hist` counts |x| in equal bins over
// [0, hist_max]. Exposed for tests and for methods that build histograms.
float PercentileThreshold(std::span<const uint64_t> hist, float hist_max, double percentile);
float KlThreshold(std::span<const uint64_t> hist, float hist_max);
float MseThreshold(std::span<const uint64_t> hist, float hist_max);

}  // namespace lowbit
