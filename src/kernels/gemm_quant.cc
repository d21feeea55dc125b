// ggml block formats x activations quantized on the fly to the format's
// activation type: integer block dots, scaled and summed in f32.
//   y (n, out) = x (n, in) @ W^T,  W (out, in) in Q4_0 / Q8_0 / Q4_K.
// The activations are quantized once per call with the activation format's
// reference quantizer; then each thread walks its output rows in tiles of
// 4 weight rows x kT tokens, every weight block unpacked once per tile.
//
// Integer dots: AVX-512 VNNI `vpdpbusd`/`vpdpwssd` on the AVX3_DL target,
// AVX2 `vpmaddubsw`+`vpmaddwd` on AVX2/AVX3 (Highway 1.0.3 has no int8 dot
// op, so these targets use intrinsics, on 256-bit vectors: Zen 4 splits
// 512-bit ops in two anyway). Other targets run the *_ref dots.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/fast_paths.h"
#include "kernels/quant_dot_ref.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_quant.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef LOWBIT_KERNELS_GEMM_QUANT_ONCE
#define LOWBIT_KERNELS_GEMM_QUANT_ONCE
namespace lowbit {
// The weight formats with a quantized kernel, as the per-target entry takes them.
enum class QuantKind : int { kQ4_0, kQ8_0, kQ4_K };
}  // namespace lowbit
#endif

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

#if HWY_TARGET <= HWY_AVX2

#if HWY_TARGET == HWY_AVX3_DL
// acc + sum of 4 adjacent u8*i8 products per i32 lane (exact). Inline asm,
// not _mm256_dpbusd_epi32: GCC 12 emits that (even masked with all ones) as
// `{vex} vpdpbusd`, the AVX-VNNI encoding that Zen 4 and Ice Lake lack; the
// plain mnemonic assembles to the EVEX (AVX512-VNNI + VL) form.
HWY_INLINE __m256i DotU8I8(__m256i acc, __m256i u, __m256i s) {
  asm("vpdpbusd %[s], %[u], %[acc]" : [acc] "+v"(acc) : [u] "v"(u), [s] "v"(s));
  return acc;
}
// acc + sum of 2 adjacent i16*i16 products per i32 lane (EVEX, as above).
HWY_INLINE __m256i DotI16(__m256i acc, __m256i a, __m256i b) {
  asm("vpdpwssd %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
  return acc;
}
#else
// As above with maddubs: exact while every pair u0*s0 + u1*s1 fits in int16,
// which holds for every caller (|u| <= 128 with |s| <= 127, or u <= 63).
HWY_INLINE __m256i DotU8I8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
HWY_INLINE __m256i DotI16(__m256i acc, __m256i a, __m256i b) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
}
#endif

HWY_INLINE float HalfToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

HWY_INLINE int32_t SumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

HWY_INLINE float SumF32(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Q4_0 x Q8_0. Block: f16 d, 16 bytes of nibbles (low = element j, high =
// j + 16), so [nibbles | nibbles >> 4] & 15 lines up with the 32 activation
// codes. sum (q - 8) a = dot(q, a) - 8 sum a: the -8 sum a term is one dot per
// token and block, the accumulator every row's dot starts from.
struct KernelQ4_0 {
  static constexpr int64_t kWBytes = 18, kABytes = 34;
  static constexpr size_t kT = 4;
  static HWY_INLINE __m256i Codes(const uint8_t* p) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
  }
  static HWY_INLINE __m256i NegOffset(__m256i av) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), DotU8I8(_mm256_setzero_si256(), _mm256_set1_epi8(8), av));
  }
  template <size_t R, size_t T>
  static HWY_INLINE void Tile(const uint8_t* const* w, const uint8_t* const* a, int64_t nb, float* out) {
    __m256 acc[R][T];
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[R];
      float dw[R];
      for (size_t r = 0; r < R; ++r) {
        const uint8_t* p = w[r] + b * kWBytes;
        q[r] = Codes(p);
        dw[r] = HalfToFloat(p);
      }
      for (size_t t = 0; t < T; ++t) {
        const uint8_t* ap = a[t] + b * kABytes;
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap + 2));
        const float da = HalfToFloat(ap);
        const __m256i start = NegOffset(av);
        for (size_t r = 0; r < R; ++r) {
          const __m256i s = DotU8I8(start, q[r], av);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw[r] * da), acc[r][t]);
        }
      }
    }
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) out[r * T + t] = SumF32(acc[r][t]);
  }
  static void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + b * kABytes + 2));
      out[2 * b] = SumI32(DotU8I8(NegOffset(av), Codes(w + b * kWBytes), av));
      out[2 * b + 1] = 0;
    }
  }
};

