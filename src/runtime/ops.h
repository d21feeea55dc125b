// Reference FP32 operators of the forward pass besides the matrix products
// (those are kernels/matmul.h): plain loops, no intrinsics, shapes in comments.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "formats/format.h"
#include "core/thread_pool.h"

namespace lowbit {

// y (n, d) += b (d): adds a bias (any loadable dtype) to every row.
void AddBias(const TensorView& b, int64_t n, float* y);

// out (n, d) = x / sqrt(mean(x^2) + eps) * w, row by row.
void RmsNorm(const float* x, const TensorView& w, float eps, int64_t n, int64_t d, float* out);

// out (n, d) = (x - mean) / sqrt(var + eps) * w + b, row by row.
void LayerNorm(const float* x, const TensorView& w, const TensorView& b, float eps, int64_t n, int64_t d,
               float* out);

// Rotary position embedding. RopeAngles: for positions pos0 .. pos0 + n - 1,
// cs (n, head_dim): row t's cs[2i], cs[2i+1] = cos, sin of pair i's rotation
// at pos0 + t (head_dim / 2 pairs), the same for every head and layer.
// RopeRotate applies one row in place to x (n_heads, head_dim).
// interleaved: rotates pairs (2i, 2i+1); otherwise pairs (i, i + head_dim/2).
void RopeAngles(int pos0, int64_t n, int head_dim, float theta, float* cs);
void RopeRotate(float* x, int n_heads, int head_dim, const float* cs, bool interleaved);

// Softmax: kernels/attention.h (SoftmaxRef and the SIMD attention).

float Silu(float x);
// GPT-2's tanh approximation ("gelu_new").
float GeluTanh(float x);

}  // namespace lowbit
