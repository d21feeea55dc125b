// Observers: static activation ranges from calibration statistics (see observers.h).
#include "calib/observers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr int kStartBin = 128;     // TensorRT: thresholds below bin 128 of 2048 are never chosen
constexpr int kQuantLevels = 128;  // int8 magnitudes of a symmetric range (2^(8-1))
constexpr double kInt8Max = 127;   // symmetric int8: codes -127..127

// KL(P || Q) of two unnormalised distributions (scipy.stats.entropy):
// infinite where Q is 0 and P is not.
double KlDivergence(std::span<const double> p, std::span<const double> q) {
  double ps = 0, qs = 0;
  for (size_t k = 0; k < p.size(); ++k) ps += p[k], qs += q[k];
  double kl = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    if (p[k] == 0) continue;
    if (q[k] == 0) return std::numeric_limits<double>::infinity();
    kl += p[k] / ps * std::log((p[k] / ps) / (q[k] / qs));
  }
  return kl;
}

uint64_t Total(std::span<const uint64_t> hist) {
  uint64_t t = 0;
  for (uint64_t h : hist) t += h;
  return t;
}

// Bins up to the last non-empty one. TensorRT's histogram ends at the bin
// holding the largest value; ours may reach up to 2x beyond it after the range
// doubled, and searching those empty bins would only add ties above the data.
int UsedBins(std::span<const uint64_t> hist) {
  int nb = int(hist.size());
  while (nb > 0 && hist[size_t(nb) - 1] == 0) --nb;
  return nb;
}

}  // namespace

Observer ParseObserver(const std::string& name) {
  if (name == "minmax") return Observer::kMinMax;
  if (name == "ema") return Observer::kEma;
  if (name == "percentile") return Observer::kPercentile;
  if (name == "kl" || name == "entropy") return Observer::kKl;
  if (name == "mse") return Observer::kMse;
  Fail("unknown observer '{}' (expected minmax, ema, percentile, kl or mse)", name);
}

const char* ObserverName(Observer observer) {
  switch (observer) {
    case Observer::kMinMax:
      return "minmax";
    case Observer::kEma:
      return "ema";
    case Observer::kPercentile:
      return "percentile";
    case Observer::kKl:
      return "kl";
    case Observer::kMse:
      return "mse";
  }
  return "?";
}

float PercentileThreshold(std::span<const uint64_t> hist, float hist_max, double percentile) {
  if (!(percentile > 0 && percentile <= 100)) Fail("percentile {} is not in (0, 100]", percentile);
  const uint64_t total = Total(hist);
  if (total == 0 || hist_max == 0) return 0;
  const double width = double(hist_max) / double(hist.size());
  const double target = double(total) * percentile / 100;
  double below = 0;  // values in bins before b
  for (size_t b = 0; b < hist.size(); ++b) {
    if (hist[b] != 0 && below + double(hist[b]) >= target)
      return float((double(b) + (target - below) / double(hist[b])) * width);
    below += double(hist[b]);
  }
  return hist_max;
}

float KlThreshold(std::span<const uint64_t> hist, float hist_max) {
  if (Total(hist) == 0 || hist_max == 0) return 0;
  const double width = double(hist_max) / double(hist.size());
  const int nb = UsedBins(hist);
  if (nb <= kStartBin) return float(nb * width);
  std::vector<double> bins(hist.begin(), hist.end());
  // The spike at 0 (padding, ReLU zeros) would dominate the divergence.
  bins[0] = bins[1];
  std::vector<double> tail(size_t(nb) + 1, 0.0);  // tail[i] = sum of bins[i, nb)
  for (int b = nb - 1; b >= 0; --b) tail[size_t(b)] = tail[size_t(b) + 1] + bins[size_t(b)];

  std::vector<double> p(static_cast<size_t>(nb)), q(static_cast<size_t>(nb));
  double group_sum[kQuantLevels], group_nonzero[kQuantLevels];
  double best = std::numeric_limits<double>::infinity();
  int best_i = nb;
  for (int i = kStartBin; i <= nb; ++i) {
    // P: bins[0, i) with everything clipped at the threshold added to the last kept bin.
    std::copy_n(bins.begin(), i, p.begin());
    p[size_t(i) - 1] += tail[size_t(i)];
    // Q: source bin b falls in quantized bin floor(b * 128 / i) (numpy digitize over linspace(0, i, 129)).
    std::fill_n(group_sum, kQuantLevels, 0.0);
    std::fill_n(group_nonzero, kQuantLevels, 0.0);
    for (int b = 0; b < i; ++b) {
      const int k = int(int64_t(b) * kQuantLevels / i);
      group_sum[k] += bins[size_t(b)];
      group_nonzero[k] += bins[size_t(b)] != 0;
    }
    for (int b = 0; b < i; ++b) {
      const int k = int(int64_t(b) * kQuantLevels / i);
      q[size_t(b)] = bins[size_t(b)] != 0 ? group_sum[k] / group_nonzero[k] : 0.0;
    }
    // Infinite when bin i - 1 is empty but values beyond it were clipped into it: never chosen.
    const double kl = KlDivergence({p.data(), size_t(i)}, {q.data(), size_t(i)});
    if (kl <= best) best = kl, best_i = i;  // the last minimum, as TensorRT
  }
  return float(best_i * width);
}

float MseThreshold(std::span<const uint64_t> hist, float hist_max) {
  if (Total(hist) == 0 || hist_max == 0) return 0;
  const double width = double(hist_max) / double(hist.size());
  const int nb = UsedBins(hist);
  if (nb <= kStartBin) return float(nb * width);
  std::vector<int> used;  // bins with counts
  for (int b = 0; b < nb; ++b)
    if (hist[size_t(b)] != 0) used.push_back(b);
  double best = std::numeric_limits<double>::infinity();
  double best_t = nb * width;
  for (int i = kStartBin; i < nb; ++i) {
    const double t = (i + 0.5) * width;  // candidate threshold: the centre of bin i
    const double scale = kInt8Max / t;
    double err = 0;
    for (int b : used) {
      const double c = (b + 0.5) * width;
      const double fq = std::clamp(std::nearbyint(c * scale), -kInt8Max, kInt8Max) / scale;
      err += double(hist[size_t(b)]) * (fq - c) * (fq - c);
    }
    if (err < best) best = err, best_t = t;  // the first minimum, as np.argmin
  }
  return float(best_t);
}

float ActivationRange(const LinearInputStats& stats, Observer observer, double param) {
  if (stats.count == 0) Fail("'{}': no activations were recorded", stats.weight);
  if (observer != Observer::kPercentile && param != 0)
    Fail("observer {} takes no parameter (got {})", ObserverName(observer), param);
  if (!stats.has_observer_stats())
    Fail(
        "'{}': the statistics hold only llama.cpp importance (an imatrix file); the {} observer needs "
        "`lowbit calibrate` statistics",
        stats.weight, ObserverName(observer));
  switch (observer) {
    case Observer::kMinMax:
      return *std::max_element(stats.absmax.begin(), stats.absmax.end());
    case Observer::kEma:
      return std::max(std::fabs(stats.ema_min), std::fabs(stats.ema_max));
    case Observer::kPercentile:
      return PercentileThreshold(stats.hist, stats.hist_max, param == 0 ? kDefaultPercentile : param);
    case Observer::kKl:
      return KlThreshold(stats.hist, stats.hist_max);
    case Observer::kMse:
      return MseThreshold(stats.hist, stats.hist_max);
  }
  return 0;
}

}  // namespace lowbit
