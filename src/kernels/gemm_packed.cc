// The packed-layout kernels (packed.h) for AVX-512 VNNI (Highway's AVX3_DL
// target); every other target runs GemmPackedGroupsRef (pack.cc), which
// computes the same integers and float steps, so the two agree bit for bit.
//
// A tile is one group of 16 rows x T tokens: 16 f32 lanes (one per row) per
// token accumulate float(block ints) * (dw * da) with one FMA per block. The
// block ints come from vpdpbusd of 4-code lanes against 4 activation codes
// broadcast to every lane (the u8 operand is the weight code, the s8 operand
// the activation code), started from the activation's offset term.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "formats/all_formats.h"
#include "kernels/fast_paths.h"
#include "kernels/packed.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_packed.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX3_DL

// acc + u (16 lanes of 4 u8 weight codes) . the 4 s8 activation codes at a,
// broadcast to every lane by the instruction's embedded broadcast (GCC 12
// keeps a separate vpbroadcastd for the intrinsic form: one more uop each).
HWY_INLINE __m512i Dp(__m512i acc, __m512i u, const int8_t* a) {
  asm("vpdpbusd %[a]%{1to16%}, %[u], %[acc]"
      : [acc] "+v"(acc)
      : [u] "v"(u), [a] "m"(*reinterpret_cast<const int32_t*>(a)));
  return acc;
}
// acc + sum of the 2 adjacent i16 products per i32 lane (inline asm as Dp:
// clang 14 does not see avx512vnni in Highway 1.0.3's AVX3_DL attributes).
HWY_INLINE __m512i DpWords(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpwssd %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
  return acc;
}
HWY_INLINE __m512i Load512(const uint8_t* p) { return _mm512_load_si512(reinterpret_cast<const void*>(p)); }
// No software prefetch: a group is one sequential stream (packed.h), which
// the hardware prefetchers follow. KB_WORKING_SET_MB=400 kernels_bench, Q4_0
// GEMV, 1 thread: 34-36 GB/s of a 36-37 GB/s read loop; prefetching 4-64 KiB
// ahead into L2 gave 22-34 (the old layout, scales apart from codes, needed it
// and reached 25).
HWY_INLINE __m512 Half16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

struct TileArgs {
  const uint8_t* grp;  // the group's packed bytes
  const PackedWeights* p;
  const PackedActivations* a;
  int64_t t0;    // first token of the tile
  float* y;      // y + row0: token t's 16 outputs at y[t * out]
  int64_t out;
};

// Q4_0 and Q8_0, one block of one token: 8 vectors w[k] of 4 codes x 16 rows
// against activation codes 4k..4k+3. Q4_0's w[0..3] are the low nibbles
// (elements 0-15) and w[4..7] the high nibbles kept in place (16x elements
// 16-31, shifted back after the dot); Q8_0's are the codes.
template <bool kQ4>
HWY_INLINE __m512 LegacyBlock(const __m512i (&w)[8], __m512 dw, const int8_t* ap, int32_t sum, float da, __m512 acc) {
  __m512i s0 = _mm512_set1_epi32(sum);  // the offset term
  __m512i s1 = _mm512_setzero_si512();
  for (int k = 0; k < 4; ++k) {
    s0 = Dp(s0, w[k], ap + 4 * k);
    s1 = Dp(s1, w[4 + k], ap + 16 + 4 * k);
  }
  const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(da));
  const __m512i ints = _mm512_add_epi32(s0, kQ4 ? _mm512_srai_epi32(s1, 4) : s1);  // Q4_0: s1 is 16x its sum
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints), scale, acc);
}

// Q8_0, one token (generation), software pipelined: the next block's 8 code
// vectors are loaded before the current block's dots. One core from DRAM
// (kernels_bench, KB_WORKING_SET_MB=400): 90-100% of the read loop, where the
// TileLegacy loop streamed 83-90%.
HWY_INLINE void TileQ8_0One(const TileArgs& x) {
  const int64_t cols = x.p->cols, nb = x.a->nblk;
  const int8_t* codes = x.a->codes.get() + x.t0 * cols;
  const int32_t* sums = x.a->sums.get() + x.t0 * nb;
  const float* da = x.a->scale.get() + x.t0 * nb;
  __m512 acc = _mm512_setzero_ps();
  __m512i w[8], next[8];
  for (int k = 0; k < 8; ++k) {
    w[k] = Load512(x.grp + PackedCodesOffset(0, 512) + 64 * k);
    next[k] = _mm512_setzero_si512();  // the last block has no next
  }
  for (int64_t b = 0; b < nb; ++b) {
    if (b + 1 < nb) {
      const uint8_t* q = x.grp + PackedCodesOffset(b + 1, 512);
      for (int k = 0; k < 8; ++k) next[k] = Load512(q + 64 * k);
    }
    const __m512 dw = Half16(x.grp + PackedScaleOffset(b, 512));
    acc = LegacyBlock<false>(w, dw, codes + b * 32, sums[b], da[b], acc);
    for (int k = 0; k < 8; ++k) w[k] = next[k];
  }
  _mm512_storeu_ps(x.y + x.t0 * x.out, acc);
}

