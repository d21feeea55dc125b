// Attention of one (token, head) and the SwiGLU gate (see attention.h), with
// Highway on every target and dispatched once per call: 32 heads x 22 layers
// per generated token call AttendHead with len from 1 to a few thousand, so
// it keeps no per-call setup beyond a tail copy of q.
//   Scores: lane-count (N) positions at a time, N accumulators over head_dim,
//   merged in log2(N) ConcatEven/ConcatOdd steps into one vector of N dots
//   (N - 1 merges per N positions instead of a horizontal sum per position).
//   Softmax: hn::Exp on vectors of scores. Weighted sum: up to 4 vectors of
//   out in registers over all positions, two positions per step.
// Leftovers: head_dim % N through zero-padded copies; len % N positions as a
// last block whose rows past len - 1 repeat row len - 1 (dropped), or, when
// fewer than N/2, one row at a time.
// AttendGroup does the same per head for the query heads that share a KV
// head, interleaved so that each key and value row comes from memory once:
// each block of N key rows is dotted with every head (a key vector loaded
// once for up to 8 heads), and the weighted sum runs over blocks of 64
// value rows, each value vector loaded once for a tile of heads. Zen 4, hd
// 64, 8 heads: 1.3-1.4x AttendHead x 8 at len 128-512, 1.7x at 2048.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/dot_ref.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: re-included per target like this file.
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
// Lanes per vector; a compile-time constant (a power of two) on x86.
constexpr size_t kN = hn::MaxLanes(DF());

#if HWY_TARGET == HWY_SCALAR
// One lane: the single accumulator is already the dot.
HWY_INLINE VF MergeSums(DF /*df*/, VF* acc) { return acc[0]; }
#else
// Each step adds neighbouring lanes of a pair of accumulators, the first's
// sums in the lower half, the second's in the upper: after log2(N) steps
// acc[0] lane j is the whole sum of accumulator j.
HWY_INLINE VF MergeSums(DF df, VF* acc) {
  for (size_t s = kN; s > 1; s /= 2)
    for (size_t j = 0; j < s / 2; ++j)
      acc[j] = hn::Add(hn::ConcatEven(df, acc[2 * j + 1], acc[2 * j]), hn::ConcatOdd(df, acc[2 * j + 1], acc[2 * j]));
  return acc[0];
}
#endif

// Lane j = q . k[j] for the N rows k[0..N). q_tail holds q's head_dim % N
// leftover floats zero-padded to N, so the padded lanes add +0.
HWY_INLINE VF DotRows(DF df, const float* q, const float* q_tail, const float* const* k, int64_t head_dim) {
  VF acc[kN];
  for (size_t j = 0; j < kN; ++j) acc[j] = hn::Zero(df);
  const int64_t body = head_dim - head_dim % int64_t(kN);
  for (int64_t i = 0; i < body; i += int64_t(kN)) {
    const VF qv = hn::LoadU(df, q + i);
    for (size_t j = 0; j < kN; ++j) acc[j] = hn::MulAdd(qv, hn::LoadU(df, k[j] + i), acc[j]);
  }
  if (body < head_dim) {
    const size_t rest = size_t(head_dim - body);
    const VF qv = hn::Load(df, q_tail);
    HWY_ALIGN float kt[kN] = {};
    for (size_t j = 0; j < kN; ++j) {
      std::memcpy(kt, k[j] + body, rest * sizeof(float));
      acc[j] = hn::MulAdd(qv, hn::Load(df, kt), acc[j]);
    }
  }
  return MergeSums(df, acc);
}

