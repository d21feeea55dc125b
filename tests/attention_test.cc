// kernels/attention.h: the references are the runtime's loops bit for bit;
// AttendHead and SwiGluInPlace match them on every SIMD target within bounds
// derived from the float arithmetic (below), and the bounds are tight enough
// to reject a wrong answer (attention that skips the last position). Heads
// sit inside rows of NaN (the other heads) in buffers that end at the head's
// last float, so reading a neighbour or past the end shows. Replayable:
// LOWBIT_SEED.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

#include "hwy/targets.h"
#include "kernels/dot_ref.h"
#include "kernels/matmul.h"
#include "runtime/ops.h"
#include "test_random.h"
#include "test_targets.h"

namespace lowbit {
namespace {

uint64_t Seed() { return testing::ReplayableSeed("attention_test"); }

constexpr double kU = FLT_EPSILON / 2;  // unit roundoff of float, 2^-24

using testing::ForEachTarget;

bool SameBits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (std::isnan(a) && std::isnan(b));
}

// A (len, head) slice of a KV cache: position p's head vector at
// data[offset + p * stride], the other floats of each row NaN, the buffer
// ending right after the last position's head.
struct HeadSlice {
  std::vector<float> data;
  int64_t offset = 0, stride = 0, len = 0, head_dim = 0;
  float* head() { return data.data() + offset; }
  const float* head() const { return data.data() + offset; }
  float& at(int64_t p, int64_t i) { return data[size_t(offset + p * stride + i)]; }
};

HeadSlice RandomSlice(std::mt19937_64& rng, int64_t len, int64_t head_dim, int64_t stride, int64_t offset) {
  HeadSlice s{std::vector<float>(size_t(offset + (len - 1) * stride + head_dim), NAN), offset, stride, len, head_dim};
  for (int64_t p = 0; p < len; ++p)
    for (int64_t i = 0; i < head_dim; ++i) s.at(p, i) = float(testing::Gaussian(rng));
  return s;
}

std::vector<float> Gaussians(std::mt19937_64& rng, int64_t n, double sigma = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(sigma * testing::Gaussian(rng));
  return v;
}

// One attention case: inputs, the reference's probabilities and output, and
// the bounds on |simd - ref| for each. First-order error analysis, u = 2^-24:
//  - dot: the reference's 8 partials (hd/8 + 8 adds deep) and the kernel's
//    N lanes + merge (hd/N + log2 N deep; N = 1 on HWY_SCALAR) differ by at
//    most d_k = (hd/8 + hd + 16) u |scale| sum_i |q_i k_ki| + 2 u |s_k| (the
//    scale product rounded in each);
//  - softmax: perturbing s by d moves log p_j by <= 2 max_k d_k; exp(s - m)
//    is off by (1 ulp = 2u) + u |s - m| (the rounded difference) in each,
//    the sum of exps by (len - 1) u (sequential) + (len/N + log2 N + 1) u
//    (lanes) plus its terms' errors E = sum_k p_k (8 + 2 |s_k - m|) u, the
//    division by u in each:
//      eps_j = 2 max d + (8 + 2 |s_j - m|) u + (2 len + 4) u + E + 2u;
//  - out: sum_p p_j v_ji sequentially (len u) and in 2 chains per lane
//    (len/2 + 1) u: |d out_i| <= sum_j p_j |v_ji| (eps_j + (2 len + 4) u).
// Both bounds are doubled (margin for second-order terms) plus FLT_MIN
// (times len max|v| for out) for exps that underflow differently (hn::Exp is
// 0 below -104, std::exp goes subnormal).
struct AttendCase {
  std::vector<float> q;
  HeadSlice keys, values;
  float scale = 1.0f;
  std::vector<float> p_ref, out_ref;
  std::vector<double> p_bound, out_bound;
  std::vector<double> out_mass;  // sum_j p_j |v_ji|, for the tightness check
};

void Finish(AttendCase& c) {
  const int64_t len = c.keys.len, hd = c.keys.head_dim;
  c.p_ref.assign(size_t(len), NAN);
  c.out_ref.assign(size_t(hd), NAN);
  AttendHeadRef(c.q.data(), c.keys.head(), c.values.head(), len, c.keys.stride, hd, c.scale, c.p_ref.data(),
                c.out_ref.data());
  std::vector<double> s(static_cast<size_t>(len));
  double max_d = 0, m = -INFINITY;
  for (int64_t k = 0; k < len; ++k) {
    const float* kr = c.keys.head() + k * c.keys.stride;
    s[size_t(k)] = double(DotF32Ref(c.q.data(), kr, hd) * c.scale);
    if (!std::isfinite(s[size_t(k)])) continue;  // p_k is 0 or every output NaN
    double abs_sum = 0;
    for (int64_t i = 0; i < hd; ++i) abs_sum += std::fabs(double(c.q[size_t(i)]) * double(kr[i]));
    const double d = (double(hd) / 8 + double(hd) + 16) * kU * std::fabs(double(c.scale)) * abs_sum +
                     2 * kU * std::fabs(s[size_t(k)]);
    max_d = std::max(max_d, d);
    m = std::max(m, s[size_t(k)]);
  }
  double e_sum = 0;
  for (int64_t k = 0; k < len; ++k)
    if (std::isfinite(s[size_t(k)])) e_sum += double(c.p_ref[size_t(k)]) * (8 + 2 * std::fabs(s[size_t(k)] - m)) * kU;
  std::vector<double> eps(size_t(len), 0.0);
  double max_v = 0;
  c.p_bound.assign(size_t(len), 0.0);
  for (int64_t j = 0; j < len; ++j) {
    const double dev = std::isfinite(s[size_t(j)]) ? std::fabs(s[size_t(j)] - m) : 0.0;
    eps[size_t(j)] = 2 * max_d + (8 + 2 * dev) * kU + (2 * double(len) + 4) * kU + e_sum + 2 * kU;
    c.p_bound[size_t(j)] = 2 * eps[size_t(j)] * std::fabs(double(c.p_ref[size_t(j)])) + FLT_MIN;
    for (int64_t i = 0; i < hd; ++i)
      if (std::isfinite(c.values.at(j, i))) max_v = std::max(max_v, double(std::fabs(c.values.at(j, i))));
  }
  c.out_bound.assign(size_t(hd), 0.0);
  c.out_mass.assign(size_t(hd), 0.0);
  for (int64_t i = 0; i < hd; ++i) {
    double b = 0, mass = 0;
    for (int64_t j = 0; j < len; ++j) {
      const double pv = std::fabs(double(c.p_ref[size_t(j)]) * double(c.values.at(j, i)));
      b += pv * (eps[size_t(j)] + (2 * double(len) + 4) * kU);
      mass += pv;
    }
    c.out_bound[size_t(i)] = 2 * b + FLT_MIN * double(len) * (1 + max_v);
    c.out_mass[size_t(i)] = mass;
  }
}

AttendCase RandomCase(std::mt19937_64& rng, int64_t len, int64_t head_dim, double scale_factor) {
  // Stride: a few heads per row or an odd gap; the head anywhere in its row.
  const int64_t extra = (rng() % 4 == 0) ? int64_t(rng() % 3) * head_dim : int64_t(rng() % 17);
  const int64_t stride = head_dim + extra, offset = extra ? int64_t(rng() % uint64_t(extra + 1)) : 0;
  AttendCase c;
  c.q = Gaussians(rng, head_dim);
  c.keys = RandomSlice(rng, len, head_dim, stride, offset);
  c.values = RandomSlice(rng, len, head_dim, stride, offset);
  c.scale = float(scale_factor / std::sqrt(double(head_dim)));
  Finish(c);
  return c;
}

// |simd - ref| within the bounds; NaN where the reference is NaN, the same
// infinity where it is infinite.
void ExpectNear(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& bound,
                const char* what) {
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ref[i])) {
      ASSERT_TRUE(SameBits(got[i], ref[i])) << what << "[" << i << "] " << got[i] << " vs " << ref[i];
      continue;
    }
    ASSERT_LE(std::fabs(double(got[i]) - double(ref[i])), bound[i])
        << what << "[" << i << "] " << got[i] << " vs " << ref[i];
  }
}

