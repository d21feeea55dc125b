// Reference codecs of the K-quants and IQ4_XS (formats in ggml_kquants.h).
//
// Quantizers follow llama.cpp's ggml-quants.c (which llama-quantize reaches
// through ggml_quantize_chunk -> quantize_<type>):
//   - importance == null: quantize_<type> falls back to quantize_row_<type>_ref
//     for Q2_K..Q6_K, so we reproduce the _ref algorithms; IQ4_XS has only
//     one algorithm (quantize_iq4_xs with 7 scale trials either way);
//   - importance != null: the per-row quantize_row_<type>_impl paths.
// Float expressions keep ggml's operation order (see ggml_kquants_search.h).
// Blocks are copied in and out with memcpy: rows come from mmapped files at
// any alignment, and a local Block makes the packing code plain C++.
#include "formats/ggml_kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "formats/ggml_block_util.h"
#include "formats/ggml_kquants_search.h"
#include "formats/iq4_table.h"

namespace lowbit {

namespace {

using kquant::kSuperBlock;
using kquant::MakeQkxQuants;
using kquant::MakeQpQuants;
using kquant::NearestInt;

// Super-scales are stored as f16. llama.cpp stores inf when one exceeds the
// f16 range (weights beyond ~1e6 to ~1e7 in magnitude, depending on the
// type), and such blocks decode to inf/NaN; we saturate to the largest finite
// f16 instead, so decoding stays finite (values clip). Identity for every
// scale llama.cpp can store finitely, so byte-equality holds where it matters.
uint16_t ScaleToF16(float d) { return F32ToF16(std::clamp(d, -65504.f, 65504.f)); }

// Quantizes rows x (rows, n) into blocks of type Block, one super-block at a
// time: fn(x_block, importance_block or null, Block&). The importance vector
// has one weight per column, so block b of every row sees importance + 256b.
template <typename Block, typename Fn>
void QuantizeBlocks(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance, Fn fn) {
  LOWBIT_CHECK(n % kSuperBlock == 0);
  const int64_t blocks = n / kSuperBlock;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      Block block{};
      fn(x + r * n + b * kSuperBlock, importance ? importance + b * kSuperBlock : nullptr, block);
      std::memcpy(out + (r * blocks + b) * int64_t(sizeof(Block)), &block, sizeof(Block));
    }
  }
}

// Dequantizes one row of n / 256 blocks: fn(const Block&, float out[256]).
template <typename Block, typename Fn>
void DequantizeBlocks(const uint8_t* row, float* out, int64_t n, Fn fn) {
  LOWBIT_CHECK(n % kSuperBlock == 0);
  for (int64_t b = 0; b < n / kSuperBlock; ++b) {
    Block block;
    std::memcpy(&block, row + b * int64_t(sizeof(Block)), sizeof(Block));
    fn(block, out + b * kSuperBlock);
  }
}

// --- Shared by Q4_K and Q5_K: 8 (scale, min) 6-bit pairs in 12 bytes. -------

// ggml's get_scale_min_k4: unpacks pair j (see the Q4_K datasheet).
void GetScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// Inverse of GetScaleMinK4. Pairs must be stored in order j = 0..7: j >= 4
// ORs its top bits into bytes that j < 4 assigned.
void PackScaleMinK4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= uint8_t((ls >> 4) << 6);
    q[j - 0] |= uint8_t((lm >> 4) << 6);
  }
}