// q . k for one row, with one horizontal sum.
HWY_INLINE float DotRow(DF df, const float* q, const float* q_tail, const float* k, int64_t head_dim) {
  VF acc = hn::Zero(df);
  const int64_t body = head_dim - head_dim % int64_t(kN);
  for (int64_t i = 0; i < body; i += int64_t(kN)) acc = hn::MulAdd(hn::LoadU(df, q + i), hn::LoadU(df, k + i), acc);
  if (body < head_dim) {
    HWY_ALIGN float kt[kN] = {};
    std::memcpy(kt, k + body, size_t(head_dim - body) * sizeof(float));
    acc = hn::MulAdd(hn::Load(df, q_tail), hn::Load(df, kt), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

// out[c * N + l] = sum_p scores[p] * values[p * stride + c * N + l] for C
// vectors of out: even and odd positions in separate accumulators, so there
// are 2C independent FMA chains (8 at C = 4, enough to cover FMA latency).
template <size_t C>
HWY_INLINE void WeightedSum(DF df, const float* scores, const float* values, int64_t len, int64_t stride, float* out) {
  VF acc0[C], acc1[C];
  for (size_t c = 0; c < C; ++c) acc0[c] = acc1[c] = hn::Zero(df);
  int64_t p = 0;
  for (; p + 2 <= len; p += 2) {
    const VF a0 = hn::Set(df, scores[p]), a1 = hn::Set(df, scores[p + 1]);
    const float* v0 = values + p * stride;
    const float* v1 = v0 + stride;
    for (size_t c = 0; c < C; ++c) {
      acc0[c] = hn::MulAdd(a0, hn::LoadU(df, v0 + c * kN), acc0[c]);
      acc1[c] = hn::MulAdd(a1, hn::LoadU(df, v1 + c * kN), acc1[c]);
    }
  }
  if (p < len) {
    const VF a = hn::Set(df, scores[p]);
    for (size_t c = 0; c < C; ++c) acc0[c] = hn::MulAdd(a, hn::LoadU(df, values + p * stride + c * kN), acc0[c]);
  }
  for (size_t c = 0; c < C; ++c) hn::StoreU(hn::Add(acc0[c], acc1[c]), df, out + c * kN);
}

// The last head_dim % N floats of out, through a zero-padded copy of each
// position's leftover values.
HWY_INLINE void WeightedSumTail(DF df, const float* scores, const float* values, int64_t len, int64_t stride,
                                size_t rest, float* out) {
  HWY_ALIGN float vt[kN] = {};
  VF acc = hn::Zero(df);
  for (int64_t p = 0; p < len; ++p) {
    std::memcpy(vt, values + p * stride, rest * sizeof(float));
    acc = hn::MulAdd(hn::Set(df, scores[p]), hn::Load(df, vt), acc);
  }
  hn::Store(acc, df, vt);
  std::memcpy(out, vt, rest * sizeof(float));
}

// Softmax of finite scores (len) in place, given their max: hn::Exp of
// s - max, their sum in N lanes, then a division by it.
HWY_INLINE void SoftmaxFinite(DF df, float* scores, int64_t len, float max) {
  const int64_t n = int64_t(kN);
  const VF vm = hn::Set(df, max);
  VF sum = hn::Zero(df);
  int64_t p = 0;
  for (; p + n <= len; p += n) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, scores + p), vm));
    hn::StoreU(e, df, scores + p);
    sum = hn::Add(sum, e);
  }
  if (p < len) {
    HWY_ALIGN float buf[kN];
    std::fill(buf, buf + kN, -INFINITY);  // exp(-inf) = 0 adds nothing
    std::memcpy(buf, scores + p, size_t(len - p) * sizeof(float));
    const VF e = hn::Exp(df, hn::Sub(hn::Load(df, buf), vm));
    hn::Store(e, df, buf);
    std::memcpy(scores + p, buf, size_t(len - p) * sizeof(float));
    sum = hn::Add(sum, e);
  }
  const float total = hn::GetLane(hn::SumOfLanes(df, sum));
  const VF vtotal = hn::Set(df, total);
  for (p = 0; p + n <= len; p += n) hn::StoreU(hn::Div(hn::LoadU(df, scores + p), vtotal), df, scores + p);
  for (; p < len; ++p) scores[p] /= total;
}