// Q8_0 x Q8_0: signed codes, so the u8 x i8 dot takes |w| and a with w's
// sign (|w| <= 128, |a| <= 127: pairs fit in int16 for maddubs).
struct KernelQ8_0 {
  static constexpr int64_t kWBytes = 34, kABytes = 34;
  static constexpr size_t kT = 4;
  static HWY_INLINE __m256i Codes(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
  }
  static HWY_INLINE __m256i Dot(__m256i wv, __m256i av) {
    return DotU8I8(_mm256_setzero_si256(), _mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
  }
  template <size_t R, size_t T>
  static HWY_INLINE void Tile(const uint8_t* const* w, const uint8_t* const* a, int64_t nb, float* out) {
    __m256 acc[R][T];
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[R];
      float dw[R];
      for (size_t r = 0; r < R; ++r) {
        const uint8_t* p = w[r] + b * kWBytes;
        q[r] = Codes(p);
        dw[r] = HalfToFloat(p);
      }
      for (size_t t = 0; t < T; ++t) {
        const uint8_t* ap = a[t] + b * kABytes;
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap + 2));
        const float da = HalfToFloat(ap);
        for (size_t r = 0; r < R; ++r)
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Dot(q[r], av)), _mm256_set1_ps(dw[r] * da), acc[r][t]);
      }
    }
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) out[r * T + t] = SumF32(acc[r][t]);
  }
  static void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
    for (int64_t b = 0; b < nb; ++b) {
      out[2 * b] = SumI32(Dot(Codes(w + b * kWBytes), Codes(a + b * kABytes)));
      out[2 * b + 1] = 0;
    }
  }
};

