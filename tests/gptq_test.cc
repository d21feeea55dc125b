// GPTQ for one weight matrix (quant/gptq.h).
//
// - The fast sweep (tiled factorization, lazy batches, dgemm, row panels on
//   the pool) against the plain reference (own Cholesky, column by column):
//   the encoded bytes must be IDENTICAL. Both sweeps carry W in double; they
//   differ only in the order of floating-point sums (tiled vs textbook Cholesky,
//   one dgemm per batch vs one rank-1 update per column), a relative
//   difference ~ n * eps_double * cond(H) <~ 1e-11 here. The values reach the
//   format as floats, and a rounding decision flips only when a value lies
//   within that distance of a decision boundary: probability ~1e-11 per
//   element, so any byte difference is a bug, not noise. The error-updated
//   weights written back to w are compared within one float ulp plus that
//   difference.
// - Closed forms: with a diagonal H GPTQ is RTN; on ternary rows of n = 2..4
//   with a correlated H it is sequential OBS, computed here from H directly
//   (solving for the optimal update of the remaining columns after each
//   rounding), not from the Cholesky trick; its reported loss equals
//   1/2 tr((W - Q) H (W - Q)^T).
// - GPTQ's loss tr((W - Q) H (W - Q)^T) against RTN's on 50 random
//   correlated problems per format.
// - Dead columns, dampening raises, indefinite H, non-finite input, thread
//   count independence, formats without round_in_place (the fallback).
//
// Random data is replayable: every failure names its seed; set
// LOWBIT_TEST_SEED to rerun with another base seed.
#include "quant/gptq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/format.h"
#include "test_random.h"

namespace lowbit {
namespace {

using testing::BaseSeed;
using testing::Gaussian;
using testing::Uniform;

const FormatInfo& Format(const char* name) {
  const FormatInfo* f = FindFormatByName(name);
  if (f == nullptr) throw std::runtime_error(std::string("no format ") + name);
  return *f;
}

// A calibration problem: W (rows, n) Gaussian, and H = 2 X^T X / N from
// inputs X (N, n) whose columns are correlated (AR(1) along the column index
// with coefficient rho) and scaled by log-normal channel magnitudes (sigma),
// as LLM activations have outlier channels.
struct Problem {
  int64_t rows = 0, n = 0;
  std::vector<float> w;
  std::vector<double> h;
};

std::vector<double> HessianOf(const std::vector<double>& x, int64_t samples, int64_t n) {
  std::vector<double> h(n * n, 0.0);
  for (int64_t t = 0; t < samples; ++t) {
    const double* xt = x.data() + t * n;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) h[i * n + j] += xt[i] * xt[j];
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) h[j * n + i] = h[i * n + j] = 2 * h[i * n + j] / double(samples);
  return h;
}

Problem MakeProblem(int64_t rows, int64_t n, uint64_t seed, double rho = 0.9, double sigma = 0.7,
                    int64_t samples = -1) {
  std::mt19937_64 rng(seed);
  Problem p;
  p.rows = rows;
  p.n = n;
  p.w.resize(rows * n);
  for (float& v : p.w) v = float(Gaussian(rng));
  if (samples < 0) samples = 2 * n;
  std::vector<double> scale(n);
  for (double& s : scale) s = std::exp(sigma * Gaussian(rng));
  std::vector<double> x(samples * n);
  for (int64_t t = 0; t < samples; ++t) {
    double prev = Gaussian(rng);
    for (int64_t i = 0; i < n; ++i) {
      prev = rho * prev + std::sqrt(1 - rho * rho) * Gaussian(rng);
      x[t * n + i] = scale[i] * prev;
    }
  }
  p.h = HessianOf(x, samples, n);
  return p;
}

std::vector<float> Decode(const FormatInfo& f, const std::vector<uint8_t>& q, int64_t rows, int64_t n) {
  std::vector<float> y(rows * n);
  for (int64_t r = 0; r < rows; ++r) f.dequantize(q.data() + r * f.RowBytes(n), y.data() + r * n, n);
  return y;
}

// tr((W - Q) H (W - Q)^T): the output error the GPTQ objective measures
// (up to the factor N / 2).
double Loss(const std::vector<float>& w, const std::vector<float>& q, const std::vector<double>& h, int64_t rows,
            int64_t n) {
  double total = 0;
  std::vector<double> d(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) d[i] = double(w[r * n + i]) - double(q[r * n + i]);
    for (int64_t i = 0; i < n; ++i) {
      double hi = 0;
      for (int64_t j = 0; j < n; ++j) hi += h[i * n + j] * d[j];
      total += d[i] * hi;
    }
  }
  return total;
}

