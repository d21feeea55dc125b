// Activation quantizers for the integer GEMMs: f32 rows to Q8_0 / Q8_1 / Q8_K
// blocks, byte-identical to the reference quantizers in formats/ (kernels_test
// checks every target), with Highway on every target. The reference's
// per-element std::round made it most of a GEMV's fixed cost (40 us per 5632
// floats); here rounding half away from zero is trunc plus a sign step.
//   Q8_0/Q8_1 block: d = sat_f16(amax / 127), id = 1/d (0 if d is 0 or 1/d
//   overflows), q = clamp(round_half_away(x * id), -127, 127); Q8_1 adds
//   s = f16(sum(q) * d). Blocks holding NaN or inf go to the reference codec.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/fast_paths.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quantize_act.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The largest |x| of `count` floats (a multiple of the lane count) in
// *amax; false when any of them is NaN or inf.
HWY_INLINE bool FiniteAbsMax(const float* x, size_t count, float* amax) {
  const hn::ScalableTag<float> df;
  auto vmax = hn::Zero(df);
  auto bad = hn::Lt(vmax, vmax);  // all false
  for (size_t i = 0; i < count; i += hn::Lanes(df)) {
    const auto a = hn::Abs(hn::LoadU(df, x + i));
    bad = hn::Or(bad, hn::Not(hn::Lt(a, hn::Set(df, INFINITY))));
    vmax = hn::Max(vmax, a);
  }
  if (!hn::AllFalse(df, bad)) return false;
  *amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
  return true;
}

// Quantizes 32 finite floats to int8 codes; returns d (as f32) and the code
// sum, or false when the block is not all finite.
HWY_INLINE bool QuantizeBlock32(const float* x, int8_t* qs, float* d_out, int32_t* sum_out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  float amax;
  if (!FiniteAbsMax(x, 32, &amax)) return false;
  // As formats/ggml_block_util.h: SaturateScale, then InverseOrZero.
  const float d = std::min(amax / 127.0f, 65504.0f);
  float id = 0.0f;
  if (d != 0.0f) {
    id = 1.0f / d;
    if (!std::isfinite(id)) id = 0.0f;
  }
  const auto vid = hn::Set(df, id), half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f);
  const auto lo = hn::Set(df, -127.0f), hi = hn::Set(df, 127.0f);
  auto sum = hn::Zero(di);
  for (size_t i = 0; i < 32; i += lanes) {
    const auto v = hn::Mul(hn::LoadU(df, x + i), vid);
    const auto t = hn::Trunc(v);
    const auto away = hn::Ge(hn::Abs(hn::Sub(v, t)), half);  // v - t is exact
    const auto r = hn::IfThenElse(away, hn::Add(t, hn::CopySign(one, v)), t);
    const auto q = hn::ConvertTo(di, hn::Min(hn::Max(r, lo), hi));
    sum = hn::Add(sum, q);
    hn::StoreU(hn::DemoteTo(d8, q), d8, qs + i);
  }
  *d_out = d;
  *sum_out = hn::GetLane(hn::SumOfLanes(di, sum));
  return true;
}

// rows x n floats (n a multiple of 32) to Q8_0 (with_s false, 34-byte
// blocks) or Q8_1 (with_s true, 36-byte blocks).
void QuantizeRowsQ8(const float* x, int64_t rows, int64_t n, uint8_t* out, bool with_s) {
  const int64_t block_bytes = with_s ? 36 : 34, code_offset = with_s ? 4 : 2;
  const FormatInfo& reference = GetFormat(with_s ? DTypeOf<Q8_1Format>() : DTypeOf<Q8_0Format>());
  for (int64_t b = 0; b < rows * n / 32; ++b) {
    uint8_t* block = out + b * block_bytes;
    float d;
    int32_t sum;
    if (!QuantizeBlock32(x + 32 * b, reinterpret_cast<int8_t*>(block + code_offset), &d, &sum)) {
      reference.quantize(x + 32 * b, 1, 32, block, nullptr);
      continue;
    }
    const uint16_t dh = F32ToF16(d);
    std::memcpy(block, &dh, 2);
    if (with_s) {
      const uint16_t sh = F32ToF16(float(sum) * d);
      std::memcpy(block + 2, &sh, 2);
    }
  }
}

// rows x n floats (n a multiple of 256) to Q8_K as QuantizeQ8K
// (formats/ggml_kquants.cc): iscale = -127 / (the first element of largest
// magnitude), q = min(127, round_half_even(iscale * x)), bsums of 16, d =
// 1 / iscale; an all-zero block stays zero. Blocks with NaN or inf go to the
// reference.
// One Q8_K block of 256 finite floats: d, 256 codes and 16 sums of 16;
// false (nothing written) when the block holds NaN or inf.
HWY_INLINE bool QuantizeBlockQ8K(const float* xb, float* d_out, int8_t* qs, int16_t* bsums) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  float amax;
  if (!FiniteAbsMax(xb, 256, &amax)) return false;
  if (amax == 0.0f) {
    *d_out = 0.0f;
    std::memset(qs, 0, 256);
    std::memset(bsums, 0, 16 * sizeof(int16_t));
    return true;
  }
  // The first element of largest magnitude (its sign is the scale's), a
  // vector at a time: a scalar scan took about 0.3 us per 2048 columns of a
  // generated token's activations (3 interleaved runs, Q4_K TinyLlama).
  size_t first = 0;
  const auto vamax = hn::Set(df, amax);
  for (size_t i = 0; i < 256; i += lanes) {
    const intptr_t k = hn::FindFirstTrue(df, hn::Eq(hn::Abs(hn::LoadU(df, xb + i)), vamax));
    if (k >= 0) {
      first = i + size_t(k);
      break;
    }
  }
  const float iscale = -127.f / xb[first];
  const auto vscale = hn::Set(df, iscale), hi = hn::Set(df, 127.0f);
  for (int j = 0; j < 16; ++j) {
    auto sum = hn::Zero(di);
    for (size_t i = 0; i < 16; i += lanes) {
      const size_t k = size_t(16 * j) + i;
      const auto q = hn::ConvertTo(di, hn::Min(hn::Round(hn::Mul(hn::LoadU(df, xb + k), vscale)), hi));
      sum = hn::Add(sum, q);
      hn::StoreU(hn::DemoteTo(d8, q), d8, qs + k);
    }
    bsums[j] = int16_t(hn::GetLane(hn::SumOfLanes(di, sum)));
  }
  *d_out = 1 / iscale;
  return true;
}