// Q4_0 and Q8_0, T tokens per block (LegacyBlock); one token of Q8_0 goes to
// TileQ8_0One.
template <size_t T, bool kQ4>
HWY_INLINE void TileLegacy(const TileArgs& x) {
  if constexpr (!kQ4 && T == 1) return TileQ8_0One(x);
  constexpr int64_t kCodeBytes = kQ4 ? 256 : 512;
  const int64_t cols = x.p->cols, nb = x.a->nblk;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (size_t t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* q = x.grp + PackedCodesOffset(b, kCodeBytes);
    __m512i w[8];
    for (int k = 0; k < 4; ++k) {
      const __m512i v = Load512(q + 64 * k);
      w[k] = kQ4 ? _mm512_and_si512(v, mask) : v;
      w[4 + k] = kQ4 ? _mm512_andnot_si512(mask, v) : Load512(q + 256 + 64 * k);
    }
    const __m512 dw = Half16(x.grp + PackedScaleOffset(b, kCodeBytes));
    for (size_t t = 0; t < T; ++t) {
      const int64_t tok = x.t0 + int64_t(t);
      acc[t] = LegacyBlock<kQ4>(w, dw, x.a->codes.get() + tok * cols + b * 32, x.a->sums[size_t(tok * nb + b)],
                                x.a->scale[size_t(tok * nb + b)], acc[t]);
    }
  }
  for (size_t t = 0; t < T; ++t) _mm512_storeu_ps(x.y + (x.t0 + int64_t(t)) * x.out, acc[t]);
}

// Q4_K: a super-block is 64 bytes of f16 scales, 192 of 6-bit sub-block scales
// and mins, then 4 sub-block pairs of 512 code bytes (packed.h). Once per
// super-block the 6-bit header is widened to bytes in an L1 scratch `u`: 128
// sub-block scales, then 128 mins as (m[2p], m[2p+1]) pairs. Per pair p, low
// nibbles (sub-block 2p) and high nibbles kept in place (x16, sub-block
// 2p + 1) are dotted separately, scaled by their sub-block scales (vpmulld)
// and summed; the high total is exactly 16x its value and shifts back at the
// end. Mins: vpdpwssd of the i16 (m[2p], m[2p+1]) pairs against the
// activation's (bsum32[2p], bsum32[2p+1]) pairs.
constexpr int64_t kQ4_KSuper = kPackedQ4KSuperBytes, kQ4_KCodes = kPackedQ4KHeaderBytes;

// The 6-bit header at sb + 64 (packed.h) as 256 bytes u: a nibble from n0/n1
// and two bits from hi per value, selected by mask (ternlog 0xCA: mask ? a : b).
HWY_INLINE void UnpackQ4_KHeader(const uint8_t* sb, uint8_t* u) {
  const __m512i n0 = Load512(sb + 64), n1 = Load512(sb + 128), hi = Load512(sb + 192);
  const __m512i nibble = _mm512_set1_epi8(0x0F), six = _mm512_set1_epi8(0x3F);
  const auto join = [&](__m512i low, __m512i high) {
    return _mm512_and_si512(_mm512_ternarylogic_epi32(nibble, low, high, 0xCA), six);
  };
  _mm512_store_si512(u, join(n0, _mm512_slli_epi16(hi, 4)));
  _mm512_store_si512(u + 64, join(_mm512_srli_epi16(n0, 4), _mm512_slli_epi16(hi, 2)));
  _mm512_store_si512(u + 128, join(n1, hi));
  _mm512_store_si512(u + 192, join(_mm512_srli_epi16(n1, 4), _mm512_srli_epi16(hi, 2)));
}

HWY_INLINE void LoadQ4_KScales(const uint8_t* u, int p, __m512i& sc_lo, __m512i& sc_hi) {
  sc_lo = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(u + 32 * p)));
  sc_hi = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(u + 32 * p + 16)));
}