// Sub-block (scale, min) search of the K-quant _ref quantizers for 32-weight
// sub-blocks: weights av|x| + |x| emphasise large values (llama.cpp's
// heuristic), then rounds scales and mins to 6 bits against their maxima.
// Fills L with the sub-block levels and returns (d, dmin) in *d, *dmin.
void ScaleMinK4Ref(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L, uint8_t* scales,
                   uint16_t* d, uint16_t* dmin) {
  uint8_t Laux[32];
  float weights[32];
  float mins[8];
  float sub_scales[8];
  float max_scale = 0;  // the min is deducted, so scales are positive
  float max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    sub_scales[j] =
        MakeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    if (sub_scales[j] > max_scale) max_scale = sub_scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    // Stored to uint8_t before the clamp, as ggml does.
    const uint8_t ls = uint8_t(NearestInt(inv_scale * sub_scales[j]));
    const uint8_t lm = uint8_t(NearestInt(inv_min * mins[j]));
    PackScaleMinK4(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), scales);
  }
  *d = ScaleToF16(max_scale / 63.f);
  *dmin = ScaleToF16(max_min / 63.f);
}

// The imatrix variant (quantize_row_q{4,5}_K_impl): weights
// importance * sqrt(sigma2 + x^2), a finer sweep (make_qkx3_quants), and the
// 6-bit scales and mins chosen by make_qp_quants weighted by each sub-block's
// total weight. clamp63: Q5_K clamps the codes to 63 before packing, Q4_K
// does not (they differ only if a sub-block scale came out negative).
void ScaleMinK4Weighted(const float* x, const float* qw, int nmax, bool clamp63, uint8_t* L, uint8_t* scales,
                        uint16_t* d, uint16_t* dmin) {
  uint8_t Laux[32];
  uint8_t Ls[8];
  uint8_t Lm[8];
  float weights[32];
  float sw[8];
  float mins[8];
  float sub_scales[8];
  float sum_x2 = 0;
  for (int l = 0; l < kSuperBlock; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / kSuperBlock;
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    sub_scales[j] = MakeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float d_block = MakeQpQuants(8, 63, sub_scales, Ls, sw);
  const float m_block = MakeQpQuants(8, 63, mins, Lm, sw);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = clamp63 ? std::min<uint8_t>(63, Ls[j]) : Ls[j];
    const uint8_t lm = clamp63 ? std::min<uint8_t>(63, Lm[j]) : Lm[j];
    PackScaleMinK4(j, ls, lm, scales);
  }
  *d = ScaleToF16(d_block);
  *dmin = ScaleToF16(m_block);
}

// Final pass shared by Q4_K/Q5_K: re-rounds every weight with the scales as
// stored (fp16 d times 6-bit sc), so the levels fit what dequantization sees.
// Sub-blocks whose stored scale is 0 keep the levels of the search.
void RequantizeK4(const float* x, const uint8_t* scales, uint16_t d16, uint16_t dmin16, int nmax, uint8_t* L) {
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    GetScaleMinK4(j, scales, &sc, &m);
    const float d = F16ToF32(d16) * sc;
    if (!d) continue;
    const float dm = F16ToF32(dmin16) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
    }
  }
}

// --- Q8_K ------------------------------------------------------------------

void QuantizeQ8K(const float* x, const float*, Q8_KFormat::Block& y) {
  float max = 0;
  float amax = 0;
  for (int j = 0; j < kSuperBlock; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (!amax) return;  // the zero-initialised block: d = 0, qs = 0, bsums = 0
  // -127 (not -128) keeps qs symmetric, which ggml's IQ2 AVX kernels rely on.
  const float iscale = -127.f / max;
  for (int j = 0; j < kSuperBlock; ++j) y.qs[j] = int8_t(std::min(127, NearestInt(iscale * x[j])));
  for (int j = 0; j < 16; ++j) {
    int sum = 0;
    for (int ii = 0; ii < 16; ++ii) sum += y.qs[16 * j + ii];
    y.bsums[j] = int16_t(sum);
  }
  y.d = 1 / iscale;
}

// --- Shared by Q2_K, Q3_K, Q6_K: 16 sub-blocks of 16. ----------------------

// ggml's packing of 2-bit levels (Q2_K qs, low bits of Q3_K): for each
// 128-weight half, byte l holds weights l, 32 + l, 64 + l, 96 + l in bit pairs.
void Pack2Bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kSuperBlock; j += 128) {
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
  }
}

// --- Q2_K ------------------------------------------------------------------