// Worst |simd - ref| / bound seen, printed by the sweeps.
struct WorstRatio {
  double ratio = 0;
  void Add(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& bound) {
    for (size_t i = 0; i < ref.size(); ++i)
      if (std::isfinite(ref[i])) ratio = std::max(ratio, std::fabs(double(got[i]) - double(ref[i])) / bound[i]);
  }
};

void ExpectAttendMatches(const AttendCase& c, WorstRatio* worst = nullptr) {
  const int64_t len = c.keys.len, hd = c.keys.head_dim;
  // Guards one past the ends: the kernel writes exactly len scores and hd outputs.
  std::vector<float> p(size_t(len) + 1, -7.0f), out(size_t(hd) + 1, -7.0f);
  AttendHead(c.q.data(), c.keys.head(), c.values.head(), len, c.keys.stride, hd, c.scale, p.data(), out.data());
  ASSERT_EQ(p.back(), -7.0f);
  ASSERT_EQ(out.back(), -7.0f);
  p.pop_back();
  out.pop_back();
  ExpectNear(p, c.p_ref, c.p_bound, "p");
  ExpectNear(out, c.out_ref, c.out_bound, "out");
  if (worst) {
    worst->Add(p, c.p_ref, c.p_bound);
    worst->Add(out, c.out_ref, c.out_bound);
  }
}