// One token's 64 activation codes at ap against pair p's 8 code vectors v
// (sub-block scales sc_lo, sc_hi), into the totals. The nibbles are masked
// at each dot: the pipelined loop keeps v and the next pair's 8 vectors live,
// and split copies of both halves would not fit in the 32 registers.
HWY_INLINE void DotQ4_KPair(const __m512i (&v)[8], __m512i sc_lo, __m512i sc_hi, const int8_t* ap, __m512i& lo_total,
                            __m512i& hi_total) {
  const __m512i lo_mask = _mm512_set1_epi8(0x0F), hi_mask = _mm512_set1_epi8(char(0xF0));
  __m512i l = _mm512_setzero_si512(), h = _mm512_setzero_si512();
  for (int k = 0; k < 8; ++k) {
    l = Dp(l, _mm512_and_si512(v[k], lo_mask), ap + 4 * k);
    h = Dp(h, _mm512_and_si512(v[k], hi_mask), ap + 32 + 4 * k);
  }
  lo_total = _mm512_add_epi32(lo_total, _mm512_mullo_epi32(l, sc_lo));
  hi_total = _mm512_add_epi32(hi_total, _mm512_mullo_epi32(h, sc_hi));
}

// Ends one token's super-block: the mins term and the two f16 scales.
HWY_INLINE __m512 EndQ4_KSuper(const uint8_t* sb, const __m512i (&mins_pairs)[4], const int32_t* pairs, float da,
                               __m512i lo_total, __m512i hi_total, __m512 acc) {
  __m512i mins = _mm512_setzero_si512();
  for (int p = 0; p < 4; ++p) mins = DpWords(mins, mins_pairs[p], _mm512_set1_epi32(pairs[p]));
  const __m512i ints = _mm512_add_epi32(lo_total, _mm512_srai_epi32(hi_total, 4));
  const __m512 dav = _mm512_set1_ps(da);
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints), _mm512_mul_ps(Half16(sb), dav), acc);
  return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(Half16(sb + 32), dav), acc);
}

HWY_INLINE void LoadQ4_KMins(const uint8_t* u, __m512i (&mins_pairs)[4]) {
  for (int p = 0; p < 4; ++p)
    mins_pairs[p] = _mm512_cvtepu8_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(u + 128 + 32 * p)));
}

// Q4_K, one token (generation), software pipelined as TileQ8_0One: the next
// pair's 8 code vectors (across super-blocks) are loaded before the current
// pair's dots, and the next super-block's activation codes are prefetched
// into L1 (a 16-row group of the 2048x5632 down projection streams 52 KB of
// weights between two reads of a code line, which evicts it). One loop over
// pairs: with super-blocks and pairs as nested loops GCC 12 dropped the early
// loads for memory operands and the loop ran at 13 GB/s from L3. kernels_bench
// 1 core from DRAM, 2048x5632: 26-28 -> 29-30 GB/s; tg64 paired roofline,
// 6 interleaved rounds in the slow state: 0.80-0.85 -> 0.83-0.87.
// The next super-block's header (4 lines in front of its codes) is prefetched
// right before its first pair is loaded, so the lines are asked for in
// address order; the header was first read after the codes behind it.
// 5632x2048, 4 interleaved rounds: 0.83-0.87 -> 0.87-0.92 of the read loop.
// Prefetching it one pair earlier, or a super-block earlier, was worse
// (0.74-0.76, 0.78-0.86).
HWY_INLINE void TileQ4_KOne(const TileArgs& x) {
  const int64_t cols = x.p->cols, ns = x.a->nblk;
  const int8_t* codes = x.a->codes.get() + x.t0 * cols;
  const int32_t* pairs = x.a->sums.get() + x.t0 * x.a->sums_per_row;
  const float* da = x.a->scale.get() + x.t0 * ns;
  alignas(64) uint8_t u[256];
  __m512 acc = _mm512_setzero_ps();
  __m512i v[8], next[8];
  for (int k = 0; k < 8; ++k) {
    v[k] = Load512(x.grp + kQ4_KCodes + 64 * k);
    next[k] = _mm512_setzero_si512();  // the last pair has no next
  }
  __m512i lo_total = _mm512_setzero_si512(), hi_total = _mm512_setzero_si512();
  const int64_t np = 4 * ns;
  for (int64_t j = 0; j < np; ++j) {
    const int64_t s = j >> 2;
    const int p = int(j & 3);
    const uint8_t* sb = x.grp + s * kQ4_KSuper;
    if (p == 0) {
      UnpackQ4_KHeader(sb, u);
      if (s + 1 < ns)  // the next super-block's activation codes (above)
        for (int l = 0; l < 4; ++l)
          _mm_prefetch(reinterpret_cast<const char*>(codes + 256 * (s + 1) + 64 * l), _MM_HINT_T0);
    }
    if (p == 3 && s + 1 < ns)  // the next super-block's header lines, just before its codes (above)
      for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(sb + kQ4_KSuper + 64 * l), _MM_HINT_T0);
    if (j + 1 < np) {
      const uint8_t* q = x.grp + ((j + 1) >> 2) * kQ4_KSuper + kQ4_KCodes + ((j + 1) & 3) * 512;
      for (int k = 0; k < 8; ++k) next[k] = Load512(q + 64 * k);
    }
    __m512i sc_lo, sc_hi;
    LoadQ4_KScales(u, p, sc_lo, sc_hi);
    DotQ4_KPair(v, sc_lo, sc_hi, codes + 64 * j, lo_total, hi_total);
    for (int k = 0; k < 8; ++k) v[k] = next[k];
    if (p == 3) {
      __m512i mins_pairs[4];
      LoadQ4_KMins(u, mins_pairs);
      acc = EndQ4_KSuper(sb, mins_pairs, pairs + 4 * s, da[s], lo_total, hi_total, acc);
      lo_total = hi_total = _mm512_setzero_si512();
    }
  }
  _mm512_storeu_ps(x.y + x.t0 * x.out, acc);
}