// W with dead columns (H[i][i] == 0) zeroed, as GPTQ sees it.
std::vector<float> ZeroDead(std::vector<float> w, const std::vector<double>& h, int64_t rows, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (h[i * n + i] == 0)
      for (int64_t r = 0; r < rows; ++r) w[r * n + i] = 0;
  return w;
}

struct Result {
  std::vector<uint8_t> bytes;
  std::vector<float> w;  // the error-updated weights GPTQ leaves in w
  GptqStats stats;
};

Result RunFast(const FormatInfo& f, const Problem& p, const GptqOptions& o, ThreadPool* pool) {
  Result r{std::vector<uint8_t>(p.rows * f.RowBytes(p.n)), p.w, {}};
  r.stats = GptqQuantize(f, r.w.data(), p.rows, p.n, p.h, o, r.bytes.data(), pool);
  return r;
}

Result RunReference(const FormatInfo& f, const Problem& p, const GptqOptions& o) {
  Result r{std::vector<uint8_t>(p.rows * f.RowBytes(p.n)), p.w, {}};
  r.stats = GptqQuantizeReference(f, r.w.data(), p.rows, p.n, p.h, o, r.bytes.data());
  return r;
}

std::vector<uint8_t> Rtn(const FormatInfo& f, const std::vector<float>& w, int64_t rows, int64_t n,
                         const float* importance = nullptr) {
  std::vector<uint8_t> q(rows * f.RowBytes(n));
  f.quantize(w.data(), rows, n, q.data(), importance);
  return q;
}

// The formats the comparisons run on: INT per group / per row / per tensor,
// the ggml block formats, a super-block k-quant, a float format, and a
// double-quantized bnb format (row header, 64-element blocks).
constexpr const char* kFormats[] = {"int4_asym_g32",  "int4_sym_g128", "int3_asym_g64", "int2_sym_g32",
                                    "int4_asym_channel", "int8_sym_channel", "int4_sym_tensor", "q4_0",
                                    "q8_0",           "q4_1",          "q4_k",          "q6_k",
                                    "f16",            "nf4",           "nf4_dq"};

// A copy of the format without round_in_place: GPTQ's fallback, whole units
// at once.
FormatInfo WithoutRoundInPlace(const FormatInfo& f) {
  FormatInfo g = f;
  g.round_in_place = nullptr;
  return g;
}

void ExpectSameRun(const FormatInfo& f, const Problem& p, const GptqOptions& o, const std::string& trace) {
  ThreadPool pool(2);
  const Result fast = RunFast(f, p, o, &pool);
  const Result ref = RunReference(f, p, o);
  int64_t first_diff = -1;
  for (size_t i = 0; i < fast.bytes.size() && first_diff < 0; ++i)
    if (fast.bytes[i] != ref.bytes[i]) first_diff = int64_t(i);
  EXPECT_EQ(first_diff, -1) << trace << ": encoded bytes differ first at byte " << first_diff << " (row "
                            << first_diff / int64_t(f.RowBytes(p.n)) << ")";
  EXPECT_NEAR(fast.stats.loss, ref.stats.loss, 1e-9 * ref.stats.loss) << trace;
  EXPECT_EQ(fast.stats.dead_columns, ref.stats.dead_columns) << trace;
  EXPECT_EQ(fast.stats.damp_retries, ref.stats.damp_retries) << trace;
  float wmax = 0;
  for (float v : ref.w) wmax = std::max(wmax, std::fabs(v));
  int bad = 0;
  for (size_t i = 0; i < fast.w.size(); ++i) {
    const double tol = std::ldexp(std::fabs(double(ref.w[i])), -23) + 1e-10 * wmax;
    if (!(std::fabs(double(fast.w[i]) - double(ref.w[i])) <= tol) && bad++ < 3)
      ADD_FAILURE() << trace << ": w[" << i << "] " << fast.w[i] << " vs reference " << ref.w[i];
  }
}

