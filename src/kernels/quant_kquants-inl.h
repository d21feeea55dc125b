// Per-target kernels of llama.cpp's 256-weight super-block formats against
// Q8_K activations (f32 d at byte 0, codes at 4, 16 i16 block sums at 260):
// Q4_K, Q5_K, Q6_K, Q3_K, Q2_K, IQ4_XS, TQ2_0, TQ1_0. Codes are unpacked 32 at a
// time in line with 32 activation codes; maddubs pair sums (codes <= 63) are
// weighted by the sub-block scales with an i16 dot; offsets and mins come
// from the activation block sums in one more i16 dot.

#if defined(LOWBIT_KERNELS_QUANT_KQUANTS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_QUANT_KQUANTS_INL_H_
#undef LOWBIT_KERNELS_QUANT_KQUANTS_INL_H_
#else
#define LOWBIT_KERNELS_QUANT_KQUANTS_INL_H_
#endif

#include "formats/all_formats.h"
#include "formats/iq4_table.h"
#include "kernels/quant_dot_ref.h"
#include "kernels/quant_simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

#if HWY_TARGET <= HWY_AVX2

HWY_INLINE __m256i ActCodes(const uint8_t* a, int i) { return Load256(a + 4 + i); }
HWY_INLINE __m256i ActBlockSums(const uint8_t* a) { return Load256(a + 260); }

// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scale and min. Chunk c (64
// weights) holds sub-block 2c in the low nibbles and 2c + 1 in the high.
struct ScalesMins8 {
  __m256i sc;      // i16 scales 0..7 in both 128-bit halves (PickI16 picks one)
  __m256i mins;    // i16 [m0 m0 m1 m1 ... m7 m7], against the 16 block sums
  float d, dmin;
  const uint8_t* p;
};
// The 12 packed bytes to 8 scale bytes then 8 min bytes, 32 bits at a time
// (the datasheet's per-j rule applied to four sub-blocks at once).
HWY_INLINE __m128i UnpackScalesMins8(const uint8_t* packed) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t u[4];
  std::memcpy(u, packed, 12);
  u[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);  // m4..m7
  const uint32_t m0 = u[1] & kLow6;                               // m0..m3
  u[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);          // sc4..sc7
  u[2] = m0;
  u[0] &= kLow6;                                                  // sc0..sc3
  // Inserted, not stored and reloaded: four 32-bit stores read back as one
  // 128-bit load miss store forwarding.
  return _mm_setr_epi32(int(u[0]), int(u[1]), int(u[2]), int(u[3]));
}
// Byte-shuffle controls that broadcast i16 lane j of each 128-bit half.
struct PickI16Controls {
  alignas(32) uint8_t bytes[8][32];
};
constexpr PickI16Controls MakePickI16Controls() {
  PickI16Controls c{};
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 32; ++i) c.bytes[j][i] = uint8_t(2 * j + (i & 1));
  return c;
}
inline constexpr PickI16Controls kPickI16 = MakePickI16Controls();
// i16 lane j of the 8 in each 128-bit half of v, broadcast.
HWY_INLINE __m256i PickI16(__m256i v, int j) {
  return _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPickI16.bytes[j])));
}

HWY_INLINE void PrepareScalesMins8(const uint8_t* p, ScalesMins8* w) {
  const __m128i sm = UnpackScalesMins8(p + 4);
  w->sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
  const __m256i m32 = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
  w->mins = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
  w->d = HalfToFloat(p);
  w->dmin = HalfToFloat(p + 2);
  w->p = p;
}

template <int kQs, int kQh>  // byte offsets of qs and (Q5_K) qh, kQh < 0: none
struct Kernel4or5K {
  static constexpr size_t kT = 4;  // 4x4 tile
  using W = ScalesMins8;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) { PrepareScalesMins8(p, w); }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i* i1) {
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = Load256(w.p + kQs + 32 * c);
      __m256i lo = _mm256_and_si256(v, Bytes(15));
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), Bytes(15));
      if constexpr (kQh >= 0) {
        const __m256i qh = Load256(w.p + kQh);
        lo = _mm256_or_si256(lo, BitOfBytes(qh, 2 * c, 4));
        hi = _mm256_or_si256(hi, BitOfBytes(qh, 2 * c + 1, 4));
      }
      sum = DotI16(sum, _mm256_maddubs_epi16(lo, ActCodes(a, 64 * c)), PickI16(w.sc, 2 * c));
      sum = DotI16(sum, _mm256_maddubs_epi16(hi, ActCodes(a, 64 * c + 32)), PickI16(w.sc, 2 * c + 1));
    }
    *i0 = sum;
    *i1 = _mm256_madd_epi16(ActBlockSums(a), w.mins);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    const float da = *da_ptr;
    *acc = ScaleAdd(i0, da * w.d, *acc);
    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_set1_ps(da * w.dmin), *acc);
  }
};
template <>
struct Kernel<Q4_KFormat> : Kernel4or5K<16, -1> {};
template <>
struct Kernel<Q5_KFormat> : Kernel4or5K<48, 16> {};