TEST(Attention, TargetsIncludeTheBestAndTheScalarFallback) {
  const auto targets = KernelTargets();
  ASSERT_FALSE(targets.empty());
  for (const auto& t : targets) std::printf("target %s\n", t.name.c_str());
  EXPECT_TRUE(targets.back().bits == HWY_EMU128 || targets.back().bits == HWY_SCALAR) << targets.back().name;
}

// AttendHeadRef is the runtime's scalar loop for one (token, head): scores
// by DotF32Ref, softmax (max, exp with a running float sum, divide), then
// the weighted sum of value rows; SwiGluInPlaceRef is h *= Silu(gate).
TEST(Attention, ReferencesAreTheRuntimeLoopsBitForBit) {
  std::mt19937_64 rng(Seed() ^ 1);
  for (int64_t hd : {1, 7, 64}) {
    for (int64_t len : {1, 2, 9, 100}) {
      const AttendCase c = RandomCase(rng, len, hd, 3.0);
      std::vector<float> scores(static_cast<size_t>(len)), o(static_cast<size_t>(hd), 0.0f);
      for (int64_t p = 0; p < len; ++p)
        scores[size_t(p)] = DotF32Ref(c.q.data(), c.keys.head() + p * c.keys.stride, hd) * c.scale;
      float max = scores[0], sum = 0.0f;
      for (int64_t p = 1; p < len; ++p) max = std::max(max, scores[size_t(p)]);
      for (int64_t p = 0; p < len; ++p) {
        scores[size_t(p)] = std::exp(scores[size_t(p)] - max);
        sum += scores[size_t(p)];
      }
      for (int64_t p = 0; p < len; ++p) scores[size_t(p)] /= sum;
      for (int64_t p = 0; p < len; ++p) {
        const float* vp = c.values.head() + p * c.values.stride;
        const float a = scores[size_t(p)];
        for (int64_t i = 0; i < hd; ++i) o[size_t(i)] += a * vp[i];
      }
      for (int64_t p = 0; p < len; ++p) ASSERT_TRUE(SameBits(scores[size_t(p)], c.p_ref[size_t(p)]));
      for (int64_t i = 0; i < hd; ++i) ASSERT_TRUE(SameBits(o[size_t(i)], c.out_ref[size_t(i)]));
    }
  }
  std::vector<float> gate = Gaussians(rng, 300, 10.0), h = Gaussians(rng, 300);
  gate[0] = -200, gate[1] = 200, gate[2] = -INFINITY, gate[3] = INFINITY, gate[4] = NAN;
  std::vector<float> h_ref = h;
  SwiGluInPlaceRef(h_ref.data(), gate.data(), int64_t(h.size()));
  for (size_t i = 0; i < h.size(); ++i) ASSERT_TRUE(SameBits(h_ref[i], h[i] * Silu(gate[i]))) << i;
}