TEST(Gptq, FastMatchesReference) {
  struct Shape {
    int64_t rows, n;
    int batch;
    bool all_formats;  // false: only q4_k and int4_asym_g32
  };
  // n = 320 and 768 are not multiples of the batch (96 stays 96 for g32,
  // becomes 128 for g128 and 256 for the 256-blocks; 384 -> 512 for those);
  // 37 and 21 rows leave a partial panel. The reference's O(n^3) plain
  // Cholesky keeps n small.
  constexpr Shape kShapes[] = {{5, 256, 128, true}, {37, 320, 96, true}, {21, 768, 384, false}, {3, 512, 40, true}};
  int runs = 0;
  for (const Shape& shape : kShapes) {
    for (int mode = 0; mode < 3; ++mode) {  // plain, act-order, static groups
      const uint64_t seed = BaseSeed() + uint64_t(shape.n) * 7 + uint64_t(mode);
      const Problem p = MakeProblem(shape.rows, shape.n, seed);
      GptqOptions o;
      o.batch = shape.batch;
      o.act_order = mode == 1;
      o.static_groups = mode == 2;
      for (const char* name : kFormats) {
        const FormatInfo& f = Format(name);
        if (shape.n % f.block_size != 0) continue;
        if (!shape.all_formats && std::string(name) != "q4_k" && std::string(name) != "int4_asym_g32") continue;
        const std::string trace = std::string(name) + " " + std::to_string(shape.rows) + "x" +
                                  std::to_string(shape.n) + " batch " + std::to_string(shape.batch) + " mode " +
                                  std::to_string(mode) + " seed " + std::to_string(seed);
        ExpectSameRun(f, p, o, trace);
        if (f.round_in_place != nullptr && mode == 0)
          ExpectSameRun(WithoutRoundInPlace(f), p, o, trace + " (no round_in_place)");
        ++runs;
      }
    }
  }
  EXPECT_GT(runs, 80);
}

// GPTQ's loss (sum of err^2 / 2 over the sweep) is exactly
// 1/2 tr((W - Q) H_d (W - Q)^T) with H_d the dampened Hessian: W - Q = E U
// for the scaled errors E and Hinv = U^T U, so (W - Q) H_d (W - Q)^T = E E^T.
// Checked with the decoded output, so it holds only if every stored code is
// the one the sweep accounted for.
TEST(Gptq, ReportedLossIsTheQuadraticForm) {
  for (const char* name : {"int4_asym_g32", "q4_k", "int3_sym_channel", "q5_0", "nf4_dq"}) {
    const FormatInfo& f = Format(name);
    const uint64_t seed = BaseSeed() + 77 + uint64_t(f.id);
    const Problem p = MakeProblem(9, 512, seed);
    for (bool act_order : {false, true}) {
      for (bool fallback : {false, true}) {
        const FormatInfo g = fallback ? WithoutRoundInPlace(f) : f;
        GptqOptions o;
        o.act_order = act_order;
        const Result r = RunFast(g, p, o, nullptr);
        std::vector<double> hd = p.h;
        for (int64_t i = 0; i < p.n; ++i) hd[i * p.n + i] += r.stats.damp;
        const double quad = 0.5 * Loss(p.w, Decode(g, r.bytes, p.rows, p.n), hd, p.rows, p.n);
        EXPECT_NEAR(r.stats.loss, quad, 1e-9 * quad)
            << name << " act_order " << act_order << " fallback " << fallback << " seed " << seed;
      }
    }
  }
}

// With a diagonal H no error is propagated: GPTQ rounds every element to
// the nearest value under the scales RTN chose, which for the INT formats is
// exactly RTN's code.
TEST(Gptq, DiagonalHessianIsRtn) {
  for (const char* name : {"int4_asym_g32", "int2_sym_channel", "int3_sym_g128", "int8_asym_tensor"}) {
    const FormatInfo& f = Format(name);
    for (bool act_order : {false, true}) {
      const uint64_t seed = BaseSeed() + 5 + uint64_t(f.id);
      Problem p = MakeProblem(6, 256, seed);
      for (int64_t i = 0; i < p.n; ++i)
        for (int64_t j = 0; j < p.n; ++j)
          if (i != j) p.h[i * p.n + j] = 0;
      GptqOptions o;
      o.act_order = act_order;
      const Result r = RunFast(f, p, o, nullptr);
      EXPECT_EQ(r.bytes, Rtn(f, p.w, p.rows, p.n)) << name << " act_order " << act_order << " seed " << seed;
      EXPECT_EQ(r.w, p.w) << name;  // nothing to propagate: the weights are untouched
    }
  }
}