// Q4_K x Q8_K, per 256-weight super-block: 4 chunks of 32 code bytes, low
// nibbles = sub-block 2c, high = 2c + 1, each against 32 activation codes.
// maddubs pairs (q <= 15) are scaled by the sub-block's 6-bit scale with an
// i16 dot; the min term is m_j * (bsums[2j] + bsums[2j + 1]) as one i16 dot
// of the 16 block sums against [m0 m0 m1 m1 ... m7 m7].
struct KernelQ4_K {
  static constexpr int64_t kWBytes = 144, kABytes = 292;
  static constexpr size_t kT = 2;  // 4x2 tile: 8 f32 + 8 i32 accumulators
  struct Scales {
    __m256i sc[4][2];  // per chunk: i16 broadcasts of the low / high sub-block scale
    __m256i mins;      // i16 [m0 m0 m1 m1 ... m7 m7]
  };
  static HWY_INLINE void Unpack(const uint8_t* p, Scales* s) {
    uint8_t m[8];
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      Q4KScaleMin(p + 4, j, &sc, &mn);
      s->sc[j / 2][j % 2] = _mm256_set1_epi16(int16_t(sc));
      m[j] = uint8_t(mn);
    }
    const __m256i m32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    s->mins = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
  }
  // sum_j sc_j sum q a over the super-block, as i32 lanes.
  static HWY_INLINE __m256i CodeDot(const uint8_t* wp, const Scales& s, const uint8_t* ap) {
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 16 + 32 * c));
      const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(15));
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
      const __m256i a_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap + 4 + 64 * c));
      const __m256i a_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap + 4 + 64 * c + 32));
      sum = DotI16(sum, _mm256_maddubs_epi16(lo, a_lo), s.sc[c][0]);
      sum = DotI16(sum, _mm256_maddubs_epi16(hi, a_hi), s.sc[c][1]);
    }
    return sum;
  }
  static HWY_INLINE __m256i MinDot(const Scales& s, const uint8_t* ap) {
    return _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap + 260)), s.mins);
  }
  template <size_t R, size_t T>
  static HWY_INLINE void Tile(const uint8_t* const* w, const uint8_t* const* a, int64_t nb, float* out) {
    __m256 acc[R][T];
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      Scales s[R];
      float d[R], dmin[R];
      for (size_t r = 0; r < R; ++r) {
        const uint8_t* p = w[r] + b * kWBytes;
        Unpack(p, &s[r]);
        d[r] = HalfToFloat(p);
        dmin[r] = HalfToFloat(p + 2);
      }
      for (size_t t = 0; t < T; ++t) {
        const uint8_t* ap = a[t] + b * kABytes;
        float da;
        std::memcpy(&da, ap, 4);
        for (size_t r = 0; r < R; ++r) {
          const __m256 codes = _mm256_cvtepi32_ps(CodeDot(w[r] + b * kWBytes, s[r], ap));
          const __m256 mins = _mm256_cvtepi32_ps(MinDot(s[r], ap));
          acc[r][t] = _mm256_fmadd_ps(codes, _mm256_set1_ps(da * d[r]), acc[r][t]);
          acc[r][t] = _mm256_fnmadd_ps(mins, _mm256_set1_ps(da * dmin[r]), acc[r][t]);
        }
      }
    }
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) out[r * T + t] = SumF32(acc[r][t]);
  }
  static void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
    for (int64_t b = 0; b < nb; ++b) {
      Scales s;
      Unpack(w + b * kWBytes, &s);
      out[2 * b] = SumI32(CodeDot(w + b * kWBytes, s, a + b * kABytes));
      out[2 * b + 1] = SumI32(MinDot(s, a + b * kABytes));
    }
  }
};

#else  // targets below AVX2: the scalar references

template <float (*kDot)(const uint8_t*, const uint8_t*, int64_t), void (*kSums)(const uint8_t*, const uint8_t*,
                                                                                int64_t, int32_t*),
          int64_t kWBytes_, int64_t kABytes_, int64_t kBlock>
struct RefKernel {
  static constexpr int64_t kWBytes = kWBytes_, kABytes = kABytes_;
  static constexpr size_t kT = 1;
  template <size_t R, size_t T>
  static void Tile(const uint8_t* const* w, const uint8_t* const* a, int64_t nb, float* out) {
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) out[r * T + t] = kDot(w[r], a[t], nb * kBlock);
  }
  static void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) { kSums(w, a, nb * kBlock, out); }
};
using KernelQ4_0 = RefKernel<VecDotQ4_0Q8_0Ref, BlockSumsQ4_0Q8_0Ref, 18, 34, 32>;
using KernelQ8_0 = RefKernel<VecDotQ8_0Q8_0Ref, BlockSumsQ8_0Q8_0Ref, 34, 34, 32>;
using KernelQ4_K = RefKernel<VecDotQ4_KQ8_KRef, BlockSumsQ4_KQ8_KRef, 144, 292, 256>;

#endif  // HWY_TARGET <= HWY_AVX2