// len 1..300 around every vector width and score block, head_dim around the
// widths (1, 7 below all; 48 = 3 AVX-512 vectors), scales from the usual
// 1/sqrt(hd) to a near one-hot softmax (score spread ~40).
TEST(Attention, MatchesReferenceOnEveryTarget) {
  std::mt19937_64 rng(Seed() ^ 2);
  WorstRatio worst;
  for (int64_t hd : {1, 7, 16, 48, 64, 128})
    for (double scale : {1.0, 8.0, 40.0})
      for (int64_t len = 1; len <= 300; ++len) {
        SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " scale " << scale << "/sqrt(hd) len " << len);
        const AttendCase c = RandomCase(rng, len, hd, scale);
        ForEachTarget([&] { ExpectAttendMatches(c, &worst); });
        if (HasFatalFailure()) return;
      }
  std::printf("worst |simd - ref| / bound: %.3g\n", worst.ratio);
}

TEST(Attention, LongContextMatchesReference) {
  std::mt19937_64 rng(Seed() ^ 3);
  WorstRatio worst;
  for (int64_t hd : {64, 128})
    for (double scale : {1.0, 40.0}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " scale " << scale);
      const AttendCase c = RandomCase(rng, 4001, hd, scale);
      ForEachTarget([&] { ExpectAttendMatches(c, &worst); });
    }
  std::printf("worst |simd - ref| / bound: %.3g\n", worst.ratio);
}

// The bound rejects a wrong answer: attention that drops the last position,
// made to matter (its key is q scaled to the top score + 1, its values 3
// where the rest are in [-1, 1], so it moves out by >= 2 p_last >= ~2/len).
// The bound is also small: under 1e-3 of sum_j p_j |v_j| for len <= 300.
TEST(Attention, BoundRejectsSkippingTheLastPosition) {
  std::mt19937_64 rng(Seed() ^ 4);
  for (int64_t hd : {1, 7, 16, 64, 128})
    for (int64_t len = 2; len <= 300; len += 1 + len / 8) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " len " << len);
      AttendCase c = RandomCase(rng, len, hd, 1.0);
      for (int64_t p = 0; p < len; ++p)
        for (int64_t i = 0; i < hd; ++i) c.values.at(p, i) = float(2 * testing::Uniform(rng) - 1);
      double top = -INFINITY, qq = 0;
      for (int64_t p = 0; p + 1 < len; ++p)
        top = std::max(top, double(DotF32Ref(c.q.data(), c.keys.head() + p * c.keys.stride, hd)));
      for (float x : c.q) qq += double(x) * x;
      const double t = (top + 1 / double(c.scale)) / qq;
      for (int64_t i = 0; i < hd; ++i) {
        c.keys.at(len - 1, i) = float(t * c.q[size_t(i)]);
        c.values.at(len - 1, i) = 3.0f;
      }
      Finish(c);
      std::vector<float> p(static_cast<size_t>(len)), out(static_cast<size_t>(hd));
      AttendHeadRef(c.q.data(), c.keys.head(), c.values.head(), len - 1, c.keys.stride, hd, c.scale, p.data(),
                    out.data());
      bool caught = false;
      for (int64_t i = 0; i < hd; ++i) {
        caught |= std::fabs(double(out[size_t(i)]) - double(c.out_ref[size_t(i)])) > c.out_bound[size_t(i)];
        ASSERT_LT(c.out_bound[size_t(i)], 1e-3 * c.out_mass[size_t(i)]);
      }
      EXPECT_TRUE(caught);
      bool p_caught = false;
      for (int64_t j = 0; j + 1 < len; ++j)
        p_caught |= std::fabs(double(p[size_t(j)]) - double(c.p_ref[size_t(j)])) > c.p_bound[size_t(j)];
      EXPECT_TRUE(p_caught);
    }
}