// quantize_row_q2_K_ref: per sub-block (scale, min) minimising the |x|-weighted
// absolute error, then 4-bit scales and mins rounded against their maxima.
void ScalesQ2KRef(const float* x, uint8_t* L, Q2_KFormat::Block& y) {
  uint8_t Laux[16];
  float weights[16];
  float mins[16];
  float scales[16];
  const float q4scale = 15.f;
  float max_scale = 0;  // the min is deducted, so scales are positive
  float max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = MakeQkxQuants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < 16; ++j) y.scales[j] = uint8_t(NearestInt(iscale * scales[j]));
    y.d = ScaleToF16(max_scale / q4scale);
  } else {
    for (int j = 0; j < 16; ++j) y.scales[j] = 0;
    y.d = ScaleToF16(0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < 16; ++j) y.scales[j] = uint8_t(y.scales[j] | (NearestInt(iscale * mins[j]) << 4));
    y.dmin = ScaleToF16(max_min / q4scale);
  } else {
    y.dmin = ScaleToF16(0.f);
  }
}

// quantize_row_q2_K_impl: weights importance * sqrt(sigma2 + x^2) with sigma2
// the block's mean square (not twice it, unlike the 4-6 bit types), squared
// error, and make_qp_quants for the 4-bit scales and mins.
void ScalesQ2KWeighted(const float* x, const float* qw, uint8_t* L, Q2_KFormat::Block& y) {
  uint8_t Laux[16];
  uint8_t Ls[16], Lm[16];
  float mins[16];
  float scales[16];
  float sw[16] = {};
  float weight[16];
  float sumx2 = 0;
  for (int j = 0; j < kSuperBlock; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = sumx2 / kSuperBlock;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = MakeQkxQuants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float dm = MakeQpQuants(16, 15, scales, Ls, sw);
  const float mm = MakeQpQuants(16, 15, mins, Lm, sw);
  y.d = ScaleToF16(dm);
  y.dmin = ScaleToF16(mm);
  for (int j = 0; j < 16; ++j) y.scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
}

void QuantizeQ2K(const float* x, const float* qw, Q2_KFormat::Block& y) {
  uint8_t L[kSuperBlock];
  if (qw) {
    ScalesQ2KWeighted(x, qw, L, y);
  } else {
    ScalesQ2KRef(x, L, y);
  }
  // Re-round with the stored scales; sub-blocks with a zero scale keep the
  // levels of the search, as in ggml.
  for (int j = 0; j < 16; ++j) {
    const float d = F16ToF32(y.d) * (y.scales[j] & 0xF);
    if (!d) continue;
    const float dm = F16ToF32(y.dmin) * (y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
    }
  }
  Pack2Bit(L, y.qs);
}

void DequantizeQ2K(const Q2_KFormat::Block& x, float* y) {
  const float d = F16ToF32(x.d);
  const float min = F16ToF32(x.dmin);
  const uint8_t* q = x.qs;
  int is = 0;
  for (int n = 0; n < kSuperBlock; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = x.scales[is++];
        const float dl = d * (sc & 0xF);
        const float ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * half + l] >> shift) & 3) - ml;
      }
    }
  }
}

// --- Q3_K ------------------------------------------------------------------

// 6-bit code l (0..63) of sub-block j into the 12-byte Q3_K scale field,
// which must start zeroed.
void PackScaleQ3K(int j, int l, uint8_t* scales) {
  if (j < 8) {
    scales[j] = uint8_t(l & 0xF);
  } else {
    scales[j - 8] |= uint8_t((l & 0xF) << 4);
  }
  scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
}

// Signed scale of sub-block j (the stored 6-bit code minus 32).
int ScaleQ3K(int j, const uint8_t* scales) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

