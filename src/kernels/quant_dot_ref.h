// Scalar references of the quantized dot products (principle 4): one weight
// row of a ggml block format against one activation row quantized to the
// format's activation type (FormatInfo::activation), n elements, written
// plainly from the block datasheets in formats/. Per block, the integer sums
// are exact and the float term is added block after block. The SIMD kernels
// (gemm_quant.cc) must give the same integer block sums; their float results
// agree within a rounding bound derived from VecDotAbsRef (kernels_test.cc).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace lowbit {

// One block of a weight row against one activation block.
//   ints: the exact integer sums, as the SIMD kernels produce them (see each
//         format below); term: the block's float contribution to the dot;
//   abs:  the same sum with every product and scale taken in absolute value
//         (offset codes q - o counted as |q - o| + 2o), which bounds every
//         partial sum an exact-integer kernel forms, so K u abs bounds the
//         rounding of any summation order.
struct BlockDot {
  int32_t ints[2] = {0, 0};
  float term = 0.0f;
  float abs = 0.0f;
};

// The integer sums per format (a = activation codes, q = weight codes):
//   q4_0: sum (q - 8) a     q8_0: sum q a      q5_0: sum (q - 16) a
//   iq4_nl: sum v[q] a      q4_1, q5_1: sum q a (the min term uses the q8_1 s field)
//   q4_k, q5_k, q2_k: [sum_j sc_j sum q a, sum_j m_j sum a]
//   q6_k: sum_j sc_j sum (q - 32) a     q3_k: sum_j sc_j sum (q - 4) a
//   iq4_xs: sum_j sc_j sum v[q] a       tq1_0, tq2_0: sum (t - 1) a
// (j runs over the sub-blocks; second int 0 where not listed.)
using BlockDotFn = BlockDot (*)(const uint8_t* w_block, const uint8_t* a_block);

struct QuantDotRef {
  BlockDotFn block;
  int block_size;      // elements per block
  int w_block_bytes;   // weight block bytes
  int a_block_bytes;   // activation block bytes
};

// The reference of weight format `type`, or nullptr when it has none.
const QuantDotRef* FindQuantDotRef(DType type);

// dot(w, a) over n elements (a multiple of the block size): block terms added
// in order from 0.0f.
float VecDotRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n);
// sum of the blocks' abs terms, in double.
double VecDotAbsRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n);
// out[2b], out[2b + 1] = block b's ints.
void BlockSumsRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out);

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void Q4KScaleMin(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// Q3_K: the signed scale sc_j - 32 of sub-block j (0..15) from the 12 packed bytes.
inline int Q3KScale(const uint8_t* scales, int j) {
  const int low = (scales[j % 8] >> (4 * (j / 8))) & 15;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// IQ4_XS: the signed scale ls_j - 32 of sub-block j (0..7).
inline int IQ4XSScale(uint16_t scales_h, const uint8_t* scales_l, int j) {
  const int low = (scales_l[j / 2] >> (4 * (j % 2))) & 15;
  const int high = (scales_h >> (2 * j)) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace lowbit