// Q4_K, T tokens per pair; one token goes to TileQ4_KOne.
template <size_t T>
HWY_INLINE void TileQ4_K(const TileArgs& x) {
  if constexpr (T == 1) return TileQ4_KOne(x);
  const int64_t cols = x.p->cols, ns = x.a->nblk;
  alignas(64) uint8_t u[256];
  __m512 acc[T];
  for (size_t t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t s = 0; s < ns; ++s) {
    const uint8_t* sb = x.grp + s * kQ4_KSuper;
    UnpackQ4_KHeader(sb, u);
    __m512i lo_total[T], hi_total[T];
    for (size_t t = 0; t < T; ++t) lo_total[t] = hi_total[t] = _mm512_setzero_si512();
    for (int p = 0; p < 4; ++p) {
      __m512i v[8];
      for (int k = 0; k < 8; ++k) v[k] = Load512(sb + kQ4_KCodes + p * 512 + 64 * k);
      __m512i sc_lo, sc_hi;
      LoadQ4_KScales(u, p, sc_lo, sc_hi);
      // The nibbles are masked per token: splitting them once per pair for
      // the 4 tokens was slower (kernels_bench gemm, 1 core from L3: 270-323
      // against 298-327 GFLOP/s; 16 split vectors crowd the registers).
      for (size_t t = 0; t < T; ++t) {
        const int8_t* ap = x.a->codes.get() + (x.t0 + int64_t(t)) * cols + s * 256 + 64 * p;
        DotQ4_KPair(v, sc_lo, sc_hi, ap, lo_total[t], hi_total[t]);
      }
    }
    __m512i mins_pairs[4];
    LoadQ4_KMins(u, mins_pairs);
    for (size_t t = 0; t < T; ++t) {
      const int64_t tok = x.t0 + int64_t(t);
      acc[t] = EndQ4_KSuper(sb, mins_pairs, x.a->sums.get() + tok * x.a->sums_per_row + 4 * s,
                            x.a->scale[size_t(tok * ns + s)], lo_total[t], hi_total[t], acc[t]);
    }
  }
  for (size_t t = 0; t < T; ++t) _mm512_storeu_ps(x.y + (x.t0 + int64_t(t)) * x.out, acc[t]);
}

template <size_t T>
HWY_INLINE void Tile(const TileArgs& x) {
  if (x.p->type == DTypeOf<Q4_0Format>()) return TileLegacy<T, true>(x);
  if (x.p->type == DTypeOf<Q8_0Format>()) return TileLegacy<T, false>(x);
  return TileQ4_K<T>(x);
}

// Tokens go in chunks whose activation codes stay in L2 (kChunkBytes) while
// the thread's groups stream past once per chunk; within a chunk, tiles of
// kT tokens per group, then single tokens.
void GemmPackedGroupsT(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1) {
  constexpr size_t kT = 4;
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / p.cols / int64_t(kT)) * int64_t(kT);
  for (int64_t c0 = 0; c0 < a.n; c0 += chunk) {
    const int64_t c1 = std::min(a.n, c0 + chunk);
    for (int64_t g = g0; g < g1; ++g) {
      TileArgs x{p.Group(g), &p, &a, c0, y + g * kPackRows, p.rows};
      for (; x.t0 + int64_t(kT) <= c1; x.t0 += int64_t(kT)) Tile<kT>(x);
      for (; x.t0 < c1; ++x.t0) Tile<1>(x);
    }
  }
}

#else

void GemmPackedGroupsT(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1) {
  GemmPackedGroupsRef(p, a, y, g0, g1);
}

#endif  // HWY_TARGET == HWY_AVX3_DL

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(GemmPackedGroupsT);

void GemmPackedGroups(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1) {
  HWY_DYNAMIC_DISPATCH(GemmPackedGroupsT)(p, a, y, g0, g1);
}

bool HasFastPackedKernel() { return (hwy::SupportedTargets() & HWY_AVX3_DL) != 0; }

}  // namespace lowbit
#endif  // HWY_ONCE