// Solves A x = b (small, dense, SPD) by Gaussian elimination.
std::vector<double> Solve(std::vector<double> a, std::vector<double> b) {
  const size_t m = b.size();
  for (size_t c = 0; c < m; ++c)
    for (size_t r = c + 1; r < m; ++r) {
      const double f = a[r * m + c] / a[c * m + c];
      for (size_t k = c; k < m; ++k) a[r * m + k] -= f * a[c * m + k];
      b[r] -= f * b[c];
    }
  std::vector<double> x(m);
  for (size_t r = m; r-- > 0;) {
    double v = b[r];
    for (size_t k = r + 1; k < m; ++k) v -= a[r * m + k] * x[k];
    x[r] = v / a[r * m + r];
  }
  return x;
}

// One row, ternary grid {-s, 0, s} (int2_sym_channel: one scale per row, s
// from absmax, encoded before the sweep; rows of 4, its packing unit). The
// first m = 2, 3 or 4 columns are correlated, the rest independent (H block
// diagonal), so the case is an m-column problem. Sequential OBS by hand:
// round column j to the nearest grid value; with the residuals d = w - q of
// columns 0..j fixed, the remaining columns take the values minimizing
// d H d^T, i.e. d_rest = -H_rest,rest^-1 H_rest,done d_done; the next target
// is w - d. For m = 2 that is w2' = w2 + (w1 - q1) H12 / H22. GPTQ (no
// dampening) must pick the same values; all 3^4 grid points are enumerated
// for the optimum, which bounds GPTQ's loss from below.
TEST(Gptq, SmallCasesAreSequentialObs) {
  const FormatInfo& f = Format("int2_sym_channel");
  constexpr int64_t n = 4;
  int cases = 0, beat_rtn = 0;
  for (int64_t m : {2, 3, 4}) {
    for (int trial = 0; trial < 40; ++trial) {
      const uint64_t seed = BaseSeed() + 1000 * uint64_t(m) + uint64_t(trial);
      Problem p = MakeProblem(1, n, seed, /*rho=*/0.8, /*sigma=*/0.3, /*samples=*/16);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          if (i != j && (i >= m || j >= m)) p.h[i * n + j] = 0;
      // The grid: RTN's decoded values are in {-s, 0, s}; the absmax element decodes to +-s.
      const std::vector<float> rtn = Decode(f, Rtn(f, p.w, 1, n), 1, n);
      int64_t top = 0;
      for (int64_t i = 0; i < n; ++i)
        if (std::fabs(p.w[i]) > std::fabs(p.w[top])) top = i;
      const float s = std::fabs(rtn[top]);
      ASSERT_GT(s, 0);
      const std::array<float, 3> grid = {-s, 0.0f, s};
      auto nearest = [&grid](double x) {
        float best = grid[0];
        for (float g : grid)
          if (std::fabs(x - g) < std::fabs(x - best)) best = g;
        return best;
      };
      for (float v : rtn) EXPECT_EQ(v, nearest(v)) << "seed " << seed;
      // Sequential OBS from H.
      std::vector<float> obs(n);
      std::vector<double> target(p.w.begin(), p.w.end());
      for (int64_t j = 0; j < n; ++j) {
        obs[j] = nearest(target[j]);
        const int64_t rest = n - j - 1;
        if (rest == 0) break;
        std::vector<double> a(rest * rest), b(rest, 0.0);
        for (int64_t r = 0; r < rest; ++r) {
          for (int64_t c = 0; c < rest; ++c) a[r * rest + c] = p.h[(j + 1 + r) * n + (j + 1 + c)];
          for (int64_t k = 0; k <= j; ++k) b[r] -= p.h[(j + 1 + r) * n + k] * (double(p.w[k]) - double(obs[k]));
        }
        const std::vector<double> d_rest = Solve(a, b);
        for (int64_t r = 0; r < rest; ++r) target[j + 1 + r] = double(p.w[j + 1 + r]) - d_rest[r];
      }
      if (m == 2) {  // the two-column closed form
        const double w2 = p.w[1] + (double(p.w[0]) - obs[0]) * p.h[0 * n + 1] / p.h[1 * n + 1];
        EXPECT_EQ(obs[1], nearest(w2)) << "seed " << seed;
      }
      GptqOptions o;
      o.damp_percent = 0;
      const Result r = RunFast(f, p, o, nullptr);
      const std::vector<float> q = Decode(f, r.bytes, 1, n);
      EXPECT_EQ(q, obs) << "m " << m << " seed " << seed;
      EXPECT_EQ(r.stats.damp_retries, 0);
      double best = std::numeric_limits<double>::infinity();
      for (int code = 0; code < 81; ++code) {
        std::vector<float> cand(n);
        for (int64_t i = 0, c = code; i < n; ++i, c /= 3) cand[i] = grid[c % 3];
        best = std::min(best, Loss(p.w, cand, p.h, 1, n));
      }
      const double gptq_loss = Loss(p.w, q, p.h, 1, n), rtn_loss = Loss(p.w, rtn, p.h, 1, n);
      EXPECT_GE(gptq_loss, best * (1 - 1e-12)) << "seed " << seed;
      EXPECT_NEAR(r.stats.loss, 0.5 * gptq_loss, 1e-9 * gptq_loss) << "seed " << seed;
      beat_rtn += gptq_loss <= rtn_loss * (1 + 1e-12);
      ++cases;
    }
  }
  // Not a theorem per instance, but greedy OBS is at least as good as
  // rounding each weight on its own on most of these correlated problems.
  EXPECT_GE(beat_rtn, cases * 8 / 10) << beat_rtn << " of " << cases;
}