// NaN or inf in q, a key or a value: the kernel gives what the reference
// gives (NaN scores poison every output; +inf scores too, as inf - inf; a
// -inf score is a position with weight 0; an infinite value makes its
// output infinite).
TEST(Attention, NonFiniteInputsFollowTheReference) {
  std::mt19937_64 rng(Seed() ^ 5);
  for (int64_t hd : {7, 64})
    for (int64_t len : {1, 5, 33}) {
      for (int kind = 0; kind < 6; ++kind) {
        SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " len " << len << " kind " << kind);
        AttendCase c = RandomCase(rng, len, hd, 1.0);
        const int64_t p = int64_t(rng() % uint64_t(len)), i = int64_t(rng() % uint64_t(hd));
        const float sign_q = c.q[size_t(i)] > 0 ? 1.0f : -1.0f;
        // 0: NaN in q; 1: NaN in a key; 2: score +inf; 3: score -inf;
        // 4: an infinite value; 5: a dot that overflows to +inf.
        if (kind == 0) c.q[size_t(i)] = NAN;
        if (kind == 1) c.keys.at(p, i) = NAN;
        if (kind == 2) c.keys.at(p, i) = sign_q * INFINITY;
        if (kind == 3) c.keys.at(p, i) = -sign_q * INFINITY;
        if (kind == 4) c.values.at(p, i) = INFINITY;
        if (kind == 5) c.keys.at(p, i) = sign_q * 3e38f;
        Finish(c);
        if (kind == 3 && len > 1) {
          ASSERT_EQ(c.p_ref[size_t(p)], 0.0f);
        }
        ForEachTarget([&] { ExpectAttendMatches(c); });
      }
    }
}

// n_q query heads sharing one KV head: head j's query at q_offset +
// j * q_stride in rows of NaN (the heads of other groups), so a read of a
// neighbour shows.
struct GroupCase {
  std::vector<float> q;
  int64_t n_q = 0, q_stride = 0, q_offset = 0;
  HeadSlice keys, values;
  float scale = 1.0f;
  const float* head_q(int64_t j) const { return q.data() + q_offset + j * q_stride; }
  float* head_q(int64_t j) { return q.data() + q_offset + j * q_stride; }
};

GroupCase RandomGroup(std::mt19937_64& rng, int64_t n_q, int64_t len, int64_t head_dim, double scale_factor) {
  const AttendCase kv = RandomCase(rng, len, head_dim, scale_factor);  // keys, values, scale (and bounds unused)
  GroupCase g;
  g.n_q = n_q;
  g.q_stride = head_dim + int64_t(rng() % 3) * head_dim + int64_t(rng() % 5);
  g.q_offset = int64_t(rng() % uint64_t(g.q_stride - head_dim + 1));
  g.q.assign(size_t(g.q_offset + (n_q - 1) * g.q_stride + head_dim), NAN);
  for (int64_t j = 0; j < n_q; ++j)
    for (int64_t i = 0; i < head_dim; ++i) g.head_q(j)[i] = float(testing::Gaussian(rng));
  g.keys = kv.keys;
  g.values = kv.values;
  g.scale = kv.scale;
  return g;
}

// One group's attention: probabilities (n_q, len) and outputs at out_stride
// (n_q, out_stride) whose gaps and one float past the end stay -7.
struct GroupResult {
  std::vector<float> p, out;
  int64_t out_stride = 0;
};

template <typename Fn>
GroupResult RunGroup(const GroupCase& g, int64_t out_gap, const Fn& attend_group) {
  const int64_t len = g.keys.len, hd = g.keys.head_dim;
  GroupResult r;
  r.out_stride = hd + out_gap;
  r.p.assign(size_t(g.n_q * len) + 1, -7.0f);
  r.out.assign(size_t((g.n_q - 1) * r.out_stride + hd) + 1, -7.0f);
  attend_group(g.head_q(0), g.n_q, g.q_stride, g.keys.head(), g.values.head(), len, g.keys.stride, hd, g.scale,
               r.p.data(), r.out.data(), r.out_stride);
  EXPECT_EQ(r.p.back(), -7.0f);
  EXPECT_EQ(r.out.back(), -7.0f);
  for (int64_t j = 0; j + 1 < g.n_q; ++j)
    for (int64_t i = hd; i < r.out_stride; ++i) EXPECT_EQ(r.out[size_t(j * r.out_stride + i)], -7.0f);
  return r;
}

// Targets whose hn::MulAdd is one fused instruction. Elsewhere Highway
// writes it as a product and a sum, which GCC (-ffp-contract=fast, its
// default, and -march=native offers FMA) fuses or not depending on the code
// around it, so the same operations per head need not give the same bits.
bool MulAddIsFused(int64_t target) { return (target & (HWY_AVX2 | HWY_AVX3 | HWY_AVX3_DL)) != 0; }

