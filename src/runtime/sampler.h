// Token sampling: greedy at temperature 0, otherwise temperature, top-k and
// top-p (nucleus) filtering with a seeded generator, so the same seed gives
// the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace lowbit {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy (argmax, lowest id on ties)
  int top_k = 40;            // <= 0: no top-k limit
  float top_p = 0.95f;       // >= 1: no nucleus limit
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  int32_t Sample(std::span<const float> logits);

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
};

int32_t Argmax(std::span<const float> values);

}  // namespace lowbit
