// Per-target integer-dot primitives for the quantized kernels (included by
// the -inl kernel headers under gemm_quant.cc's foreach_target loop). Only
// the AVX2, AVX3 and AVX3_DL targets define them; Highway 1.0.3 has no int8
// dot ops, so they are intrinsics on 256-bit vectors (Zen 4 splits 512-bit
// integer ops in two, so 256 bits cost nothing in throughput there).

// Highway's per-target include guard: toggled once per target.
#if defined(LOWBIT_KERNELS_QUANT_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_QUANT_SIMD_INL_H_
#undef LOWBIT_KERNELS_QUANT_SIMD_INL_H_
#else
#define LOWBIT_KERNELS_QUANT_SIMD_INL_H_
#endif

#include <cstdint>
#include <cstring>

#include "hwy/highway.h"

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
HWY_INLINE __m256i DotI16(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#endif

HWY_INLINE __m256i Load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
HWY_INLINE __m128i Load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
HWY_INLINE __m256i Bytes(int v) { return _mm256_set1_epi8(char(v)); }

HWY_INLINE float HalfToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
HWY_INLINE float LoadFloat(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// Signed w times a: |w| (u8) against a with w's sign; |w| <= 128, |a| <= 127.
HWY_INLINE __m256i SignedDot(__m256i w, __m256i a) {
  return DotU8I8(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
}
// The same as i16 pair sums (each |pair| <= 2 * 128 * 127 < 2^15).
HWY_INLINE __m256i SignedPairs(__m256i w, __m256i a) {
  return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
}
// -offset * (sum of each 4 adjacent a), the start of an offset-code dot:
// sum (q - offset) a = dot(q, a) - offset sum a.
HWY_INLINE __m256i NegOffsetSum(__m256i a, int offset) {
  return _mm256_sub_epi32(_mm256_setzero_si256(), DotU8I8(_mm256_setzero_si256(), Bytes(offset), a));
}
// 16 bytes of ggml nibbles (byte j: element j low, j + 16 high) as 32 codes.
HWY_INLINE __m256i NibblesLoHi(const uint8_t* p) {
  const __m256i v = _mm256_broadcastsi128_si256(Load128(p));  // one vbroadcasti128 from memory
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), Bytes(15));
}
// An f16 scale broadcast to 8 floats.
HWY_INLINE __m256 HalfToFloat8(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(int16_t(h)));
}
// Byte e = `value` where bit e of the little-endian 32 bits at p is set, else 0.
HWY_INLINE __m256i BitsToBytes(const uint8_t* p, int value) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(bits)),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i mask = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask), Bytes(value));
}
// Bit `bit` of every byte of v, moved to bit `to` (bit, to < 8).
HWY_INLINE __m256i BitOfBytes(__m256i v, int bit, int to) {
  const __m256i b = _mm256_and_si256(_mm256_srli_epi16(v, bit), Bytes(1));
  return _mm256_slli_epi16(b, to);
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
// acc + ints * scale, the float step of every block.
HWY_INLINE __m256 ScaleAdd(__m256i ints, float scale, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), _mm256_set1_ps(scale), acc);
}
// The same with the weight scale already broadcast and the activation scale
// read from memory: scale = dw * da, rounded as the references round it.
HWY_INLINE __m256 ScaleAdd(__m256i ints, __m256 dw, const float* da, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), _mm256_mul_ps(dw, _mm256_broadcast_ss(da)), acc);
}

// The quantized kernel of weight format F (specialized in the -inl headers):
//   kT     tokens per register tile (with 4 weight rows);
//   W      a weight block prepared once per tile (codes and/or scales);
//   Ints   the block's exact integer sums as i32 lanes (their lane sums are
//          the reference's BlockDot::ints);
//   Accumulate  acc += the block's float term, per lane; da points at the
//          activation block's scale as f32 (converted once per call).
template <class F>
struct Kernel;

#endif  // HWY_TARGET <= HWY_AVX2

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