void QuantizeQ3K(const float* x, const float* qw, Q3_KFormat::Block& y) {
  int8_t L[kSuperBlock];
  float scales[16];
  std::memset(y.scales, 0, sizeof(y.scales));
  if (qw) {
    // quantize_row_q3_K_impl: weighted make_qx_quants per sub-block, then the
    // 16 sub-block scales themselves through make_qx_quants (nmax 32)
    // weighted by each sub-block's total weight.
    float weight[16];
    float sw[16];
    int8_t Ls[16];
    float sumx2 = 0;
    for (int j = 0; j < kSuperBlock; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / kSuperBlock;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = kquant::MakeQxQuants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    const float d_block = kquant::MakeQxQuants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) PackScaleQ3K(j, Ls[j], y.scales);
    y.d = ScaleToF16(d_block);
  } else {
    // quantize_row_q3_K_ref: make_q3_quants per sub-block, then the scales
    // rounded to 6 signed bits against the one of largest magnitude.
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = kquant::MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int8_t l = int8_t(NearestInt(iscale * scales[j]));  // narrowed before the clamp, as in ggml
        PackScaleQ3K(j, std::max<int>(-32, std::min<int>(31, l)) + 32, y.scales);
      }
      y.d = ScaleToF16(1 / iscale);
    } else {
      y.d = ScaleToF16(0.f);
    }
  }
  for (int j = 0; j < 16; ++j) {
    const float d = F16ToF32(y.d) * ScaleQ3K(j, y.scales);
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
    }
  }
  // High bit of weight i -> bit i / 32 of hmask[i % 32]; low 2 bits as Q2_K.
  uint8_t low[kSuperBlock];
  std::memset(y.hmask, 0, sizeof(y.hmask));
  for (int j = 0; j < kSuperBlock; ++j) {
    const int q = L[j];
    if (q > 3) y.hmask[j % 32] |= uint8_t(1 << (j / 32));
    low[j] = uint8_t(q > 3 ? q - 4 : q);
  }
  Pack2Bit(low, y.qs);
}

void DequantizeQ3K(const Q3_KFormat::Block& x, float* y) {
  const float d_all = F16ToF32(x.d);
  const uint8_t* q = x.qs;
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kSuperBlock; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * ScaleQ3K(is++, x.scales);
        for (int l = 0; l < 16; ++l) {
          const int i = 16 * half + l;
          *y++ = dl * (((q[i] >> shift) & 3) - ((x.hmask[i] & m) ? 0 : 4));
        }
      }
    }
  }
}

// --- Q4_K ------------------------------------------------------------------

void QuantizeQ4K(const float* x, const float* qw, Q4_KFormat::Block& y) {
  uint8_t L[kSuperBlock];
  if (qw) {
    ScaleMinK4Weighted(x, qw, 15, false, L, y.scales, &y.d, &y.dmin);
  } else {
    ScaleMinK4Ref(x, 15, -1.f, 0.1f, 20, L, y.scales, &y.d, &y.dmin);
  }
  RequantizeK4(x, y.scales, y.d, y.dmin, 15, L);
  for (int j = 0; j < kSuperBlock; j += 64) {
    for (int l = 0; l < 32; ++l) y.qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
  }
}

void DequantizeQ4K(const Q4_KFormat::Block& x, float* y) {
  const float d = F16ToF32(x.d);
  const float min = F16ToF32(x.dmin);
  const uint8_t* q = x.qs;
  for (int j = 0, is = 0; j < kSuperBlock; j += 64, is += 2, q += 32) {
    uint8_t sc, m;
    GetScaleMinK4(is + 0, x.scales, &sc, &m);
    const float d1 = d * sc;
    const float m1 = min * m;
    GetScaleMinK4(is + 1, x.scales, &sc, &m);
    const float d2 = d * sc;
    const float m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
  }
}

// --- Q5_K ------------------------------------------------------------------

