// Sampler implementation: softmax over the filtered candidates, then one draw.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace lowbit {

int32_t Argmax(std::span<const float> values) {
  LOWBIT_CHECK(!values.empty());
  return int32_t(std::max_element(values.begin(), values.end()) - values.begin());
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (options.temperature < 0.0f || !std::isfinite(options.temperature))
    Fail("--temp must be >= 0, got {}", options.temperature);
  if (options.top_p <= 0.0f || !std::isfinite(options.top_p)) Fail("--top-p must be > 0, got {}", options.top_p);
}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (options_.temperature == 0.0f) return Argmax(logits);
  const int n = int(logits.size());
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  // Candidates in descending logit order; ties broken by id so the order is deterministic.
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  int keep = options_.top_k > 0 ? std::min(options_.top_k, n) : n;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  ids.resize(size_t(keep));
  std::vector<double> probs(ids.size());
  const double max = logits[size_t(ids[0])];
  double sum = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    probs[i] = std::exp((double(logits[size_t(ids[i])]) - max) / double(options_.temperature));
    sum += probs[i];
  }
  // Nucleus: keep the smallest prefix whose probability mass reaches top_p.
  double mass = 0.0;
  size_t cut = probs.size();
  for (size_t i = 0; i < probs.size(); ++i) {
    mass += probs[i] / sum;
    if (mass >= double(options_.top_p)) {
      cut = i + 1;
      break;
    }
  }
  probs.resize(cut);
  std::discrete_distribution<size_t> pick(probs.begin(), probs.end());
  return ids[pick(rng_)];
}

}  // namespace lowbit