// GPTQ vs RTN (the format's own quantizer, no importance) on 50 random
// correlated problems per format: GPTQ's output error must be lower in at
// least 95% of them and clearly lower on average.
TEST(Gptq, BeatsRtnOnCorrelatedProblems) {
  for (const char* name : {"int4_sym_g128", "int3_asym_g64", "int4_asym_channel", "q4_0", "q4_k"}) {
    const FormatInfo& f = Format(name);
    for (bool act_order : {false, true}) {
      int wins = 0;
      double ratio_sum = 0;
      constexpr int kSeeds = 50;
      for (int k = 0; k < kSeeds; ++k) {
        const uint64_t seed = BaseSeed() + 31 * uint64_t(k) + uint64_t(f.id) * 100003;
        const Problem p = MakeProblem(8, 256, seed);
        GptqOptions o;
        o.act_order = act_order;
        const Result r = RunFast(f, p, o, nullptr);
        const double gptq = Loss(p.w, Decode(f, r.bytes, p.rows, p.n), p.h, p.rows, p.n);
        const double rtn = Loss(p.w, Decode(f, Rtn(f, p.w, p.rows, p.n), p.rows, p.n), p.h, p.rows, p.n);
        wins += gptq < rtn;
        ratio_sum += gptq / rtn;
      }
      const double mean_ratio = ratio_sum / kSeeds;
      std::printf("[ gptq/rtn ] %-18s act_order %d: GPTQ lower in %d of %d, mean loss ratio %.3f\n", name,
                  int(act_order), wins, kSeeds, mean_ratio);
      EXPECT_GE(wins, kSeeds * 95 / 100) << name << " act_order " << act_order;
      EXPECT_LT(mean_ratio, 0.8) << name << " act_order " << act_order;
    }
  }
}

TEST(Gptq, DeadColumnsAreZeroed) {
  for (const char* name : {"int4_asym_g32", "q4_0", "int4_sym_channel"}) {
    const FormatInfo& f = Format(name);
    Problem p = MakeProblem(10, 128, BaseSeed() + 3);
    const int64_t n = p.n;
    for (int64_t dead : {0, 5, 6, 127}) {
      for (int64_t j = 0; j < n; ++j) p.h[dead * n + j] = p.h[j * n + dead] = 0;
    }
    for (bool act_order : {false, true}) {
      GptqOptions o;
      o.act_order = act_order;
      const Result r = RunFast(f, p, o, nullptr);
      EXPECT_EQ(r.stats.dead_columns, 4);
      const std::vector<float> q = Decode(f, r.bytes, p.rows, n);
      for (int64_t row = 0; row < p.rows; ++row)
        for (int64_t dead : {0, 5, 6, 127}) {
          EXPECT_EQ(q[row * n + dead], 0.0f) << name << " row " << row << " column " << dead;
          EXPECT_EQ(r.w[row * n + dead], 0.0f) << name;
        }
      for (float v : q) EXPECT_TRUE(std::isfinite(v));
      // The live columns still beat RTN (on W with the dead columns zeroed, since they cost nothing).
      const std::vector<float> w0 = ZeroDead(p.w, p.h, p.rows, n);
      EXPECT_LT(Loss(p.w, q, p.h, p.rows, n), Loss(w0, Decode(f, Rtn(f, w0, p.rows, n), p.rows, n), p.h, p.rows, n));
      const Result ref = RunReference(f, p, o);
      EXPECT_EQ(r.bytes, ref.bytes) << name;
    }
  }
}