// 16 sub-blocks of 16 with one signed scale each. Per 32 codes the kernels
// need the scale pair [sc_j x8 | sc_j+1 x8]: Pair(k) shuffles it out of the
// scales' 128-bit halves, each broadcast to both halves of `half[]`; sc16
// holds all 16 for the offset/min dot against the block sums.
struct Scales16 {
  __m256i half[2];
  __m256i sc16;
  float d, dmin;
  const uint8_t* p;
  HWY_INLINE __m256i Pair(int k) const {
    // Byte shuffle controls: scales 2k, 2k + 1 are i16 lanes j, j + 1 (j = 2 (k % 4))
    // of half k / 4; the low 128 bits repeat bytes 2j, 2j + 1, the high 2j + 2, 2j + 3.
    alignas(32) static constexpr uint8_t kControl[4][32] = {
        {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
        {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
        {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
        {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
         14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15}};
    return _mm256_shuffle_epi8(half[k / 4], _mm256_load_si256(reinterpret_cast<const __m256i*>(kControl[k % 4])));
  }
};
// From the 16 sub-block scales as i16 lanes.
HWY_INLINE void PrepareScales16(__m256i sc16, Scales16* w) {
  w->half[0] = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16));
  w->half[1] = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1));
  w->sc16 = sc16;
}

// Shared finish: codes with an offset o: sum_j sc_j sum (q - o) a =
// dot - o * sum_j sc_j bsum_j (o a power of two: a shift).
template <int kShift>
HWY_INLINE __m256i OffsetFinish(__m256i dot, const Scales16& w, const uint8_t* a) {
  return _mm256_sub_epi32(dot, _mm256_slli_epi32(_mm256_madd_epi16(ActBlockSums(a), w.sc16), kShift));
}

// Q6_K: x = d sc_j (q - 32), q = 4 low bits (ql) + 2 high bits (qh).
template <>
struct Kernel<Q6_KFormat> {
  static constexpr size_t kT = 2;
  using W = Scales16;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    PrepareScales16(_mm256_cvtepi8_epi16(Load128(p + 192)), w);
    w->d = HalfToFloat(p + 208);
    w->p = p;
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    __m256i sum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = Load256(w.p + 64 * h), ql1 = Load256(w.p + 64 * h + 32);
      const __m256i qh = Load256(w.p + 128 + 32 * h);
      const __m256i m4 = Bytes(15), m2 = Bytes(0x30);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
          _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2))};
      for (int k = 0; k < 4; ++k)
        sum = DotI16(sum, _mm256_maddubs_epi16(q[k], ActCodes(a, 128 * h + 32 * k)), w.Pair(4 * h + k));
    }
    *i0 = OffsetFinish<5>(sum, w, a);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, *da_ptr * w.d, *acc);
  }
};

// Q3_K: x = d (sc_j - 32) (q - 4), q = 2 low bits (qs) + 4 * (hmask bit).
// Weight 128h + 32s + l: bits 2s of qs[32h + l], bit 4h + s of hmask[l].
template <>
struct Kernel<Q3_KFormat> {
  static constexpr size_t kT = 2;
  using W = Scales16;
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    alignas(32) int16_t sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = int16_t(Q3KScale(p + 96, j));
    PrepareScales16(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc)), w);
    w->d = HalfToFloat(p + 108);
    w->p = p;
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    __m256i sum = _mm256_setzero_si256();
    const __m256i hmask = Load256(w.p);
    for (int h = 0; h < 2; ++h) {
      const __m256i qs = Load256(w.p + 32 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * s), Bytes(3)),
                                          BitOfBytes(hmask, 4 * h + s, 2));
        sum = DotI16(sum, _mm256_maddubs_epi16(q, ActCodes(a, 128 * h + 32 * s)), w.Pair(4 * h + s));
      }
    }
    *i0 = OffsetFinish<2>(sum, w, a);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, *da_ptr * w.d, *acc);
  }
};

// Q2_K: x = d (sc_j & 15) q - dmin (sc_j >> 4), q 2-bit as Q3_K's low bits.
template <>
struct Kernel<Q2_KFormat> {
  static constexpr size_t kT = 2;
  using W = Scales16;  // half: the scales; sc16: the mins
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    const __m128i packed = Load128(p);
    PrepareScales16(_mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(15))), w);
    w->sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(15)));
    w->d = HalfToFloat(p + 80);
    w->dmin = HalfToFloat(p + 82);
    w->p = p;
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i* i1) {
    __m256i sum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i qs = Load256(w.p + 16 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * s), Bytes(3));
        sum = DotI16(sum, _mm256_maddubs_epi16(q, ActCodes(a, 128 * h + 32 * s)), w.Pair(4 * h + s));
      }
    }
    *i0 = sum;
    *i1 = _mm256_madd_epi16(ActBlockSums(a), w.sc16);
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    const float da = *da_ptr;
    *acc = ScaleAdd(i0, da * w.d, *acc);
    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_set1_ps(da * w.dmin), *acc);
  }
};