void AttendHeadSimd(const float* q, const float* keys, const float* values, int64_t len, int64_t stride,
                    int64_t head_dim, float scale, float* scores, float* out) {
  const DF df;
  const int64_t n = int64_t(kN);
  const int64_t body = head_dim - head_dim % n;
  HWY_ALIGN float q_tail[kN] = {};
  std::memcpy(q_tail, q + body, size_t(head_dim - body) * sizeof(float));

  // scores[p] = (q . k[p]) * scale, with their max and whether all are finite.
  const VF vscale = hn::Set(df, scale), inf = hn::Set(df, INFINITY);
  VF vmax = hn::Set(df, -INFINITY);
  auto finite = hn::Eq(vmax, vmax);  // all true
  int64_t p0 = 0;
  for (; p0 < len && 2 * (len - p0) >= n; p0 += n) {
    const float* k[kN];
    for (size_t j = 0; j < kN; ++j) k[j] = keys + std::min(p0 + int64_t(j), len - 1) * stride;
    const VF s = hn::Mul(DotRows(df, q, q_tail, k, head_dim), vscale);
    vmax = hn::Max(vmax, s);
    finite = hn::And(finite, hn::Lt(hn::Abs(s), inf));
    if (p0 + n <= len) {
      hn::StoreU(s, df, scores + p0);
    } else {
      HWY_ALIGN float buf[kN];
      hn::Store(s, df, buf);
      std::memcpy(scores + p0, buf, size_t(len - p0) * sizeof(float));
    }
  }
  // Under N/2 positions left (1..7 on AVX-512): a horizontal sum per row
  // costs less than a block of N mostly repeated rows and its merge (len 1:
  // ~60 ns instead of ~130 ns on Zen 4, head_dim 64).
  float rows_max = -INFINITY;
  bool rows_finite = true;
  for (; p0 < len; ++p0) {
    const float s = DotRow(df, q, q_tail, keys + p0 * stride, head_dim) * scale;
    scores[p0] = s;
    rows_max = std::max(rows_max, s);
    rows_finite &= std::fabs(s) < INFINITY;
  }

  // Softmax. NaN or inf among the scores (where hn::Max and hn::Exp differ
  // from std::max and std::exp) take the reference's arithmetic.
  if (!hn::AllTrue(df, finite) || !rows_finite) {
    SoftmaxRef(scores, len);
  } else {
    SoftmaxFinite(df, scores, len, std::max(hn::GetLane(hn::MaxOfLanes(df, vmax)), rows_max));
  }

  // out = scores @ values, 4 vectors of head_dim at a time, then 3/2/1.
  int64_t i = 0;
  for (; i + 4 * n <= body; i += 4 * n) WeightedSum<4>(df, scores, values + i, len, stride, out + i);
  const int64_t whole = (body - i) / n;  // 0..3 vectors left
  if (whole == 3) {
    WeightedSum<3>(df, scores, values + i, len, stride, out + i);
  } else if (whole == 2) {
    WeightedSum<2>(df, scores, values + i, len, stride, out + i);
  } else if (whole == 1) {
    WeightedSum<1>(df, scores, values + i, len, stride, out + i);
  }
  if (body < head_dim) WeightedSumTail(df, scores, values + body, len, stride, size_t(head_dim - body), out + body);
}

// The group kernel's tiles. Heads: at most kMaxGroup per pass over the keys
// and values (a larger group takes several passes), so its per-head state
// has a fixed size. Weighted sum: kStateVecs vectors of out per sweep over
// the positions (AttendHead's 4), in blocks of kBlock positions whose value
// rows stay in L1 (64 rows x 4 vectors = 16 KiB on AVX-512) while every
// head reads them; per block, register tiles of kTileHeads heads x
// kTileVecs vectors: 2 H C accumulators + 2 C value vectors + 2 H scores,
// 28 of the 32 registers on AVX-512 (H = 4, C = 2), 16 of 16 on AVX2 and
// 128-bit targets (H = 2, C = 2).
constexpr int64_t kMaxGroup = 16;
constexpr size_t kStateVecs = 4;
constexpr int64_t kBlock = 64;  // even: blocks start at even positions
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr size_t kTileHeads = 2;
#else
constexpr size_t kTileHeads = 4;
#endif
constexpr size_t kTileVecs = 2;
constexpr size_t kDotHeads = 8;