// The tiled factor (n = 600: two full tiles and a partial one) is the upper
// U with U^T U = (H + damp I)^-1, in sweep order, the same bits with and
// without a pool of any size.
TEST(Gptq, FactorIsTheInverseCholesky) {
  const int64_t n = 600;
  const Problem p = MakeProblem(1, n, BaseSeed() + 71);
  for (bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    const GptqHessianFactor f = GptqFactorHessian(p.h, n, o, nullptr);
    ASSERT_EQ(f.u.size(), size_t(n * n));
    // (U^T U) (H' + damp I) = I, with H' = H permuted to sweep order.
    std::vector<double> hinv(n * n, 0.0);
    for (int64_t k = 0; k < n; ++k)  // (U^T U)[i][j] = sum_{k <= i, j} U[k][i] U[k][j]
      for (int64_t i = k; i < n; ++i)
        for (int64_t j = k; j < n; ++j) hinv[i * n + j] += f.u[k * n + i] * f.u[k * n + j];
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double v = 0;
        for (int64_t k = 0; k < n; ++k)
          v += hinv[i * n + k] * (p.h[f.perm[k] * n + f.perm[j]] + (k == j ? f.damp : 0.0));
        worst = std::max(worst, std::fabs(v - (i == j ? 1.0 : 0.0)));
      }
    EXPECT_LT(worst, 1e-8) << "act_order " << act_order;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      const GptqHessianFactor g = GptqFactorHessian(p.h, n, o, &pool);
      for (int64_t i = 0; i < n; ++i)  // the upper triangle is the factor
        for (int64_t j = i; j < n; ++j)
          ASSERT_EQ(g.u[i * n + j], f.u[i * n + j]) << "threads " << threads << " [" << i << ", " << j << "]";
    }
  }
}

// A factor made once (GptqFactorHessian) and shared by several weights that
// read the same input gives each exactly what GptqQuantize with the Hessian
// gives: bytes, error-updated weights and stats, with a dead column, with and
// without act-order.
TEST(Gptq, SharedFactorGivesTheSameResults) {
  Problem p = MakeProblem(24, 256, BaseSeed() + 61);
  const int64_t n = p.n;
  for (int64_t j = 0; j < n; ++j) p.h[7 * n + j] = p.h[j * n + 7] = 0;  // one dead column
  Problem other = MakeProblem(40, 256, BaseSeed() + 62);                 // another weight, same H
  other.h = p.h;
  ThreadPool pool(2);
  for (bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    const GptqHessianFactor factor = GptqFactorHessian(p.h, n, o);
    EXPECT_EQ(factor.dead, std::vector<int64_t>{7});
    for (const char* name : {"q4_k", "int4_asym_g32", "int4_sym_channel"}) {
      const FormatInfo& f = Format(name);
      for (const Problem* q : {&p, &other}) {
        const Result whole = RunFast(f, *q, o, &pool);
        Result shared{std::vector<uint8_t>(q->rows * f.RowBytes(n)), q->w, {}};
        shared.stats = GptqQuantize(f, shared.w.data(), q->rows, n, factor, o, shared.bytes.data(), &pool);
        const std::string trace = std::string(name) + " rows " + std::to_string(q->rows) + " act_order " +
                                  std::to_string(act_order);
        EXPECT_EQ(shared.bytes, whole.bytes) << trace;
        EXPECT_EQ(shared.w, whole.w) << trace;
        EXPECT_EQ(shared.stats.loss, whole.stats.loss) << trace;
        EXPECT_EQ(shared.stats.damp, whole.stats.damp) << trace;
        EXPECT_EQ(shared.stats.damp_retries, whole.stats.damp_retries) << trace;
        EXPECT_EQ(shared.stats.dead_columns, 1) << trace;
        EXPECT_EQ(whole.stats.dead_columns, 1) << trace;
      }
    }
  }
  // A factor made for another sweep order or size is refused.
  GptqOptions plain, act;
  act.act_order = true;
  const GptqHessianFactor factor = GptqFactorHessian(p.h, n, plain);
  std::vector<float> w = p.w;
  std::vector<uint8_t> out(p.rows * Format("q4_0").RowBytes(n));
  EXPECT_THROW(GptqQuantize(Format("q4_0"), w.data(), p.rows, n, factor, act, out.data(), nullptr), Error);
  EXPECT_THROW(GptqQuantize(Format("q4_0"), w.data(), p.rows / 2, n / 2, factor, plain, out.data(), nullptr), Error);
}

