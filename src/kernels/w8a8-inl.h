// Per-target W8A8 kernels (included by w8a8.cc under its foreach_target loop):
//   QuantizeActRowsInt8  f32 rows -> int8 codes + per-row scale, Highway on
//                        every target, the same bytes as QuantizeActInt8Ref;
//   W8A8GemmRows         rows of an int8 weight (u = q + 128 codes) against
//                        int8 activations, tiles of 4 weight rows x kTok
//                        tokens, exact int32 sums:
//     AVX3_DL  vpdpbusd on the unsigned codes u directly (4 u8 x i8 products
//              per i32 lane, no saturation), then sum q x = sum u x - 128 sum x
//              with the token's code sum computed once per call;
//     AVX2, AVX3  the sign trick (ggml): q = u ^ 0x80, |q| (u8) x sign(x, q)
//              (i8) with maddubs (each pair <= 2 * 128 * 127 < 2^15, exact);
//     below AVX2  the scalar reference, one row at a time.
// The integer helpers (DotU8I8, Load256, SumI32, ...) are quant_simd-inl.h's.

#if defined(LOWBIT_KERNELS_W8A8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_W8A8_INL_H_
#undef LOWBIT_KERNELS_W8A8_INL_H_
#else
#define LOWBIT_KERNELS_W8A8_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hwy/highway.h"
#include "kernels/fast_paths.h"
#include "kernels/quant_simd-inl.h"
#include "kernels/w8a8.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
// rows x in floats -> q (rows, in), s (rows); see QuantizeActInt8Ref.
inline void QuantizeActRowsInt8(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t lanes = int64_t(hn::Lanes(df));
  for (int64_t t = 0; t < rows; ++t) {
    const float* xr = x + t * in;
    int8_t* qr = q + t * in;
    float scale = static_scale;
    if (static_scale < 0.0f) {
      auto vmax = hn::Zero(df);
      int64_t c = 0;
      for (; c + lanes <= in; c += lanes) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, xr + c)));
      float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      for (; c < in; ++c) amax = std::fabs(xr[c]) > amax ? std::fabs(xr[c]) : amax;
      scale = amax / 127.0f;
    }
    float inv = 0.0f;
    if (scale != 0.0f) {
      inv = 1.0f / scale;
      if (!std::isfinite(inv)) inv = 0.0f;
    }
    const auto vinv = hn::Set(df, inv), lo = hn::Set(df, -127.0f), hi = hn::Set(df, 127.0f);
    int64_t c = 0;
    for (; c + lanes <= in; c += lanes) {
      const auto v = hn::Min(hn::Max(hn::Round(hn::Mul(hn::LoadU(df, xr + c), vinv)), lo), hi);
      hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, v)), d8, qr + c);
    }
    for (; c < in; ++c) {
      float v = std::nearbyint(xr[c] * inv);
      v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
      qr[c] = v == v ? int8_t(v) : int8_t(0);
    }
    s[t] = scale;
  }
}

#if HWY_TARGET <= HWY_AVX2

#if HWY_TARGET == HWY_AVX3_DL
inline constexpr size_t kW8A8Tok = 4;
#elif HWY_TARGET == HWY_AVX2
inline constexpr size_t kW8A8Tok = 2;  // 16 ymm registers: 8 accumulators + 8 weight vectors
#else
inline constexpr size_t kW8A8Tok = 4;  // AVX3: 32 registers
#endif