void QuantizeQ5K(const float* x, const float* qw, Q5_KFormat::Block& y) {
  uint8_t L[kSuperBlock];
  if (qw) {
    ScaleMinK4Weighted(x, qw, 31, true, L, y.scales, &y.d, &y.dmin);
  } else {
    ScaleMinK4Ref(x, 31, -0.5f, 0.1f, 15, L, y.scales, &y.d, &y.dmin);
  }
  RequantizeK4(x, y.scales, y.d, y.dmin, 31, L);
  std::memset(y.qh, 0, sizeof(y.qh));
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kSuperBlock; n += 64, m1 <<= 2, m2 <<= 2) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        y.qh[j] |= m1;
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        y.qh[j] |= m2;
      }
      y.qs[n / 2 + j] = uint8_t(l1 | (l2 << 4));
    }
  }
}

void DequantizeQ5K(const Q5_KFormat::Block& x, float* y) {
  const float d = F16ToF32(x.d);
  const float min = F16ToF32(x.dmin);
  const uint8_t* ql = x.qs;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < kSuperBlock; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    uint8_t sc, m;
    GetScaleMinK4(is + 0, x.scales, &sc, &m);
    const float d1 = d * sc;
    const float m1 = min * m;
    GetScaleMinK4(is + 1, x.scales, &sc, &m);
    const float d2 = d * sc;
    const float m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((x.qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((x.qh[l] & u2) ? 16 : 0)) - m2;
  }
}

// --- Q6_K ------------------------------------------------------------------