// H = [[1, 1.05], [1.05, 1]] has eigenvalues 2.05 and -0.05: 1% dampening
// (0.01) leaves it indefinite, one raise (0.1) makes it positive definite.
TEST(Gptq, DampeningIsRaisedUntilCholeskySucceeds) {
  const FormatInfo& f = Format("int4_sym_channel");
  Problem p;
  p.rows = 3;
  p.n = 2;
  p.w = {0.3f, -0.7f, 1.1f, 0.2f, -0.5f, 0.25f};
  p.h = {1, 1.05, 1.05, 1};
  const GptqOptions o;
  for (int impl = 0; impl < 2; ++impl) {
    const Result r = impl == 0 ? RunFast(f, p, o, nullptr) : RunReference(f, p, o);
    EXPECT_EQ(r.stats.damp_retries, 1) << impl;
    EXPECT_NEAR(r.stats.damp, 0.1, 1e-15) << impl;
  }
  // A singular H (rank 1: the second input copies the first) without
  // dampening: the second pivot is exactly 0, so one raise is needed.
  p.h = {1, 1, 1, 1};
  GptqOptions none;
  none.damp_percent = 0;
  for (int impl = 0; impl < 2; ++impl) {
    const Result r = impl == 0 ? RunFast(f, p, none, nullptr) : RunReference(f, p, none);
    EXPECT_EQ(r.stats.damp_retries, 1) << impl;
    EXPECT_GT(r.stats.damp, 0) << impl;
    for (float v : Decode(f, r.bytes, p.rows, p.n)) EXPECT_TRUE(std::isfinite(v));
  }
  // A singular H from fewer samples than inputs is made definite by the
  // default 1% without any raise.
  Problem low_rank = MakeProblem(6, 64, BaseSeed() + 11, 0.9, /*sigma=*/0, /*samples=*/16);
  EXPECT_EQ(RunFast(f, low_rank, o, nullptr).stats.damp_retries, 0);
  // Shifted down by 5% of its mean diagonal m it has eigenvalues down to
  // -0.05 m: 1% of the new mean (0.95 m) fails, 10% succeeds. The failed
  // try must leave no trace: same bytes as the reference, which factors
  // fresh copies.
  double mean = 0;
  for (int64_t i = 0; i < low_rank.n; ++i) mean += low_rank.h[i * low_rank.n + i] / double(low_rank.n);
  for (int64_t i = 0; i < low_rank.n; ++i) low_rank.h[i * low_rank.n + i] -= 0.05 * mean;
  for (bool act_order : {false, true}) {
    GptqOptions a;
    a.act_order = act_order;
    EXPECT_EQ(RunFast(f, low_rank, a, nullptr).stats.damp_retries, 1);
    ExpectSameRun(Format("q4_0"), low_rank, a, "shifted low-rank H");
  }
}

TEST(Gptq, HopelessHessianThrows) {
  const FormatInfo& f = Format("q8_0");
  Problem p;
  p.rows = 1;
  p.n = 32;
  p.w.assign(32, 0.5f);
  p.h.assign(32 * 32, 0.0);
  for (int i = 0; i < 32; ++i) p.h[i * 32 + i] = 1;
  // H[0][1] = H[1][0] = 1e9: an eigenvalue near -1e9, while 8 raises take
  // the dampening only to 1% x 10^8 = 10^6 times the mean diagonal (1).
  p.h[1] = p.h[32] = 1e9;
  try {
    RunFast(f, p, GptqOptions{}, nullptr);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RunReference(f, p, GptqOptions{}), Error);
}

TEST(Gptq, BadInputThrows) {
  const FormatInfo& f = Format("int4_asym_g32");
  const Problem good = MakeProblem(2, 64, BaseSeed() + 9);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    Problem p = good;
    p.w[70] = bad;
    EXPECT_THROW(RunFast(f, p, GptqOptions{}, nullptr), Error);
    EXPECT_THROW(RunReference(f, p, GptqOptions{}), Error);
    p = good;
    p.h[3 * 64 + 5] = bad;
    EXPECT_THROW(RunFast(f, p, GptqOptions{}, nullptr), Error);
  }
  Problem p = good;
  p.h[7 * 64 + 7] = -1;  // a negative diagonal is no 2 X X^T / N
  EXPECT_THROW(RunFast(f, p, GptqOptions{}, nullptr), Error);
  p = good;
  p.h.resize(10);
  EXPECT_THROW(RunFast(f, p, GptqOptions{}, nullptr), Error);
  GptqOptions o;
  o.batch = 0;
  EXPECT_THROW(RunFast(f, good, o, nullptr), Error);
  o = GptqOptions{};
  o.damp_percent = -0.1;
  EXPECT_THROW(RunFast(f, good, o, nullptr), Error);
  Problem odd = MakeProblem(2, 48, BaseSeed() + 10);  // 48 does not split into blocks of 32
  EXPECT_THROW(RunFast(f, odd, GptqOptions{}, nullptr), Error);
}