// AttendGroupRef is AttendHeadRef per head bit for bit. AttendGroup is, on
// every target, within AttendHead's derived bounds of the reference head by
// head, and on the targets with a fused MulAdd (every x86 CPU since Haswell
// dispatches to one) AttendHead on that target per head bit for bit, so its
// non-finite fallback is AttendHead's too.
void ExpectGroupIsPerHead(const GroupCase& g, WorstRatio* worst = nullptr) {
  const int64_t len = g.keys.len, hd = g.keys.head_dim, gap = int64_t(g.n_q % 3);
  std::vector<AttendCase> heads(static_cast<size_t>(g.n_q));  // each head's reference and bounds
  for (int64_t j = 0; j < g.n_q; ++j) {
    AttendCase& c = heads[size_t(j)];
    c.q.assign(g.head_q(j), g.head_q(j) + hd);
    c.keys = g.keys;
    c.values = g.values;
    c.scale = g.scale;
    Finish(c);
  }
  const auto per_head = [&](auto attend_head) {
    GroupResult r;
    r.out_stride = hd + gap;
    r.p.assign(size_t(g.n_q * len), NAN);
    r.out.assign(size_t((g.n_q - 1) * r.out_stride + hd), -7.0f);
    for (int64_t j = 0; j < g.n_q; ++j)
      attend_head(g.head_q(j), g.keys.head(), g.values.head(), len, g.keys.stride, hd, g.scale, &r.p[size_t(j * len)],
                  &r.out[size_t(j * r.out_stride)]);
    return r;
  };
  const auto head_p = [&](const GroupResult& r, int64_t j) {
    return std::vector<float>(r.p.begin() + j * len, r.p.begin() + (j + 1) * len);
  };
  const auto head_out = [&](const GroupResult& r, int64_t j) {
    return std::vector<float>(r.out.begin() + j * r.out_stride, r.out.begin() + j * r.out_stride + hd);
  };
  const auto expect_same = [&](const GroupResult& got, const GroupResult& want) {
    for (int64_t j = 0; j < g.n_q; ++j) {
      const std::vector<float> p = head_p(got, j), p_want = head_p(want, j);
      const std::vector<float> out = head_out(got, j), out_want = head_out(want, j);
      for (size_t k = 0; k < p.size(); ++k)
        ASSERT_TRUE(SameBits(p[k], p_want[k])) << "head " << j << " p[" << k << "] " << p[k] << " vs " << p_want[k];
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_TRUE(SameBits(out[i], out_want[i]))
            << "head " << j << " out[" << i << "] " << out[i] << " vs " << out_want[i];
    }
  };
  expect_same(RunGroup(g, gap, AttendGroupRef), per_head(AttendHeadRef));
  ForEachTarget([&](const KernelTarget& t) {
    const GroupResult got = RunGroup(g, gap, AttendGroup);
    for (int64_t j = 0; j < g.n_q; ++j) {
      SCOPED_TRACE(::testing::Message() << "head " << j);
      const AttendCase& c = heads[size_t(j)];
      ExpectNear(head_p(got, j), c.p_ref, c.p_bound, "p");
      ExpectNear(head_out(got, j), c.out_ref, c.out_bound, "out");
      if (worst) {
        worst->Add(head_p(got, j), c.p_ref, c.p_bound);
        worst->Add(head_out(got, j), c.out_ref, c.out_bound);
      }
    }
    if (MulAddIsFused(t.bits)) expect_same(got, per_head(AttendHead));
  });
}

// Group sizes 1 to 20 (TinyLlama's 8, past the kernel's 16-head pass) with
// head_dims and lengths around every vector width, register tile and
// 64-position block, scales from 1/sqrt(hd) to near one-hot.
TEST(AttendGroup, IsAttendHeadPerHeadOnEveryTarget) {
  std::mt19937_64 rng(Seed() ^ 8);
  WorstRatio worst;
  for (int64_t n_q : {1, 2, 3, 4, 5, 8, 12, 16, 17, 20})
    for (int64_t hd : {1, 7, 16, 48, 64, 72, 128})
      for (int64_t len : {1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 63, 64, 65, 66, 127, 128, 129, 200, 300}) {
        const double scale = double(1 + rng() % 40);
        SCOPED_TRACE(::testing::Message()
                     << "n_q " << n_q << " head_dim " << hd << " len " << len << " scale " << scale << "/sqrt(hd)");
        ExpectGroupIsPerHead(RandomGroup(rng, n_q, len, hd, scale), &worst);
        if (HasFatalFailure()) return;
      }
  std::printf("worst |simd - ref| / bound: %.3g\n", worst.ratio);
}

