// Reference FP32 operators: readable loops, accumulation in a fixed order so
// results are bit-identical for a given thread count.
#include "runtime/ops.h"

#include <cmath>
#include <vector>


namespace lowbit {

void AddBias(const TensorView& b, int64_t n, float* y) {
  const int64_t d = b.NumElements();
  std::vector<float> bias = ToF32(b);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i) y[t * d + i] += bias[size_t(i)];
}

void RmsNorm(const float* x, const TensorView& w, float eps, int64_t n, int64_t d, float* out) {
  std::vector<float> weight = ToF32(w);
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * d;
    float ss = 0.0f;
    for (int64_t i = 0; i < d; ++i) ss += xt[i] * xt[i];
    const float scale = 1.0f / std::sqrt(ss / float(d) + eps);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = xt[i] * scale * weight[size_t(i)];
  }
}

void LayerNorm(const float* x, const TensorView& w, const TensorView& b, float eps, int64_t n, int64_t d,
               float* out) {
  std::vector<float> weight = ToF32(w), bias = ToF32(b);
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * d;
    float mean = 0.0f;
    for (int64_t i = 0; i < d; ++i) mean += xt[i];
    mean /= float(d);
    float var = 0.0f;
    for (int64_t i = 0; i < d; ++i) var += (xt[i] - mean) * (xt[i] - mean);
    var /= float(d);
    const float scale = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = (xt[i] - mean) * scale * weight[size_t(i)] + bias[size_t(i)];
  }
}

void RopeAngles(int pos0, int64_t n, int head_dim, float theta, float* cs) {
  for (int64_t t = 0; t < n; ++t, cs += head_dim)
    for (int i = 0; i < head_dim / 2; ++i) {
      // Frequency of pair i: theta^(-2i/head_dim), the same in both conventions.
      const float freq = std::pow(theta, -float(2 * i) / float(head_dim));
      const float angle = float(pos0 + int(t)) * freq;
      cs[2 * i] = std::cos(angle);
      cs[2 * i + 1] = std::sin(angle);
    }
}

void RopeRotate(float* x, int n_heads, int head_dim, const float* cs, bool interleaved) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const int a = interleaved ? 2 * i : i;
      const int b = interleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

float Silu(float x) { return x / (1.0f + std::exp(-x)); }

float GeluTanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

}  // namespace lowbit