// res[r * T + t] = sum_c (u[r][c] - 128) x[t][c]. xsum[t] = sum of x[t][c]
// over the whole 32-column chunks (used by the VNNI form). `next`: the row
// tile two on (rows w_stride apart), prefetched into L2 in step, as
// gemm_quant.cc does: rows of a few KB are too short for the hardware
// prefetchers to reach DRAM bandwidth in a GEMV.
template <size_t R, size_t T>
HWY_INLINE void TileInt8(const uint8_t* const* w, const uint8_t* next, int64_t w_stride, const int8_t* const* x,
                         const int32_t* xsum, int64_t in, int32_t* res) {
  const int64_t in32 = in & ~int64_t(31);
  __m256i acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
  for (int64_t c = 0; c < in32; c += 32) {
    if (c % 64 == 0)
      for (size_t r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(next + int64_t(r) * w_stride + c), _MM_HINT_T1);
#if HWY_TARGET == HWY_AVX3_DL
    __m256i wu[R];
    for (size_t r = 0; r < R; ++r) wu[r] = Load256(w[r] + c);
    for (size_t t = 0; t < T; ++t) {
      const __m256i xv = Load256(reinterpret_cast<const uint8_t*>(x[t] + c));
      for (size_t r = 0; r < R; ++r) acc[r][t] = DotU8I8(acc[r][t], wu[r], xv);
    }
#else
    __m256i ws[R], wa[R];
    for (size_t r = 0; r < R; ++r) {
      ws[r] = _mm256_xor_si256(Load256(w[r] + c), Bytes(0x80));
      wa[r] = _mm256_abs_epi8(ws[r]);
    }
    for (size_t t = 0; t < T; ++t) {
      const __m256i xv = Load256(reinterpret_cast<const uint8_t*>(x[t] + c));
      for (size_t r = 0; r < R; ++r) acc[r][t] = DotU8I8(acc[r][t], wa[r], _mm256_sign_epi8(xv, ws[r]));
    }
#endif
  }
  for (size_t r = 0; r < R; ++r) {
    for (size_t t = 0; t < T; ++t) {
      int32_t sum = SumI32(acc[r][t]);
#if HWY_TARGET == HWY_AVX3_DL
      sum -= 128 * xsum[t];
#else
      (void)xsum;
#endif
      // The leftover columns through the scalar reference (its own TU, not
      // vectorized): GCC 12 turns this loop, written inline, into the VEX
      // (AVX-VNNI) vpdpbusd under the AVX3_DL target, which Zen 4 lacks.
      if (in32 < in) {
        int32_t tail;
        DotInt8Ref(w[r] + in32, 0, 1, x[t] + in32, 1, in - in32, &tail);
        sum += tail;
      }
      res[r * T + t] = sum;
    }
  }
}

#endif  // HWY_TARGET <= HWY_AVX2

// Rows [row_begin, row_end) of the product for all n tokens. Weight row o
// starts at w + o * w_stride: its f32 scale there, its codes at code_offset.
// With y: y[t * out + o] = (s_x[t] * s_w[o]) * float(sum); without (y null):
// acc[t * out + o] = sum. q (n, in) int8 codes, qsum (n) as TileInt8's xsum.
inline void W8A8GemmRows(const uint8_t* w, int64_t w_stride, int64_t code_offset, const int8_t* q,
                         const int32_t* qsum, int64_t in, int64_t n, const float* sx, float* y, int32_t* acc,
                         int64_t out, int64_t row_begin, int64_t row_end) {
  auto emit = [&](int64_t t, int64_t o, int32_t sum) {
    if (y == nullptr) {
      acc[t * out + o] = sum;
      return;
    }
    float sw;
    std::memcpy(&sw, w + o * w_stride, 4);
    y[t * out + o] = (sx[t] * sw) * float(sum);
  };
#if HWY_TARGET <= HWY_AVX2
  constexpr size_t R = size_t(kRowTile), T = kW8A8Tok;
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(in, 1) / int64_t(T)) * int64_t(T);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = std::min(n, t0 + chunk);
    for (int64_t r = row_begin; r < row_end; r += int64_t(R)) {
      const uint8_t* wr[R];  // a short last tile repeats its last row (results dropped)
      for (size_t i = 0; i < R; ++i)
        wr[i] = w + std::min<int64_t>(r + int64_t(i), row_end - 1) * w_stride + code_offset;
      const int64_t rows = std::min<int64_t>(int64_t(R), row_end - r);
      // The tile two on (this tile again near the end: prefetches stay in bounds).
      const uint8_t* next = r + 3 * int64_t(R) <= row_end ? wr[0] + 2 * int64_t(R) * w_stride : wr[0];
      int32_t res[R * T];
      int64_t t = t0;
      for (; t + int64_t(T) <= t1; t += int64_t(T)) {
        const int8_t* xs[T];
        for (size_t j = 0; j < T; ++j) xs[j] = q + (t + int64_t(j)) * in;
        TileInt8<R, T>(wr, next, w_stride, xs, qsum + t, in, res);
        for (int64_t i = 0; i < rows; ++i)
          for (size_t j = 0; j < T; ++j) emit(t + int64_t(j), r + i, res[size_t(i) * T + j]);
      }
      for (; t < t1; ++t) {
        const int8_t* xs[1] = {q + t * in};
        TileInt8<R, 1>(wr, next, w_stride, xs, qsum + t, in, res);
        for (int64_t i = 0; i < rows; ++i) emit(t, r + i, res[i]);
      }
    }
  }
#else
  (void)qsum;
  std::vector<int32_t> sums(static_cast<size_t>(n));
  for (int64_t o = row_begin; o < row_end; ++o) {
    DotInt8Ref(w + o * w_stride + code_offset, w_stride, 1, q, n, in, sums.data());
    for (int64_t t = 0; t < n; ++t) emit(t, o, sums[size_t(t)]);
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