// dots[h] = DotRows for the H heads q + h * q_stride (q_tail[h] their
// zero-padded leftovers): per (head, row) the same chain of MulAdds over
// head_dim and the same merge, so the same bits, with each key vector loaded
// once for the H heads (H accumulators, a key vector, the queries from L1).
template <size_t H>
HWY_INLINE void DotRowsHeads(DF df, const float* q, int64_t q_stride, const float (*q_tail)[kN], const float* const* k,
                             int64_t head_dim, VF* dots) {
  VF acc[H][kN];
  const int64_t body = head_dim - head_dim % int64_t(kN);
  for (size_t j = 0; j < kN; ++j) {
    VF a[H];
    for (size_t h = 0; h < H; ++h) a[h] = hn::Zero(df);
    for (int64_t i = 0; i < body; i += int64_t(kN)) {
      const VF kv = hn::LoadU(df, k[j] + i);
      for (size_t h = 0; h < H; ++h) a[h] = hn::MulAdd(hn::LoadU(df, q + int64_t(h) * q_stride + i), kv, a[h]);
    }
    if (body < head_dim) {
      HWY_ALIGN float kt[kN] = {};
      std::memcpy(kt, k[j] + body, size_t(head_dim - body) * sizeof(float));
      const VF kv = hn::Load(df, kt);
      for (size_t h = 0; h < H; ++h) a[h] = hn::MulAdd(hn::Load(df, q_tail[h]), kv, a[h]);
    }
    for (size_t h = 0; h < H; ++h) acc[h][j] = a[h];
  }
  for (size_t h = 0; h < H; ++h) dots[h] = MergeSums(df, acc[h]);
}

// DotRowsHeads<h> for run-time h in [1, H].
template <size_t H>
HWY_INLINE void DotRowsHeadsUpTo(size_t h, DF df, const float* q, int64_t q_stride, const float (*q_tail)[kN],
                                 const float* const* k, int64_t head_dim, VF* dots) {
  if constexpr (H > 1) {
    if (h < H) return DotRowsHeadsUpTo<H - 1>(h, df, q, q_stride, q_tail, k, head_dim, dots);
  }
  DotRowsHeads<H>(df, q, q_stride, q_tail, k, head_dim, dots);
}

// Adds the positions [0, count) of a block to the running sums of H heads x
// C vectors of out, acc0[h * kStateVecs + c] (even positions of the whole
// sum) and acc1 (odd ones) as WeightedSum<C> keeps them, so each head's
// arithmetic is AttendHead's; each value vector is loaded once for the H
// heads. sc: head 0's probabilities for the block, heads sc_stride apart;
// values: the block's first row at the tile's first vector. count is even
// except in the last block. Rows kBlock ahead are prefetched while they are
// before prefetch_end (0: none).
template <size_t H, size_t C>
HWY_INLINE void WeightedSumTile(DF df, const float* sc, int64_t sc_stride, const float* values, int64_t count,
                                int64_t stride, int64_t prefetch_end, VF* acc0, VF* acc1) {
  VF a0[H * C], a1[H * C];
  for (size_t h = 0; h < H; ++h)
    for (size_t c = 0; c < C; ++c) {
      a0[h * C + c] = acc0[h * kStateVecs + c];
      a1[h * C + c] = acc1[h * kStateVecs + c];
    }
  int64_t p = 0;
  for (; p + 2 <= count; p += 2) {
    const float* v0 = values + p * stride;
    const float* v1 = v0 + stride;
    if (p + kBlock + 1 < prefetch_end) {
      for (size_t c = 0; c < C; ++c) {
        hwy::Prefetch(v0 + kBlock * stride + c * kN);
        hwy::Prefetch(v1 + kBlock * stride + c * kN);
      }
    }
    VF x0[C], x1[C];
    for (size_t c = 0; c < C; ++c) {
      x0[c] = hn::LoadU(df, v0 + c * kN);
      x1[c] = hn::LoadU(df, v1 + c * kN);
    }
    for (size_t h = 0; h < H; ++h) {
      const VF s0 = hn::Set(df, sc[int64_t(h) * sc_stride + p]), s1 = hn::Set(df, sc[int64_t(h) * sc_stride + p + 1]);
      for (size_t c = 0; c < C; ++c) {
        a0[h * C + c] = hn::MulAdd(s0, x0[c], a0[h * C + c]);
        a1[h * C + c] = hn::MulAdd(s1, x1[c], a1[h * C + c]);
      }
    }
  }
  if (p < count) {
    for (size_t h = 0; h < H; ++h) {
      const VF s = hn::Set(df, sc[int64_t(h) * sc_stride + p]);
      for (size_t c = 0; c < C; ++c)
        a0[h * C + c] = hn::MulAdd(s, hn::LoadU(df, values + p * stride + c * kN), a0[h * C + c]);
    }
  }
  for (size_t h = 0; h < H; ++h)
    for (size_t c = 0; c < C; ++c) {
      acc0[h * kStateVecs + c] = a0[h * C + c];
      acc1[h * kStateVecs + c] = a1[h * C + c];
    }
}