// Huge weights against a nearly singular H make the error feedback blow
// up; GPTQ must stop with an Error, never store NaN or inf.
TEST(Gptq, NeverWritesNonFinite) {
  const FormatInfo& f = Format("int8_sym_channel");  // f32 scales: RTN itself stays finite
  Problem p = MakeProblem(4, 64, BaseSeed() + 21, /*rho=*/0.9999, 0.7, /*samples=*/4);
  for (float& v : p.w) v *= 1e30f;
  GptqOptions o;
  o.damp_percent = 1e-12;
  try {
    const Result r = RunFast(f, p, o, nullptr);
    for (float v : Decode(f, r.bytes, p.rows, p.n)) EXPECT_TRUE(std::isfinite(v));
  } catch (const Error&) {
  }
}

TEST(Gptq, SameBitsForAnyThreadCount) {
  const Problem p = MakeProblem(200, 512, BaseSeed() + 41);
  for (const char* name : {"q4_k", "int4_asym_g32", "int4_sym_tensor"}) {
    const FormatInfo& f = Format(name);
    for (bool act_order : {false, true}) {
      GptqOptions o;
      o.act_order = act_order;
      const Result base = RunFast(f, p, o, nullptr);
      for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        const Result r = RunFast(f, p, o, &pool);
        EXPECT_EQ(r.bytes, base.bytes) << name << " threads " << threads;
        EXPECT_EQ(r.w, base.w) << name << " threads " << threads;
        EXPECT_EQ(r.stats.loss, base.stats.loss) << name << " threads " << threads;
      }
    }
  }
}

// Every weight format runs through GPTQ without error and with a loss no
// worse than RTN's by more than a little (formats without round_in_place
// fall back to whole units).
TEST(Gptq, EveryWeightFormatRuns) {
  for (const FormatInfo& f : AllFormats()) {
    if (!f.weight_format) continue;
    const int64_t n = std::max<int64_t>(256, f.block_size);
    const Problem p = MakeProblem(4, n, BaseSeed() + 51 + uint64_t(f.id));
    const Result r = RunFast(f, p, GptqOptions{}, nullptr);
    const std::vector<float> q = Decode(f, r.bytes, p.rows, n);
    for (float v : q) ASSERT_TRUE(std::isfinite(v)) << f.name;
    const double gptq = Loss(p.w, q, p.h, p.rows, n);
    const double rtn = Loss(p.w, Decode(f, Rtn(f, p.w, p.rows, n), p.rows, n), p.h, p.rows, n);
    EXPECT_LE(gptq, 1.05 * rtn + 1e-12) << f.name << (f.round_in_place ? "" : " (no round_in_place)");
  }
}

// Timing on a realistic shape (2048 x 5632, n = 5632): not run by default;
// --gtest_also_run_disabled_tests prints the seconds.
TEST(Gptq, DISABLED_Timing2048x5632) {
  const int64_t rows = 2048, n = 5632, samples = 512;
  std::mt19937_64 rng(BaseSeed());
  Problem p;
  p.rows = rows;
  p.n = n;
  p.w.resize(rows * n);
  for (float& v : p.w) v = float(Gaussian(rng));
  // H = 2 X^T X / N + its low-rank-ness: N < n, so the 1% dampening matters.
  std::vector<double> x(samples * n);
  for (double& v : x) v = Gaussian(rng);
  p.h.assign(n * n, 0.0);
  for (int64_t t = 0; t < samples; ++t)
    for (int64_t i = 0; i < n; ++i) {
      const double xi = 2 * x[t * n + i] / samples;
      double* hi = p.h.data() + i * n;
      const double* xt = x.data() + t * n;
      for (int64_t j = 0; j < n; ++j) hi[j] += xi * xt[j];
    }
  ThreadPool pool(0);
  for (const char* name : {"q4_k", "int4_asym_g128"}) {
    const FormatInfo& f = Format(name);
    const auto start = std::chrono::steady_clock::now();
    const Result r = RunFast(f, p, GptqOptions{}, &pool);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ timing ] %s %lldx%lld, %d threads: factor %.2f s, sweep %.2f s, total %.2f s\n", name,
                (long long)rows, (long long)n, pool.size(), r.stats.seconds_cholesky, r.stats.seconds_sweep, total);
  }
}

}  // namespace
}  // namespace lowbit
