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
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/dot_ref.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
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
    const VF vm = hn::Set(df, std::max(hn::GetLane(hn::MaxOfLanes(df, vmax)), rows_max));
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

void SwiGluInPlaceRef(float* h, const float* gate, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    h[i] *= x / (1.0f + std::exp(-x));
  }
}

void SwiGluInPlace(float* h, const float* gate, int64_t n) { HWY_DYNAMIC_DISPATCH(SwiGluInPlaceSimd)(h, gate, n); }

}  // namespace lowbit
#endif  // HWY_ONCE