// WeightedSumTile<h, c> for run-time h <= H, c <= C.
template <size_t H, size_t C>
HWY_INLINE void WeightedSumTileUpTo(size_t h, size_t c, DF df, const float* sc, int64_t sc_stride, const float* values,
                                    int64_t count, int64_t stride, int64_t prefetch_end, VF* acc0, VF* acc1) {
  if constexpr (H > 1) {
    if (h < H)
      return WeightedSumTileUpTo<H - 1, C>(h, c, df, sc, sc_stride, values, count, stride, prefetch_end, acc0, acc1);
  }
  if constexpr (C > 1) {
    if (c < C)
      return WeightedSumTileUpTo<H, C - 1>(h, c, df, sc, sc_stride, values, count, stride, prefetch_end, acc0, acc1);
  }
  WeightedSumTile<H, C>(df, sc, sc_stride, values, count, stride, prefetch_end, acc0, acc1);
}

// AttendHeadSimd for n_q <= kMaxGroup heads sharing keys and values (see
// AttendGroup in attention.h): every step does for each head what
// AttendHeadSimd does, in the same order, while the rows it reads are in L1.
void AttendGroupPass(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                     int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride) {
  const DF df;
  const int64_t n = int64_t(kN);
  const int64_t body = head_dim - head_dim % n;
  const size_t rest = size_t(head_dim - body);
  HWY_ALIGN float q_tail[kMaxGroup][kN] = {};
  for (int64_t h = 0; h < n_q; ++h) std::memcpy(q_tail[h], q + h * q_stride + body, rest * sizeof(float));

  // Scores, per block of N positions (its key rows then in L1) for every
  // head, with each head's max and whether all are finite. The next block's
  // rows are prefetched: a KV cache row holds every KV head, so a head's
  // rows are a short piece of each page and the hardware prefetchers, which
  // stop at page ends, fall behind (len 2048 from DRAM: 1.5x faster).
  const VF vscale = hn::Set(df, scale), inf = hn::Set(df, INFINITY);
  VF vmax[kMaxGroup];
  bool finite[kMaxGroup];
  for (int64_t h = 0; h < n_q; ++h) {
    vmax[h] = hn::Set(df, -INFINITY);
    finite[h] = true;
  }
  int64_t p0 = 0;
  for (; p0 < len && 2 * (len - p0) >= n; p0 += n) {
    const float* k[kN];
    for (size_t j = 0; j < kN; ++j) {
      k[j] = keys + std::min(p0 + int64_t(j), len - 1) * stride;
      if (p0 + n + int64_t(j) < len) {
        const float* next = k[j] + n * stride;
        for (int64_t i = 0; i < head_dim; i += 16) hwy::Prefetch(next + i);
        hwy::Prefetch(next + head_dim - 1);
      }
    }
    for (int64_t h0 = 0; h0 < n_q; h0 += int64_t(kDotHeads)) {
      const int64_t h_end = std::min(n_q, h0 + int64_t(kDotHeads));
      VF dots[kDotHeads];
      DotRowsHeadsUpTo<kDotHeads>(size_t(h_end - h0), df, q + h0 * q_stride, q_stride, q_tail + h0, k, head_dim, dots);
      for (int64_t h = h0; h < h_end; ++h) {
        const VF s = hn::Mul(dots[h - h0], vscale);
        vmax[h] = hn::Max(vmax[h], s);
        finite[h] &= hn::AllTrue(df, hn::Lt(hn::Abs(s), inf));
        float* sc = scores + h * len + p0;
        if (p0 + n <= len) {
          hn::StoreU(s, df, sc);
        } else {
          HWY_ALIGN float buf[kN];
          hn::Store(s, df, buf);
          std::memcpy(sc, buf, size_t(len - p0) * sizeof(float));
        }
      }
    }
  }
  float rows_max[kMaxGroup];
  std::fill(rows_max, rows_max + n_q, -INFINITY);
  for (; p0 < len; ++p0)
    for (int64_t h = 0; h < n_q; ++h) {
      const float s = DotRow(df, q + h * q_stride, q_tail[h], keys + p0 * stride, head_dim) * scale;
      scores[h * len + p0] = s;
      rows_max[h] = std::max(rows_max[h], s);
      finite[h] &= std::fabs(s) < INFINITY;
    }

  for (int64_t h = 0; h < n_q; ++h) {
    if (!finite[h]) {
      SoftmaxRef(scores + h * len, len);
    } else {
      SoftmaxFinite(df, scores + h * len, len, std::max(hn::GetLane(hn::MaxOfLanes(df, vmax[h])), rows_max[h]));
    }
  }

  // out_h = scores_h @ values, kStateVecs vectors of out per sweep over the
  // positions, every head's sums kept across the blocks of a sweep.
  VF acc0[kMaxGroup * kStateVecs], acc1[kMaxGroup * kStateVecs];
  for (int64_t v0 = 0; v0 < body; v0 += n * int64_t(kStateVecs)) {
    const size_t vecs = size_t(std::min(int64_t(kStateVecs), (body - v0) / n));
    for (int64_t x = 0; x < n_q * int64_t(kStateVecs); ++x) acc0[x] = acc1[x] = hn::Zero(df);
    for (int64_t b = 0; b < len; b += kBlock) {
      const int64_t count = std::min(kBlock, len - b);
      for (int64_t h0 = 0; h0 < n_q; h0 += int64_t(kTileHeads)) {
        const size_t nh = size_t(std::min(int64_t(kTileHeads), n_q - h0));
        for (size_t c0 = 0; c0 < vecs; c0 += kTileVecs) {
          const int64_t state = h0 * int64_t(kStateVecs) + int64_t(c0);
          // The first head tile prefetches the next block's rows.
          WeightedSumTileUpTo<kTileHeads, kTileVecs>(nh, std::min(kTileVecs, vecs - c0), df, scores + h0 * len + b, len,
                                                     values + b * stride + v0 + int64_t(c0) * n, count, stride,
                                                     h0 == 0 ? len - b : 0, acc0 + state, acc1 + state);
        }
      }
    }
    for (int64_t h = 0; h < n_q; ++h)
      for (size_t c = 0; c < vecs; ++c)
        hn::StoreU(hn::Add(acc0[h * int64_t(kStateVecs) + int64_t(c)], acc1[h * int64_t(kStateVecs) + int64_t(c)]), df,
                   out + h * out_stride + v0 + int64_t(c) * n);
  }
  // The last head_dim % N floats: each position's leftover values copied
  // once, zero-padded, for all heads (WeightedSumTail's arithmetic).
  if (rest) {
    VF tail[kMaxGroup];
    for (int64_t h = 0; h < n_q; ++h) tail[h] = hn::Zero(df);
    HWY_ALIGN float vt[kN] = {};
    for (int64_t p = 0; p < len; ++p) {
      std::memcpy(vt, values + p * stride + body, rest * sizeof(float));
      const VF x = hn::Load(df, vt);
      for (int64_t h = 0; h < n_q; ++h) tail[h] = hn::MulAdd(hn::Set(df, scores[h * len + p]), x, tail[h]);
    }
    for (int64_t h = 0; h < n_q; ++h) {
      hn::Store(tail[h], df, vt);
      std::memcpy(out + h * out_stride + body, vt, rest * sizeof(float));
    }
  }
}