TEST(AttendGroup, LongContextIsAttendHeadPerHead) {
  std::mt19937_64 rng(Seed() ^ 9);
  WorstRatio worst;
  for (int64_t hd : {64, 128}) {
    SCOPED_TRACE(::testing::Message() << "head_dim " << hd);
    ExpectGroupIsPerHead(RandomGroup(rng, 8, 4001, hd, 40.0), &worst);
  }
  std::printf("worst |simd - ref| / bound: %.3g\n", worst.ratio);
}

// NaN or inf in one head's query, in a key or in a value: each head falls
// back (or not) on its own as AttendHead does, the other heads unaffected by
// one head's NaN query.
TEST(AttendGroup, NonFiniteInputsAreAttendHeadPerHead) {
  std::mt19937_64 rng(Seed() ^ 11);
  for (int64_t hd : {7, 64})
    for (int64_t len : {1, 5, 33, 130})
      for (int kind = 0; kind < 6; ++kind) {
        SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " len " << len << " kind " << kind);
        GroupCase g = RandomGroup(rng, 5, len, hd, 1.0);
        const int64_t j = int64_t(rng() % 5), p = int64_t(rng() % uint64_t(len)), i = int64_t(rng() % uint64_t(hd));
        const float sign_q = g.head_q(j)[i] > 0 ? 1.0f : -1.0f;
        // As in NonFiniteInputsFollowTheReference, for head j's query.
        if (kind == 0) g.head_q(j)[i] = NAN;
        if (kind == 1) g.keys.at(p, i) = NAN;
        if (kind == 2) g.keys.at(p, i) = sign_q * INFINITY;
        if (kind == 3) g.keys.at(p, i) = -sign_q * INFINITY;
        if (kind == 4) g.values.at(p, i) = INFINITY;
        if (kind == 5) g.keys.at(p, i) = sign_q * 3e38f;
        ExpectGroupIsPerHead(g);
        if (kind == 0) {
          const GroupResult r = RunGroup(g, 0, AttendGroup);
          for (int64_t h = 0; h < 5; ++h) EXPECT_EQ(std::isnan(r.out[size_t(h * hd)]), h == j) << "head " << h;
        }
      }
}

// SwiGLU bound: each version's exp is within 1 ulp (2u), then 1 + e, the
// division and the product round once each: |simd - ref| <= 10 u |ref|, plus
// |h x| 2^-127 where exp(-x) >= 2^127 overflows in one version and not the
// other (then both results are below that), plus two subnormal steps.
double SwiGluBound(float h, float x, float ref) {
  return 10 * kU * std::fabs(double(ref)) + std::fabs(double(h) * double(x)) * 0x1p-127 + 2 * double(FLT_TRUE_MIN);
}

// Returns the worst |simd - ref| / bound over the finite nonzero results.
double ExpectSwiGluMatches(const std::vector<float>& h, const std::vector<float>& gate) {
  const int64_t n = int64_t(h.size());
  std::vector<float> ref = h;
  SwiGluInPlaceRef(ref.data(), gate.data(), n);
  std::vector<float> got = h;
  got.push_back(-7.0f);  // guard
  SwiGluInPlace(got.data(), gate.data(), n);
  EXPECT_EQ(got.back(), -7.0f);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = size_t(i);
    if (!std::isfinite(ref[k]) || ref[k] == 0.0f) {
      EXPECT_TRUE(SameBits(got[k], ref[k]) || (ref[k] == 0.0f && std::fabs(got[k]) <= SwiGluBound(h[k], gate[k], 0)))
          << "h " << h[k] << " gate " << gate[k] << ": " << got[k] << " vs " << ref[k];
      continue;
    }
    const double err = std::fabs(double(got[k]) - double(ref[k])), bound = SwiGluBound(h[k], gate[k], ref[k]);
    EXPECT_LE(err, bound) << "h " << h[k] << " gate " << gate[k] << ": " << got[k] << " vs " << ref[k];
    worst = std::max(worst, err / bound);
  }
  return worst;
}