// quantize_row_q6_K_ref / _impl: make_qx_quants (nmax 32) per sub-block,
// weighted by x^2 or by the raw importance (llama.cpp's q6_K imatrix path
// uses qw directly, without the sigma2 term of the other types); int8
// sub-block scales against the largest-magnitude one (-128 / max).
void QuantizeQ6K(const float* x, const float* qw, Q6_KFormat::Block& y) {
  int8_t L[kSuperBlock];
  float scales[16];
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = kquant::MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < 1e-15f) return;  // GROUP_MAX_EPS: the all-zero block
  const float iscale = -128.f / max_scale;
  y.d = ScaleToF16(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) y.scales[ib] = int8_t(std::min(127, NearestInt(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = F16ToF32(y.d) * y.scales[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
    }
  }
  for (int j = 0; j < kSuperBlock; j += 128) {
    uint8_t* ql = y.ql + j / 2;
    uint8_t* qh = y.qh + j / 4;
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

void DequantizeQ6K(const Q6_KFormat::Block& x, float* y) {
  const float d = F16ToF32(x.d);
  for (int n = 0; n < kSuperBlock; n += 128, y += 128) {
    const uint8_t* ql = x.ql + n / 2;
    const uint8_t* qh = x.qh + n / 4;
    const int8_t* sc = x.scales + n / 16;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
  }
}

// --- IQ4_XS ----------------------------------------------------------------

// quantize_iq4_xs (= quantize_row_iq4_nl_impl with 32-weight sub-blocks and
// ntry 7, with or without importance): per sub-block, d from the best of 16
// inverse scales (the initial -max/kv[0] and (t + kv[0]) / max, t in [-7, 7])
// by weighted least squares; then 6-bit sub-block codes against
// d_super = -max_scale / 32 and a final nearest-code pass.
void QuantizeIq4Xs(const float* x, const float* qw, IQ4_XSFormat::Block& y) {
  constexpr int kTries = 7;
  const int8_t* values = kIq4NlValues;
  uint8_t L[kSuperBlock];
  float scales[8];
  float weight[32];
  float sigma2 = 0;
  for (int j = 0; j < kSuperBlock; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / kSuperBlock;
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < 8; ++ib) {
    const float* xb = x + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = qw ? qw[32 * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < 1e-15f) {  // GROUP_MAX_EPS
      scales[ib] = 0;
      continue;
    }
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = values[kquant::BestIndexInt8(16, values, id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -kTries; itry <= kTries; ++itry) {
      id = (itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float q = values[kquant::BestIndexInt8(16, values, id * xb[j])];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  // The unrounded d (not its fp16 value) sets the sub-block codes, as in ggml.
  const float d = -max_scale / 32;
  y.d = ScaleToF16(d);
  const float id = d ? 1 / d : 0.f;
  for (int ib = 0; ib < 8; ++ib) {
    const int l = std::max(-32, std::min(31, NearestInt(id * scales[ib])));
    const float dl = d * l;
    const float idl = dl ? 1 / dl : 0.f;
    for (int j = 0; j < 32; ++j) L[32 * ib + j] = uint8_t(kquant::BestIndexInt8(16, values, idl * x[32 * ib + j]));
    const int code = l + 32;
    y.scales_l[ib / 2] |= uint8_t((code & 0xF) << (4 * (ib % 2)));
    y.scales_h = uint16_t(y.scales_h | ((code >> 4) << (2 * ib)));
  }
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 16; ++j) y.qs[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
  }
}

// 6-bit scale code ls of sub-block ib (the scale is d * (ls - 32)).
int ScaleIq4Xs(int ib, const IQ4_XSFormat::Block& x) {
  return ((x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x.scales_h >> (2 * ib)) & 3) << 4);
}

void DequantizeIq4Xs(const IQ4_XSFormat::Block& x, float* y) {
  const float d = F16ToF32(x.d);
  for (int ib = 0; ib < 8; ++ib, y += 32) {
    const float dl = d * (ScaleIq4Xs(ib, x) - 32);
    const uint8_t* qs = x.qs + 16 * ib;
    for (int j = 0; j < 16; ++j) {
      y[j + 0] = dl * kIq4NlValues[qs[j] & 0xF];
      y[j + 16] = dl * kIq4NlValues[qs[j] >> 4];
    }
  }
}

// --- RoundInPlace (GPTQ's fixed-scale rounding) ----------------------------
// Element j of a super-block: its sub-block's decoder (c -> value, the
// dequantizer's expression) and the writer of its code.

// 2-bit field of element j in the Q2_K / Q3_K qs layout (Pack2Bit).
void Set2Bit(uint8_t* qs, int j, int c) {
  const int byte = 32 * (j / 128) + j % 32, shift = 2 * ((j % 128) / 32);
  qs[byte] = uint8_t((qs[byte] & ~(3 << shift)) | ((c & 3) << shift));
}

// 4-bit field of element j in the Q4_K / Q5_K qs layout: chunks of 64,
// low nibbles the first 32.
void SetNibbleK4(uint8_t* qs, int j, int c) {
  uint8_t& byte = qs[32 * (j / 64) + j % 32];
  byte = (j % 64) < 32 ? uint8_t((byte & 0xF0) | (c & 0xF)) : uint8_t((byte & 0x0F) | ((c & 0xF) << 4));
}

// Sets or clears bit `bit` of `byte`.
void SetBit(uint8_t& byte, int bit, bool on) { byte = on ? uint8_t(byte | (1 << bit)) : uint8_t(byte & ~(1 << bit)); }

// Q4_K / Q5_K: d * sc * q - dmin * m with sub-block j / 32's 6-bit pair.
auto DecoderK4(uint16_t d16, uint16_t dmin16, const uint8_t* scales, int j) {
  uint8_t sc, m;
  GetScaleMinK4(j / 32, scales, &sc, &m);
  const float d1 = F16ToF32(d16) * sc;
  const float m1 = F16ToF32(dmin16) * m;
  return [d1, m1](int c) { return d1 * c - m1; };
}

}  // namespace

void Q8_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, nullptr, QuantizeQ8K);  // activations: importance does not apply
}

void Q8_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, [](const Block& x, float* y) {
    for (int j = 0; j < kSuperBlock; ++j) y[j] = x.d * x.qs[j];
  });
}

void Q4_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeQ4K);
}

void Q4_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeQ4K);
}

void Q2_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeQ2K);
}

void Q2_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeQ2K);
}

void Q3_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeQ3K);
}

void Q3_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeQ3K);
}

void Q5_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeQ5K);
}

void Q5_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeQ5K);
}

void Q6_KFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeQ6K);
}

void Q6_KFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeQ6K);
}

