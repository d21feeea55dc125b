// W8A8 and LLM.int8() matrix products: int8 weights (int8_sym_channel or
// int8_sym_tensor, one f32 scale per output row) against activations
// quantized to int8 on the fly, int8 x int8 -> int32 dots.
//   y (n, out) = x (n, in) @ W^T,  W (out, in), row o = [f32 s_w[o]][in codes u = q + 128]
// Activation quantization per kind (ActQuantKind):
//   int8 dynamic  s_x[t] = absmax(x[t, :]) / 127 per token (row of x)
//   int8 static   s_x[t] = the tensor's calibrated scale for every token
//   LLM.int8()    the input columns c where any |x[t, c]| >= threshold in
//                 this batch ("outlier columns") are multiplied in f32
//                 against the matching weight columns dequantized from int8
//                 (s_w[o] * q[o, c]: the file holds no higher-precision copy);
//                 every other column goes through the int8 dynamic path with
//                 the outlier columns set to 0 (so they neither count in the
//                 absmax nor in the integer dot), and the two parts are added.
//   q_x[t, c] = clamp(nearbyint(x[t, c] * (1 / s_x[t])), -127, 127)  (ties to even;
//               1 / s_x = 0 when s_x is 0 or its inverse overflows)
//   y[t, o]   = (s_x[t] * s_w[o]) * float(sum_c q_x[t, c] q[o, c])  [+ float part]
// The integer sums are exact (int32; in <= kW8A8MaxIn), so the SIMD kernels
// (AVX-512 VNNI vpdpbusd on AVX3_DL, AVX2 maddubs with the sign trick on
// AVX2/AVX3; the scalar references below AVX2) give the same y bits as the
// references for the int8 kinds; LLM.int8's float part uses the f32 GEMM
// (reference: DotF32Ref), so it agrees within float rounding.
// NaN activations give unspecified codes.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace lowbit {

enum class ActQuantKind : uint8_t { kInt8Dynamic, kInt8Static, kLlmInt8 };

struct ActQuantParams {
  ActQuantKind kind = ActQuantKind::kInt8Dynamic;
  float scale = 0.0f;      // kInt8Static: s_x (>= 0)
  float threshold = 6.0f;  // kLlmInt8: |x| >= threshold marks an outlier column (0: every column)
};

// Longest row whose int32 sums cannot overflow, even the VNNI kernel's sums
// of unsigned codes before the offset correction (in * 255 * 127 < 2^31).
inline constexpr int64_t kW8A8MaxIn = 65536;

// int8_sym_channel or int8_sym_tensor: the weight layouts MatMulW8A8 takes.
bool IsW8A8Weight(DType type);

// The product above; `reference` runs the scalar references. Throws Error for
// a weight type IsW8A8Weight rejects or rows longer than kW8A8MaxIn.
void MatMulW8A8(const TensorView& w, const ActQuantParams& act, const float* x, int64_t n, float* y,
                ThreadPool& pool, bool reference);

// Outlier bookkeeping of the LLM.int8() products since the last reset
// (process-wide, updated once per product): `columns` counts input columns
// over all products, `outlier_columns` the ones computed in f32.
struct W8A8Counters {
  int64_t products = 0;
  int64_t columns = 0;
  int64_t outlier_columns = 0;
  double outlier_fraction() const { return columns > 0 ? double(outlier_columns) / double(columns) : 0.0; }
};
W8A8Counters GetW8A8Counters();
void ResetW8A8Counters();

// ---- Building blocks (tests, benchmarks) ----
// Quantizes rows x in activations: static_scale >= 0 is used for every row,
// a negative one means dynamic (the row's absmax / 127); writes q (rows, in) and s (rows).
void QuantizeActInt8Ref(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s);
// The same on the best SIMD target (same bytes, same scales).
void QuantizeActInt8(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s);
// acc[t * rows + r] = sum_c (u[r][c] - 128) * q[t][c] for weight rows r of
// `w_codes` (row stride w_stride bytes, codes only) and n activation rows q (in).
void DotInt8Ref(const uint8_t* w_codes, int64_t w_stride, int64_t rows, const int8_t* q, int64_t n, int64_t in,
                int32_t* acc);
// The same through the current SIMD target's kernel.
void DotInt8(const uint8_t* w_codes, int64_t w_stride, int64_t rows, const int8_t* q, int64_t n, int64_t in,
             int32_t* acc);

}  // namespace lowbit
