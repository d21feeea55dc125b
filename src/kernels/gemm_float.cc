// F32 / F16 / BF16 weights x f32 activations: register-tiled GEMM (4 weight
// rows x 4 tokens in 16 vector accumulators) and GEMV (4 rows x 1 token),
// compiled for every Highway target and dispatched once per thread per call.
//   y (n, out) = x (n, in) @ W^T,  W (out, in) in f32/f16/bf16.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "formats/format.h"
#include "kernels/fast_paths.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_float.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

HWY_INLINE VF LoadWeights(DF df, const float* p) { return hn::LoadU(df, p); }
#if HWY_TARGET >= HWY_SSE4
// No F16C: Highway 1.0.3's emulated f16 PromoteTo turns inf/NaN into finite
// numbers, so widen the bits here (exponent 31 -> 255, subnormals via float).
HWY_INLINE VF LoadWeights(DF df, const hwy::float16_t* p) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint16_t, DF> du16;
  const auto bits = hn::PromoteTo(du, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)));
  const auto sign = hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u)));
  const auto exp = hn::And(hn::ShiftRight<10>(bits), hn::Set(du, 0x1Fu));
  const auto mant = hn::And(bits, hn::Set(du, 0x3FFu));
  const auto exp32 = hn::IfThenElse(hn::Eq(exp, hn::Set(du, 0x1Fu)), hn::Set(du, 0xFFu), hn::Add(exp, hn::Set(du, 112u)));
  const auto normal = hn::Or(hn::ShiftLeft<23>(exp32), hn::ShiftLeft<13>(mant));
  const auto subnormal = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, mant)), hn::Set(df, 0x1p-24f)));
  return hn::BitCast(df, hn::Or(sign, hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), subnormal, normal)));
}
#else
HWY_INLINE VF LoadWeights(DF df, const hwy::float16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
}
#endif
HWY_INLINE VF LoadWeights(DF df, const hwy::bfloat16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
}

// Widest vector of any target, in floats: the zero-padded tail buffers.
constexpr size_t kMaxFloatLanes = 64;

