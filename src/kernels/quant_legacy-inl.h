// Per-target kernels of llama.cpp's 32-weight block formats against Q8_0 /
// Q8_1 activations: Q4_0, Q8_0, Q5_0, IQ4_NL (x Q8_0), Q4_1, Q5_1 (x Q8_1).
// Each block's 32 codes become one 256-bit vector lined up with the 32
// activation codes, then one u8 x i8 dot (see quant_simd-inl.h).

#if defined(LOWBIT_KERNELS_QUANT_LEGACY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_QUANT_LEGACY_INL_H_
#undef LOWBIT_KERNELS_QUANT_LEGACY_INL_H_
#else
#define LOWBIT_KERNELS_QUANT_LEGACY_INL_H_
#endif

#include "formats/all_formats.h"
#include "formats/iq4_table.h"
#include "kernels/quant_simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

#if HWY_TARGET <= HWY_AVX2

// Codes with one f16 scale, against Q8_0 (f16 d at byte 0, codes at 2).
struct CodesAndScale {
  __m256i q;
  __m256 d;  // broadcast
};

// Q4_0: x = d (q - 8): dot(q, a) starting from -8 sum a.
template <>
struct Kernel<Q4_0Format> {
  static constexpr size_t kT = 4;
  using W = CodesAndScale;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) { *w = {NibblesLoHi(p + 2), HalfToFloat8(p)}; }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    const __m256i av = Load256(a + 2);
    *i0 = DotU8I8(NegOffsetSum(av, 8), w.q, av);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, w.d, da, *acc);
  }
};

// Q8_0: x = d q, q signed.
template <>
struct Kernel<Q8_0Format> {
  static constexpr size_t kT = 4;
  using W = CodesAndScale;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) { *w = {Load256(p + 2), HalfToFloat8(p)}; }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    *i0 = SignedDot(w.q, Load256(a + 2));
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da, __m256* acc) {
    *acc = ScaleAdd(SignedDot(w.q, Load256(a + 2)), w.d, da, *acc);
  }
};

// Q5_0: x = d (q - 16), q = nibble + 16 * (bit e of qh).
template <>
struct Kernel<Q5_0Format> {
  static constexpr size_t kT = 4;
  using W = CodesAndScale;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    *w = {_mm256_or_si256(NibblesLoHi(p + 6), BitsToBytes(p + 2, 16)), HalfToFloat8(p)};
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    const __m256i av = Load256(a + 2);
    *i0 = DotU8I8(NegOffsetSum(av, 16), w.q, av);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, w.d, da, *acc);
  }
};

// IQ4_NL: x = d v[q], the 16-entry table looked up with one byte shuffle.
template <>
struct Kernel<IQ4_NLFormat> {
  static constexpr size_t kT = 4;
  using W = CodesAndScale;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues)));
    *w = {_mm256_shuffle_epi8(table, NibblesLoHi(p + 2)), HalfToFloat8(p)};
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    *i0 = SignedDot(w.q, Load256(a + 2));
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da, __m256* acc) {
    *acc = ScaleAdd(SignedDot(w.q, Load256(a + 2)), w.d, da, *acc);
  }
};

// Q4_1 / Q5_1 against Q8_1 (f16 d at 0, f16 s = d sum a at 2, codes at 4):
// x = d q + m, so the block adds d_w d_a dot(q, a) + m_w s_a.
struct CodesScaleMin {
  __m256i q;
  __m256 d;  // broadcast
  float m;
};
struct MinKernelBase {
  static constexpr size_t kT = 4;
  using W = CodesScaleMin;
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    *i0 = DotU8I8(_mm256_setzero_si256(), w.q, Load256(a + 4));
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da, __m256* acc) {
    const __m256i dot = DotU8I8(_mm256_setzero_si256(), w.q, Load256(a + 4));
    const __m256 with_min = _mm256_add_ps(*acc, _mm256_setr_ps(w.m * HalfToFloat(a + 2), 0, 0, 0, 0, 0, 0, 0));
    *acc = ScaleAdd(dot, w.d, da, with_min);
  }
};

template <>
struct Kernel<Q4_1Format> : MinKernelBase {
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    *w = {NibblesLoHi(p + 4), HalfToFloat8(p), HalfToFloat(p + 2)};
  }
};

template <>
struct Kernel<Q5_1Format> : MinKernelBase {
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    *w = {_mm256_or_si256(NibblesLoHi(p + 8), BitsToBytes(p + 4, 16)), HalfToFloat8(p), HalfToFloat(p + 2)};
  }
};

#endif  // HWY_TARGET <= HWY_AVX2

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