// n 0..70 around every vector width, gates with spreads up to 60 (past
// exp's overflow at |x| = 88.7 and hn::Exp's range end at 104), and the
// TinyLlama hidden size.
TEST(SwiGlu, MatchesReferenceOnEveryTarget) {
  std::mt19937_64 rng(Seed() ^ 6);
  double worst = 0;
  ForEachTarget([&] {
    for (double sigma : {1.0, 10.0, 60.0})
      for (int64_t n = 0; n <= 70; ++n) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " sigma " << sigma);
        worst = std::max(worst, ExpectSwiGluMatches(Gaussians(rng, n), Gaussians(rng, n, sigma)));
      }
    worst = std::max(worst, ExpectSwiGluMatches(Gaussians(rng, 5632), Gaussians(rng, 5632, 3.0)));
  });
  std::printf("worst |simd - ref| / bound: %.3g\n", worst);
}

// The bound is tight enough to reject near misses: silu(x) times (1 + 16u)
// (a few roundings too many) fails it for most elements; and it rejects a
// leftover element left unscaled.
TEST(SwiGlu, BoundRejectsWrongAnswers) {
  std::mt19937_64 rng(Seed() ^ 7);
  const std::vector<float> h = Gaussians(rng, 1000), gate = Gaussians(rng, 1000, 3.0);
  std::vector<float> ref = h;
  SwiGluInPlaceRef(ref.data(), gate.data(), int64_t(h.size()));
  int rejected = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    const double off = double(ref[i]) * (1 + 16 * kU);
    rejected += std::fabs(off - double(ref[i])) > SwiGluBound(h[i], gate[i], ref[i]);
  }
  EXPECT_GT(rejected, 900);
  EXPECT_GT(std::fabs(double(h.back()) - double(ref.back())), SwiGluBound(h.back(), gate.back(), ref.back()));
}

// Large |x|, infinities, NaN, zeros, subnormals, the edges of exp's range
// (overflow at -x = 88.72, hn::Exp's cut to 0 at -x = -104, its valid range
// ending at +104), each at every lane position of the widest vector.
TEST(SwiGlu, SpecialValuesFollowTheReference) {
  const float specials[] = {0.0f,    -0.0f,   1e-30f,  -1e-30f, 1e-45f,   -1e-45f,  20.0f,     -20.0f,  87.0f,
                            -87.0f,  88.72f,  -88.72f, 88.73f,  -88.73f,  89.0f,    -89.0f,    100.0f,  -100.0f,
                            103.9f,  -103.9f, 104.1f,  -104.1f, 150.0f,   -150.0f,  177.0f,    -177.0f, 200.0f,
                            -200.0f, 1e30f,   -1e30f,  FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN};
  const float hs[] = {1.0f, -2.5f, 0.0f, 1e-30f, 3e38f, INFINITY};
  std::vector<float> gate, h;
  for (float g : specials)
    for (float hv : hs)
      for (int lane = 0; lane < 17; ++lane) {
        gate.push_back(g);
        h.push_back(hv);
      }
  ForEachTarget([&] {
    ExpectSwiGluMatches(h, gate);
    // The cases named in the contract: 0 (not NaN) for very negative x, x for
    // very positive x, NaN for NaN and -inf.
    const float g[] = {-100.0f, -200.0f, -1e30f, 100.0f, 200.0f, INFINITY, NAN, -INFINITY};
    float v[] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    SwiGluInPlace(v, g, 8);
    EXPECT_EQ(v[0], 0.0f);
    EXPECT_EQ(v[1], 0.0f);
    EXPECT_EQ(v[2], 0.0f);
    EXPECT_TRUE(std::signbit(v[0]) && std::signbit(v[1]) && std::signbit(v[2]));
    EXPECT_EQ(v[3], 100.0f);
    EXPECT_EQ(v[4], 200.0f);
    EXPECT_EQ(v[5], INFINITY);
    EXPECT_TRUE(std::isnan(v[6]));
    EXPECT_TRUE(std::isnan(v[7]));
  });
}

}  // namespace
}  // namespace lowbit