// IQ4_XS: x = d (ls_j - 32) v[q] over 8 sub-blocks of 32 (nibbles as Q4_0).
template <>
struct Kernel<IQ4_XSFormat> {
  static constexpr size_t kT = 2;
  struct W {
    __m256i sc[8];
    float d;
    const uint8_t* p;
  };
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) {
    uint16_t scales_h;
    std::memcpy(&scales_h, p + 2, 2);
    for (int j = 0; j < 8; ++j) w->sc[j] = _mm256_set1_epi16(int16_t(IQ4XSScale(scales_h, p + 4, j)));
    w->d = HalfToFloat(p);
    w->p = p;
  }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues)));
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i v = _mm256_shuffle_epi8(table, NibblesLoHi(w.p + 8 + 16 * j));
      sum = DotI16(sum, SignedPairs(v, ActCodes(a, 32 * j)), w.sc[j]);
    }
    *i0 = sum;
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, *da_ptr * w.d, *acc);
  }
};

// TQ2_0: x = d (q - 1), q 2-bit as Q2_K; the -1 is minus the block sums.
template <>
struct Kernel<TQ2_0Format> {
  static constexpr size_t kT = 4;
  struct W {
    float d;
    const uint8_t* p;
  };
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) { *w = {HalfToFloat(p + 64), p}; }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(ActBlockSums(a), _mm256_set1_epi16(1)));
    for (int h = 0; h < 2; ++h) {
      const __m256i qs = Load256(w.p + 32 * h);
      for (int s = 0; s < 4; ++s)
        sum = DotU8I8(sum, _mm256_and_si256(_mm256_srli_epi16(qs, 2 * s), Bytes(3)), ActCodes(a, 128 * h + 32 * s));
    }
    *i0 = sum;
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, *da_ptr * w.d, *acc);
  }
};

// TQ1_0: x = d (t - 1), trits t packed 5 per byte (4 in qh). Trit i of byte
// q is ((q * 3^i) mod 256) * 3 >> 8: per byte in 16-bit lanes (even bytes,
// then odd), with a multiplier 3^i per 16-bit lane. Layout (see
// formats/ggml_nl_ternary.h): qs[0..31] trit i = elements 32i + m;
// qs[32..47] trit i = elements 160 + 16i + m; qh[m] trit i = element 240 + 4i + m.
HWY_INLINE __m256i Trits(__m256i v, __m256i pow3) {
  const __m256i low = _mm256_set1_epi16(0xFF);
  auto trit16 = [&](__m256i x) {  // x: zero-extended bytes in 16-bit lanes
    const __m256i m = _mm256_and_si256(_mm256_mullo_epi16(x, pow3), low);
    return _mm256_srli_epi16(_mm256_mullo_epi16(m, _mm256_set1_epi16(3)), 8);
  };
  const __m256i even = trit16(_mm256_and_si256(v, low));
  const __m256i odd = trit16(_mm256_srli_epi16(v, 8));
  return _mm256_or_si256(even, _mm256_slli_epi16(odd, 8));
}

template <>
struct Kernel<TQ1_0Format> {
  static constexpr size_t kT = 4;
  struct W {
    float d;
    const uint8_t* p;
  };
  static HWY_INLINE void Prepare(const uint8_t* p, W* w) { *w = {HalfToFloat(p + 52), p}; }
  static HWY_INLINE void Ints(const W& w, const uint8_t* a, __m256i* i0, __m256i*) {
    __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(ActBlockSums(a), _mm256_set1_epi16(1)));
    const __m256i head = Load256(w.p);
    static constexpr int16_t kPow3[5] = {1, 3, 9, 27, 81};
    for (int i = 0; i < 5; ++i) sum = DotU8I8(sum, Trits(head, _mm256_set1_epi16(kPow3[i])), ActCodes(a, 32 * i));
    // qs[32..47] twice: trits (0, 1) then (2, 3) against 32 consecutive codes.
    const __m256i tail = _mm256_broadcastsi128_si256(Load128(w.p + 32));
    sum = DotU8I8(sum, Trits(tail, _mm256_setr_epi16(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3)), ActCodes(a, 160));
    sum = DotU8I8(sum, Trits(tail, _mm256_setr_epi16(9, 9, 9, 9, 9, 9, 9, 9, 27, 27, 27, 27, 27, 27, 27, 27)),
                  ActCodes(a, 192));
    // Trit 4 of qs[32..47] (elements 224..239), then qh: byte p of the high
    // half is qh[p % 4] (a broadcast 32-bit word) with multiplier 3^(p / 4).
    uint32_t qh;
    std::memcpy(&qh, w.p + 48, 4);
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32(int(qh)), Load128(w.p + 32));
    sum = DotU8I8(sum, Trits(last, _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27)),
                  ActCodes(a, 224));
    *i0 = sum;
  }
  static HWY_INLINE void Accumulate(const W& w, const uint8_t* a, const float* da_ptr, __m256* acc) {
    __m256i i0, i1;
    Ints(w, a, &i0, &i1);
    *acc = ScaleAdd(i0, *da_ptr * w.d, *acc);
  }
};

#endif  // HWY_TARGET <= HWY_AVX2

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
