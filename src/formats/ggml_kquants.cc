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
#include "formats/ggml_kquants_search.h"

namespace lowbit {

namespace {

using kquant::kSuperBlock;
using kquant::MakeQkxQuants;
using kquant::MakeQpQuants;
using kquant::NearestInt;

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
  *d = F32ToF16(max_scale / 63.f);
  *dmin = F32ToF16(max_min / 63.f);
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
  *d = F32ToF16(d_block);
  *dmin = F32ToF16(m_block);
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

}  // namespace lowbit
