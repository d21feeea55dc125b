// Scalar references of the quantized dot products (principle 4): one weight
// row of a ggml block format against one activation row quantized to the
// format's activation type (FormatInfo::activation), n elements. Written
// plainly from the block datasheets in formats/: each block's integer sum is
// exact, then the float combination is added block after block. The SIMD
// kernels (gemm_quant.cc) must give the same integer block sums; their float
// results agree within a derived rounding bound (kernels_test.cc).
#pragma once

#include <cstdint>

namespace lowbit {

// Q4_0 weights x Q8_0 activations: sum_b d_w d_a sum_i (q_i - 8) a_i.
float VecDotQ4_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n);
// Q8_0 weights x Q8_0 activations: sum_b d_w d_a sum_i q_i a_i.
float VecDotQ8_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n);
// Q4_K weights x Q8_K activations:
//   sum_b d_a (d sum_j sc_j sum_{i in j} q_i a_i - dmin sum_j m_j sum_{i in j} a_i).
float VecDotQ4_KQ8_KRef(const uint8_t* w, const uint8_t* a, int64_t n);

// The integer parts per block, for exact comparison with the SIMD kernels:
// out[2b] = the weighted code sum, out[2b + 1] = the min/offset sum (0 for
// formats without one, e.g. Q4_0 folds its -8 into the first).
void BlockSumsQ4_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out);
void BlockSumsQ8_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out);
void BlockSumsQ4_KQ8_KRef(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out);

// Q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void Q4KScaleMin(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

}  // namespace lowbit