void AttendGroupSimd(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                     int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride) {
  if (n_q == 1) {
    AttendHeadSimd(q, keys, values, len, stride, head_dim, scale, scores, out);
    return;
  }
  for (int64_t h = 0; h < n_q; h += kMaxGroup)
    AttendGroupPass(q + h * q_stride, std::min(kMaxGroup, n_q - h), q_stride, keys, values, len, stride, head_dim,
                    scale, scores + h * len, out + h * out_stride, out_stride);
}

// h * (x / (1 + exp(-x))). hn::Exp is valid only up to +104 (its 2^q scaling
// wraps for -x past ~176 and gives garbage), so -x is capped at 100, where
// exp already overflows to inf as std::exp does: x -> -0 for very negative
// x, and NaN for x = -inf (-inf / inf) as in the reference. exp(-inf) is 0
// (x = +inf gives inf); hn::Exp(NaN) is 0 but NaN reaches the quotient
// through x itself.
HWY_INLINE VF SwiGlu(DF df, VF h, VF x) {
  const VF e = hn::Exp(df, hn::Min(hn::Neg(x), hn::Set(df, 100.0f)));
  return hn::Mul(h, hn::Div(x, hn::Add(hn::Set(df, 1.0f), e)));
}

void SwiGluInPlaceSimd(float* h, const float* gate, int64_t n) {
  const DF df;
  const int64_t lanes = int64_t(kN);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(SwiGlu(df, hn::LoadU(df, h + i), hn::LoadU(df, gate + i)), df, h + i);
  if (i < n) {
    const size_t rest = size_t(n - i);
    HWY_ALIGN float ht[kN] = {}, gt[kN] = {};
    std::memcpy(ht, h + i, rest * sizeof(float));
    std::memcpy(gt, gate + i, rest * sizeof(float));
    hn::Store(SwiGlu(df, hn::Load(df, ht), hn::Load(df, gt)), df, ht);
    std::memcpy(h + i, ht, rest * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(AttendHeadSimd);
HWY_EXPORT(AttendGroupSimd);
HWY_EXPORT(SwiGluInPlaceSimd);

void SoftmaxRef(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

void AttendHeadRef(const float* q, const float* keys, const float* values, int64_t len, int64_t stride,
                   int64_t head_dim, float scale, float* scores, float* out) {
  for (int64_t p = 0; p < len; ++p) scores[p] = DotF32Ref(q, keys + p * stride, head_dim) * scale;
  SoftmaxRef(scores, len);
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t p = 0; p < len; ++p) {
    const float* vp = values + p * stride;
    const float a = scores[p];
    for (int64_t i = 0; i < head_dim; ++i) out[i] += a * vp[i];
  }
}

void AttendHead(const float* q, const float* keys, const float* values, int64_t len, int64_t stride, int64_t head_dim,
                float scale, float* scores, float* out) {
  HWY_DYNAMIC_DISPATCH(AttendHeadSimd)(q, keys, values, len, stride, head_dim, scale, scores, out);
}

void AttendGroupRef(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                    int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride) {
  for (int64_t h = 0; h < n_q; ++h)
    AttendHeadRef(q + h * q_stride, keys, values, len, stride, head_dim, scale, scores + h * len, out + h * out_stride);
}

void AttendGroup(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                 int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride) {
  HWY_DYNAMIC_DISPATCH(AttendGroupSimd)(q, n_q, q_stride, keys, values, len, stride, head_dim, scale, scores, out,
                                        out_stride);
}

void SwiGluInPlaceRef(float* h, const float* gate, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    h[i] *= x / (1.0f + std::exp(-x));
  }
}

void SwiGluInPlace(float* h, const float* gate, int64_t n) { HWY_DYNAMIC_DISPATCH(SwiGluInPlaceSimd)(h, gate, n); }

}  // namespace lowbit
#endif  // HWY_ONCE