void IQ4_XSFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeBlocks<Block>(x, rows, n, out, importance, QuantizeIq4Xs);
}

void IQ4_XSFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  DequantizeBlocks<Block>(row, out, n, DequantizeIq4Xs);
}


// Each RoundInPlace searches the element's codes (ggml_block_util.h), Q6_K's
// 64 linear ones from their algebraic rounding and its two neighbours.

float Q2_KFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q2_KFormat>(
      row, i, x, ggml_block::AllCodes{0, 3},
      [](const Block& block, int j) {
        const uint8_t sc = block.scales[j / 16];
        const float dl = F16ToF32(block.d) * (sc & 0xF);
        const float ml = F16ToF32(block.dmin) * (sc >> 4);
        return [dl, ml](int c) { return dl * c - ml; };
      },
      [](Block& block, int j, int c) { Set2Bit(block.qs, j, c); });
}

float Q3_KFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q3_KFormat>(
      row, i, x, ggml_block::AllCodes{0, 7},
      [](const Block& block, int j) {
        const float dl = F16ToF32(block.d) * ScaleQ3K(j / 16, block.scales);
        return [dl](int c) { return dl * (c - 4); };
      },
      [](Block& block, int j, int c) {
        Set2Bit(block.qs, j, c);
        SetBit(block.hmask[j % 32], j / 32, c >= 4);
      });
}

float Q4_KFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q4_KFormat>(
      row, i, x, ggml_block::AllCodes{0, 15},
      [](const Block& block, int j) { return DecoderK4(block.d, block.dmin, block.scales, j); },
      [](Block& block, int j, int c) { SetNibbleK4(block.qs, j, c); });
}

float Q5_KFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q5_KFormat>(
      row, i, x, ggml_block::AllCodes{0, 31},
      [](const Block& block, int j) { return DecoderK4(block.d, block.dmin, block.scales, j); },
      [](Block& block, int j, int c) {
        SetNibbleK4(block.qs, j, c);
        SetBit(block.qh[j % 32], 2 * (j / 64) + (j % 64) / 32, c >= 16);
      });
}

float Q6_KFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  auto scale = [](const Block& block, int j) { return F16ToF32(block.d) * block.scales[j / 16]; };
  return ggml_block::RoundElementInPlace<Q6_KFormat>(
      row, i, x,
      [scale](const Block& block, int j, float y) { return ggml_block::AroundRounded(y, scale(block, j), 32, 0, 63); },
      [scale](const Block& block, int j) {
        const float dl = scale(block, j);
        return [dl](int c) { return dl * (c - 32); };
      },
      [](Block& block, int j, int c) {
        // Half h = j / 128; within it, quarter k = (j % 128) / 32 and lane l = j % 32:
        // ql[64h + l + 32 (k & 1)] nibble k / 2, qh[32h + l] bits 2k..2k+1.
        const int h = j / 128, k = (j % 128) / 32, l = j % 32;
        uint8_t& low = block.ql[64 * h + l + 32 * (k & 1)];
        low = k < 2 ? uint8_t((low & 0xF0) | (c & 0xF)) : uint8_t((low & 0x0F) | ((c & 0xF) << 4));
        uint8_t& high = block.qh[32 * h + l];
        high = uint8_t((high & ~(3 << (2 * k))) | ((c >> 4) << (2 * k)));
      });
}

float IQ4_XSFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<IQ4_XSFormat>(
      row, i, x, ggml_block::AllCodes{0, 15},
      [](const Block& block, int j) {
        const float dl = F16ToF32(block.d) * (ScaleIq4Xs(j / 32, block) - 32);
        return [dl](int c) { return dl * kIq4NlValues[c]; };
      },
      [](Block& block, int j, int c) {
        uint8_t& byte = block.qs[16 * (j / 32) + j % 16];
        byte = (j % 32) < 16 ? uint8_t((byte & 0xF0) | c) : uint8_t((byte & 0x0F) | (c << 4));
      });
}

}  // namespace lowbit