// Rows [row_begin, row_end) of y for all n tokens, in tiles of 4 rows x K::kT
// tokens, then single tokens. A short last row tile repeats its last row
// (results dropped). w: rows of nb weight blocks; a: n rows of nb activation blocks.
template <class K>
void GemmRows(const uint8_t* w, const uint8_t* a, int64_t nb, int64_t n, float* y, int64_t out, int64_t row_begin,
              int64_t row_end) {
  constexpr size_t R = size_t(kRowTile), T = K::kT;
  const int64_t w_row = nb * K::kWBytes, a_row = nb * K::kABytes;
  for (int64_t r = row_begin; r < row_end; r += int64_t(R)) {
    const uint8_t* wr[R];
    for (size_t i = 0; i < R; ++i) wr[i] = w + std::min<int64_t>(r + int64_t(i), row_end - 1) * w_row;
    const size_t rows = size_t(std::min<int64_t>(int64_t(R), row_end - r));
    float res[R * T];
    int64_t t = 0;
    for (; t + int64_t(T) <= n; t += int64_t(T)) {
      const uint8_t* as[T];
      for (size_t j = 0; j < T; ++j) as[j] = a + (t + int64_t(j)) * a_row;
      K::template Tile<R, T>(wr, as, nb, res);
      for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < T; ++j) y[(t + int64_t(j)) * out + r + int64_t(i)] = res[i * T + j];
    }
    for (; t < n; ++t) {
      const uint8_t* as[1] = {a + t * a_row};
      K::template Tile<R, 1>(wr, as, nb, res);
      for (size_t i = 0; i < rows; ++i) y[t * out + r + int64_t(i)] = res[i];
    }
  }
}

void GemmQuantRows(int kind, const uint8_t* w, const uint8_t* a, int64_t nb, int64_t n, float* y, int64_t out,
                   int64_t row_begin, int64_t row_end) {
  switch (QuantKind(kind)) {
    case QuantKind::kQ4_0: return GemmRows<KernelQ4_0>(w, a, nb, n, y, out, row_begin, row_end);
    case QuantKind::kQ8_0: return GemmRows<KernelQ8_0>(w, a, nb, n, y, out, row_begin, row_end);
    case QuantKind::kQ4_K: return GemmRows<KernelQ4_K>(w, a, nb, n, y, out, row_begin, row_end);
  }
}

void QuantBlockSumsT(int kind, const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
  switch (QuantKind(kind)) {
    case QuantKind::kQ4_0: return KernelQ4_0::BlockSums(w, a, nb, out);
    case QuantKind::kQ8_0: return KernelQ8_0::BlockSums(w, a, nb, out);
    case QuantKind::kQ4_K: return KernelQ4_K::BlockSums(w, a, nb, out);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(GemmQuantRows);
HWY_EXPORT(QuantBlockSumsT);

namespace {

// The kernel for a weight format, or -1.
int KindOf(DType type) {
  if (type == DTypeOf<Q4_0Format>()) return int(QuantKind::kQ4_0);
  if (type == DTypeOf<Q8_0Format>()) return int(QuantKind::kQ8_0);
  if (type == DTypeOf<Q4_KFormat>()) return int(QuantKind::kQ4_K);
  return -1;
}

}  // namespace

bool HasMatMulQuant(DType type) { return KindOf(type) >= 0; }

bool MatMulQuant(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  const int kind = KindOf(w.type);
  if (kind < 0) return false;
  const FormatInfo& wf = GetFormat(w.type);
  const FormatInfo& af = GetFormat(wf.activation);
  const int64_t out = w.shape[0], in = w.shape[1];
  LOWBIT_CHECK(in % wf.block_size == 0 && wf.block_size == af.block_size && wf.row_header_bytes == 0);
  // a (n, in) in the activation format, quantized once for all rows.
  const size_t a_row = af.RowBytes(in);
  std::vector<uint8_t> a(a_row * size_t(n));
  pool.ParallelFor(n, [&](int64_t b, int64_t e) { af.quantize(x + b * in, e - b, in, a.data() + size_t(b) * a_row, nullptr); });
  const int64_t nb = in / wf.block_size;
  const auto* wp = static_cast<const uint8_t*>(w.data);
  pool.ParallelFor((out + kRowTile - 1) / kRowTile, [&](int64_t tb, int64_t te) {
    HWY_DYNAMIC_DISPATCH(GemmQuantRows)(kind, wp, a.data(), nb, n, y, out, tb * kRowTile, std::min(te * kRowTile, out));
  });
  return true;
}

bool QuantBlockSums(DType type, const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  const int kind = KindOf(type);
  if (kind < 0) return false;
  HWY_DYNAMIC_DISPATCH(QuantBlockSumsT)(kind, w, a, n / GetFormat(type).block_size, out);
  return true;
}

}  // namespace lowbit
#endif  // HWY_ONCE