void QuantizeRowsQ8K(const float* x, int64_t rows, int64_t n, uint8_t* out) {
  const FormatInfo& reference = GetFormat(DTypeOf<Q8_KFormat>());
  constexpr int64_t kBytes = int64_t(sizeof(Q8_KFormat::Block));
  for (int64_t b = 0; b < rows * n / 256; ++b) {
    const float* xb = x + 256 * b;
    uint8_t* block = out + b * kBytes;
    float d;
    int16_t bsums[16];
    if (!QuantizeBlockQ8K(xb, &d, reinterpret_cast<int8_t*>(block + 4), bsums)) {
      reference.quantize(xb, 1, 256, block, nullptr);
      continue;
    }
    std::memcpy(block, &d, 4);
    std::memcpy(block + 4 + 256, bsums, sizeof(bsums));
  }
}

// One row of n floats split as the packed kernels read it (packed.h's
// PackedActivations): the codes, the scale per block as f32 and, per Q8_0
// block, `factor` x the code sum, or per Q8_K block 4 i32 pair sums of 32
// (low 16 bits: sub-block 2p, high: 2p + 1). The same numbers as the blocks
// QuantizeRowsQ8 / QuantizeRowsQ8K write, without a copy through them.
void QuantizeRowSplit(bool q8k, const float* x, int64_t n, int8_t* codes, float* scale, int32_t* sums,
                      int32_t factor) {
  if (q8k) {
    for (int64_t b = 0; b < n / 256; ++b) {
      int16_t bsums[16];
      if (!QuantizeBlockQ8K(x + 256 * b, &scale[b], codes + 256 * b, bsums)) {
        uint8_t block[sizeof(Q8_KFormat::Block)];
        GetFormat(DTypeOf<Q8_KFormat>()).quantize(x + 256 * b, 1, 256, block, nullptr);
        std::memcpy(&scale[b], block, 4);
        std::memcpy(codes + 256 * b, block + 4, 256);
        std::memcpy(bsums, block + 4 + 256, sizeof(bsums));
      }
      for (int p = 0; p < 4; ++p) {
        const int32_t lo = bsums[4 * p] + bsums[4 * p + 1], hi = bsums[4 * p + 2] + bsums[4 * p + 3];
        sums[4 * b + p] = int32_t(uint32_t(lo) & 0xffff) | int32_t(uint32_t(hi) << 16);
      }
    }
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b) {
    float d;
    int32_t sum;
    if (!QuantizeBlock32(x + 32 * b, codes + 32 * b, &d, &sum)) {
      uint8_t block[34];
      GetFormat(DTypeOf<Q8_0Format>()).quantize(x + 32 * b, 1, 32, block, nullptr);
      uint16_t dh;
      std::memcpy(&dh, block, 2);
      d = F16ToF32(dh);
      std::memcpy(codes + 32 * b, block + 2, 32);
      sum = 0;
      for (int j = 0; j < 32; ++j) sum += codes[32 * b + j];
    }
    scale[b] = F16ToF32(F32ToF16(d));
    sums[b] = factor * sum;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(QuantizeRowsQ8);
HWY_EXPORT(QuantizeRowsQ8K);
HWY_EXPORT(QuantizeRowSplit);

bool QuantizeActivations(DType act, const float* x, int64_t rows, int64_t n, uint8_t* out) {
  if (act == DTypeOf<Q8_KFormat>()) {
    HWY_DYNAMIC_DISPATCH(QuantizeRowsQ8K)(x, rows, n, out);
    return true;
  }
  const bool q8_0 = act == DTypeOf<Q8_0Format>(), q8_1 = act == DTypeOf<Q8_1Format>();
  if (!q8_0 && !q8_1) return false;
  HWY_DYNAMIC_DISPATCH(QuantizeRowsQ8)(x, rows, n, out, q8_1);
  return true;
}

void QuantizeActivationsSplit(DType act, const float* x, int64_t n, int8_t* codes, float* scale, int32_t* sums,
                              int32_t factor) {
  LOWBIT_CHECK(act == DTypeOf<Q8_KFormat>() || act == DTypeOf<Q8_0Format>());
  HWY_DYNAMIC_DISPATCH(QuantizeRowSplit)(act == DTypeOf<Q8_KFormat>(), x, n, codes, scale, sums, factor);
}

}  // namespace lowbit
#endif  // HWY_ONCE