// out[r * T + t] = dot(w[r], x[t]) over k elements: R x T accumulators,
// each weight vector loaded once per step for all T tokens. The k % Lanes
// tail goes through zero-padded copies (zero weights add +0).
// `next` is the row tile two on, prefetched into L2 a cache line per row as
// the loop crosses lines (as in gemm_quant.cc: 4 KiB f16 rows are short
// streams for the hardware prefetchers).
template <size_t R, size_t T, typename WT>
HWY_INLINE void DotTile(const WT* const* w, const WT* next, const float* const* x, int64_t k, float* out) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  VF acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + lanes <= k; i += lanes) {
    if ((i * int64_t(sizeof(WT))) % 64 < lanes * int64_t(sizeof(WT)))
      for (size_t r = 0; r < R; ++r) __builtin_prefetch(next + int64_t(r) * k + i, /*write=*/0, /*L2=*/2);
    VF xv[T];
    for (size_t t = 0; t < T; ++t) xv[t] = hn::LoadU(df, x[t] + i);
    for (size_t r = 0; r < R; ++r) {
      const VF wv = LoadWeights(df, w[r] + i);
      for (size_t t = 0; t < T; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
    }
  }
  if (i < k) {
    const size_t rest = size_t(k - i);
    float xt[T][kMaxFloatLanes] = {};
    WT wt[kMaxFloatLanes];
    for (size_t t = 0; t < T; ++t) std::memcpy(xt[t], x[t] + i, rest * sizeof(float));
    for (size_t r = 0; r < R; ++r) {
      std::memset(wt, 0, sizeof(wt));
      std::memcpy(wt, w[r] + i, rest * sizeof(WT));
      const VF wv = LoadWeights(df, wt);
      for (size_t t = 0; t < T; ++t) acc[r][t] = hn::MulAdd(wv, hn::LoadU(df, xt[t]), acc[r][t]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) out[r * T + t] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
}

constexpr size_t kTokenTile = 4;

// Rows [row_begin, row_end) of y for all n tokens, in token chunks of at
// most kChunkBytes of activations (kept in L2 while the rows pass), each in
// tiles of 4 rows x 4 tokens, then single tokens. A short last row tile
// repeats its last row (results dropped) so the tile kernel stays fixed-size.
template <typename WT>
void GemmRows(const WT* w, int64_t k, const float* x, int64_t n, float* y, int64_t out, int64_t row_begin,
              int64_t row_end) {
  constexpr size_t R = size_t(kRowTile), T = kTokenTile;
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / (k * int64_t(sizeof(float))) / int64_t(T)) * int64_t(T);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = std::min(n, t0 + chunk);
    for (int64_t r = row_begin; r < row_end; r += int64_t(R)) {
      const WT* wr[R];
      for (size_t i = 0; i < R; ++i) wr[i] = w + std::min<int64_t>(r + int64_t(i), row_end - 1) * k;
      const size_t rows = size_t(std::min<int64_t>(int64_t(R), row_end - r));
      const WT* next = r + 3 * int64_t(R) <= row_end ? wr[0] + 2 * int64_t(R) * k : wr[0];
      float res[R * T];
      int64_t t = t0;
      for (; t + int64_t(T) <= t1; t += int64_t(T)) {
        const float* xs[T];
        for (size_t j = 0; j < T; ++j) xs[j] = x + (t + int64_t(j)) * k;
        DotTile<R, T>(wr, next, xs, k, res);
        for (size_t i = 0; i < rows; ++i)
          for (size_t j = 0; j < T; ++j) y[(t + int64_t(j)) * out + r + int64_t(i)] = res[i * T + j];
      }
      for (; t < t1; ++t) {
        const float* xs[1] = {x + t * k};
        DotTile<R, 1>(wr, next, xs, k, res);
        for (size_t i = 0; i < rows; ++i) y[t * out + r + int64_t(i)] = res[i];
      }
    }
  }
}

void GemmF32xF32Rows(const void* w, int64_t k, const float* x, int64_t n, float* y, int64_t out, int64_t b,
                     int64_t e) {
  GemmRows(static_cast<const float*>(w), k, x, n, y, out, b, e);
}
void GemmF16xF32Rows(const void* w, int64_t k, const float* x, int64_t n, float* y, int64_t out, int64_t b,
                     int64_t e) {
  GemmRows(static_cast<const hwy::float16_t*>(w), k, x, n, y, out, b, e);
}
void GemmBF16xF32Rows(const void* w, int64_t k, const float* x, int64_t n, float* y, int64_t out, int64_t b,
                      int64_t e) {
  GemmRows(static_cast<const hwy::bfloat16_t*>(w), k, x, n, y, out, b, e);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(GemmF32xF32Rows);
HWY_EXPORT(GemmF16xF32Rows);
HWY_EXPORT(GemmBF16xF32Rows);

bool HasMatMulFloat(DType type) { return type == DType::kF32 || type == DType::kF16 || type == DType::kBF16; }

bool MatMulFloat(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  if (!HasMatMulFloat(w.type)) return false;
  const int64_t out = w.shape[0], k = w.shape[1];
  pool.ParallelFor((out + kRowTile - 1) / kRowTile, [&](int64_t tb, int64_t te) {
    const int64_t b = tb * kRowTile, e = std::min(te * kRowTile, out);
    if (w.type == DType::kF32) {
      HWY_DYNAMIC_DISPATCH(GemmF32xF32Rows)(w.data, k, x, n, y, out, b, e);
    } else if (w.type == DType::kF16) {
      HWY_DYNAMIC_DISPATCH(GemmF16xF32Rows)(w.data, k, x, n, y, out, b, e);
    } else {
      HWY_DYNAMIC_DISPATCH(GemmBF16xF32Rows)(w.data, k, x, n, y, out, b, e);
    }
  });
  return true;
}

}  // namespace lowbit
#endif  // HWY_ONCE
