// GPTQ for one weight matrix into any format (gptq.h): the shared set-up
// (checks, dead columns, act-order permutation, dampened inverse-Hessian
// Cholesky factor with the dampening raised on failure), the fast sweep
// (tiled factorization over BLAS/LAPACK, row panels on the thread pool, lazy
// batches with one dgemm each) and the plain double-precision reference
// sweep.
#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"

namespace lowbit {

namespace {

// Rows per panel of the fast sweep. Fixed (not derived from the thread
// count) so every row sees the same dgemm shapes, hence the same bits, for
// any number of threads; 32 rows keep the (32, batch) x (batch, n) products
// near OpenBLAS's peak while one panel's working copy (32 x n doubles) stays
// small.
constexpr int64_t kPanelRows = 32;
// Times the dampening is raised (x10) after a failed factorization before
// giving up: 8 raises take 1% of the mean diagonal to 10^6 times it.
constexpr int kMaxDampRaises = 8;
// The first raise when damp_percent is 0: one part in 10^4 of the mean
// diagonal, well above the pivot rounding (~n * eps * mean diag) of any
// Hessian size we meet, so a PSD but singular H factors after one raise.
constexpr double kFirstDampWhenZero = 1e-4;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Runs fn(begin, end) over [0, n) on the pool, or inline without one.
void For(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(n, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

// Runs fn(i) for every i in [0, n) on the pool, each thread taking the next
// index as it frees up (for items of uneven cost; list the costly ones
// first). Which thread runs an item never changes what it computes.
void ForEach(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
  std::atomic<int64_t> next{0};
  const int64_t workers = pool != nullptr ? std::min<int64_t>(pool->size(), n) : 1;
  For(pool, workers, [&](int64_t, int64_t) {
    for (int64_t i = next++; i < n; i = next++) fn(i);
  });
}

// OpenBLAS runs single-threaded while GPTQ uses it: the row panels and the
// factorization's tiles are already spread over our pool, and OpenBLAS's
// threaded factorization picks its blocking from its thread count, which
// would make the bits depend on how many threads it was given.
// The previous setting comes back on exit (process-wide: GPTQ must not run
// beside other OpenBLAS users that want their own thread count).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~SingleThreadedBlas() { openblas_set_num_threads(saved_); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

// What both sweeps need to know once the inputs are checked.
struct Setup {
  int64_t unit = 0;            // encoding unit U in columns (block, or n with a row header)
  int64_t batch = 0;           // lazy-batch width (a multiple of U when units are encoded in the sweep)
  bool up_front = false;       // every unit encoded from the original W before the sweep
  std::vector<int64_t> perm;   // sweep position -> original column (identity without act-order)
  std::vector<double> diag;    // diag(H) after the dead-column fix, in sweep order, undamped
  std::vector<float> importance;  // per original column, for fmt.quantize (see SetImportance)
};

// The checks on the format, the weights and the options (nothing changed).
void CheckWeights(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, const GptqOptions& options) {
  if (fmt.quantize == nullptr || fmt.dequantize == nullptr) Fail("GPTQ: format {} has no codec", fmt.name);
  if (rows < 0 || n < 0) Fail("GPTQ: bad weight shape ({}, {})", rows, n);
  if (n % fmt.block_size != 0)
    Fail("GPTQ: {} stores rows in blocks of {}; a row of {} does not split into them", fmt.name, fmt.block_size, n);
  if (options.batch < 1) Fail("GPTQ: batch width must be positive, got {}", options.batch);
  for (int64_t i = 0; i < rows * n; ++i)
    if (!std::isfinite(w[i])) Fail("GPTQ: weight [{}, {}] is {}", i / n, i % n, w[i]);
}

// Checks H, fixes its dead columns (H[i][i] == 0 -> 1, listed in f->dead) and
// permutes it for act-order (in place: H'[a][b] = H[perm[a]][perm[b]]);
// fills f->n, perm, diag.
void PrepareHessian(std::vector<double>& h, int64_t n, const GptqOptions& options, GptqHessianFactor* f) {
  if (n < 0) Fail("GPTQ: bad Hessian size {}", n);
  if (int64_t(h.size()) != n * n) Fail("GPTQ: Hessian has {} entries, expected {} x {}", h.size(), n, n);
  if (!(options.damp_percent >= 0) || !std::isfinite(options.damp_percent))
    Fail("GPTQ: damp_percent must be a finite value >= 0, got {}", options.damp_percent);
  for (int64_t i = 0; i < n * n; ++i)
    if (!std::isfinite(h[i])) Fail("GPTQ: Hessian entry [{}, {}] is {}", i / n, i % n, h[i]);

  f->n = n;
  f->act_order = options.act_order;
  f->diag.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    double& hii = h[i * n + i];
    if (hii < 0) Fail("GPTQ: Hessian diagonal [{}] is {} < 0; not a 2 X X^T / N of any X", i, hii);
    if (hii == 0) {  // an input that never fired: its weights cannot matter, so they are zeroed
      hii = 1;
      f->dead.push_back(i);
    }
    f->diag[i] = hii;
  }

  f->perm.resize(n);
  std::iota(f->perm.begin(), f->perm.end(), int64_t(0));
  if (options.act_order) {
    // Stable, so equal diagonals keep their order and the permutation is
    // the same on every platform.
    std::stable_sort(f->perm.begin(), f->perm.end(), [f](int64_t a, int64_t b) { return f->diag[a] > f->diag[b]; });
    std::vector<double> tmp(n);
    for (int64_t r = 0; r < n; ++r) {  // columns: H1[r][b] = H[r][perm[b]]
      double* row = h.data() + r * n;
      for (int64_t b = 0; b < n; ++b) tmp[b] = row[f->perm[b]];
      std::copy(tmp.begin(), tmp.end(), row);
    }
    std::vector<bool> done(n, false);  // rows: H'[a] = H1[perm[a]], cycle by cycle
    for (int64_t a = 0; a < n; ++a) {
      if (done[a]) continue;
      std::copy(h.begin() + a * n, h.begin() + (a + 1) * n, tmp.begin());
      int64_t cur = a;
      for (;;) {
        done[cur] = true;
        const int64_t next = f->perm[cur];
        double* dst = h.data() + cur * n;
        if (next == a) {
          std::copy(tmp.begin(), tmp.end(), dst);
          break;
        }
        std::copy(h.begin() + next * n, h.begin() + (next + 1) * n, dst);
        cur = next;
      }
    }
    std::vector<double> diag(n);
    for (int64_t a = 0; a < n; ++a) diag[a] = f->diag[f->perm[a]];
    f->diag.swap(diag);
  }
}

// The per-weight set-up from a factor: zeroes w's dead columns (w stays in
// the original order) and picks the encoding unit and batch.
Setup PrepareWeights(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, const GptqHessianFactor& f,
                     const GptqOptions& options, GptqStats* stats) {
  if (f.n != n) Fail("GPTQ: the Hessian factor is {} x {}, the weights have {} columns", f.n, f.n, n);
  if (f.act_order != options.act_order)
    Fail("GPTQ: the Hessian factor was made {} act-order, the options ask {}", f.act_order ? "with" : "without",
         options.act_order ? "for it" : "for none");
  for (int64_t i : f.dead) {
    for (int64_t r = 0; r < rows; ++r) w[r * n + i] = 0;
    ++stats->dead_columns;
  }
  stats->damp = f.damp;
  stats->damp_retries = f.damp_retries;
  Setup s;
  s.perm = f.perm;
  s.diag = f.diag;
  s.unit = fmt.row_header_bytes > 0 ? n : fmt.block_size;
  s.up_front = options.act_order || options.static_groups || s.unit >= n;
  s.batch = options.batch;
  if (!s.up_front) s.batch = (s.batch + s.unit - 1) / s.unit * s.unit;
  return s;
}

// Dampens H (diag + damp) and factors it with `factor(damp)`, raising the
// dampening x10 while that fails. factor leaves the upper Cholesky factor U of
// the inverse (Hinv = U^T U) in the row-major upper triangle of its matrix.
void DampAndFactor(GptqHessianFactor* f, const GptqOptions& options, const std::function<bool(double)>& factor) {
  const int64_t n = f->n;
  const double mean = std::accumulate(f->diag.begin(), f->diag.end(), 0.0) / double(n);
  double damp = options.damp_percent * mean;
  for (int raises = 0;; ++raises) {
    if (factor(damp)) break;
    if (raises == kMaxDampRaises)
      Fail("GPTQ: the {} x {} Hessian is not positive definite even with a dampening of {} ({} x its mean "
           "diagonal {}) after {} raises; the calibration statistics are broken",
           n, n, damp, damp / mean, mean, kMaxDampRaises);
    damp = damp > 0 ? 10 * damp : kFirstDampWhenZero * mean;
    ++f->damp_retries;
  }
  f->damp = damp;
}

// Tile edge of the blocked factorization and inversion below. Every tile
// operation is one single-threaded BLAS/LAPACK call of a shape fixed by n
// alone, so the bits do not depend on the thread count; tiles go to the pool.
// 256 keeps the tile products near OpenBLAS's dgemm peak (~50 GFLOPS per Zen 4
// core, measured) and gives ffn_down's n = 5632 22 tile rows to share out.
constexpr int64_t kFactorTile = 256;

// The tiles of a row-major n x n matrix.
struct Tiles {
  double* a;
  int64_t n, count;
  double* At(int64_t i, int64_t j) const { return a + i * kFactorTile * n + j * kFactorTile; }
  int64_t Size(int64_t i) const { return std::min(kFactorTile, n - i * kFactorTile); }
};

// L with a = L L^T in the row-major lower triangle of a, in place, tile by
// tile (right-looking: the diagonal tile, the panel below it, then the
// trailing lower triangle). A column-major upper triangle is a row-major
// lower one, so LAPACK's 'U' routines factor a diagonal tile in place. Only
// the lower triangle is read or written. False when a is not positive
// definite.
bool CholeskyLowerTiled(const Tiles& t, ThreadPool* pool) {
  const int n = int(t.n);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t k = 0; k < t.count; ++k) {
    const int bk = int(t.Size(k));
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', bk, t.At(k, k), n) != 0) return false;
    ForEach(pool, t.count - k - 1, [&](int64_t q) {  // L_ik = A_ik L_kk^-T
      const int64_t i = k + 1 + q;
      cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, int(t.Size(i)), bk, 1.0,
                  t.At(k, k), n, t.At(i, k), n);
    });
    pairs.clear();
    for (int64_t i = k + 1; i < t.count; ++i)
      for (int64_t j = k + 1; j <= i; ++j) pairs.emplace_back(i, j);
    ForEach(pool, int64_t(pairs.size()), [&](int64_t q) {  // A_ij -= L_ik L_jk^T
      const int64_t i = pairs[size_t(q)].first, j = pairs[size_t(q)].second;
      if (i == j)
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, int(t.Size(i)), bk, -1.0, t.At(i, k), n, 1.0,
                    t.At(i, i), n);
      else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(t.Size(i)), int(t.Size(j)), bk, -1.0, t.At(i, k), n,
                    t.At(j, k), n, 1.0, t.At(i, j), n);
    });
  }
  return true;
}

// L^-1 of the row-major lower triangle of a, in place, tile by tile in
// LAPACK dtrtri's order: from the last block column to the first, column j
// below its diagonal becomes X_ij = -(sum_{m=j+1..i} X_im L_mj) X_jj, from the
// already inverted trailing triangle X and the column as it still is. Row
// tiles of a column go to the pool, each summed in a fixed order into a
// scratch panel that is written back once the column is done. False on a
// zero diagonal entry.
bool InvertLowerTiled(const Tiles& t, ThreadPool* pool) {
  const int n = int(t.n);
  std::vector<double> panel(size_t(t.count * kFactorTile * kFactorTile));  // row tiles of one column
  for (int64_t j = t.count - 1; j >= 0; --j) {
    const int bj = int(t.Size(j));
    if (LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', bj, t.At(j, j), n) != 0) return false;  // X_jj
    ForEach(pool, t.count - j - 1, [&](int64_t q) {
      const int64_t i = t.count - 1 - q;  // the longest sums first
      const int bi = int(t.Size(i));
      double* out = panel.data() + (i - j - 1) * kFactorTile * kFactorTile;  // (bi, bj)
      for (int r = 0; r < bi; ++r) std::copy(t.At(i, j) + r * n, t.At(i, j) + r * n + bj, out + r * bj);
      cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, bi, bj, 1.0, t.At(i, i), n, out,
                  bj);  // X_ii L_ij
      for (int64_t m = j + 1; m < i; ++m)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, bj, int(t.Size(m)), 1.0, t.At(i, m), n, t.At(m, j),
                    n, 1.0, out, bj);
      cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, bi, bj, -1.0, t.At(j, j), n, out,
                  bj);  // -(...) X_jj
    });
    for (int64_t i = j + 1; i < t.count; ++i) {
      const double* out = panel.data() + (i - j - 1) * kFactorTile * kFactorTile;
      for (int64_t r = 0; r < t.Size(i); ++r) std::copy(out + r * bj, out + (r + 1) * bj, t.At(i, j) + r * n);
    }
  }
  return true;
}

// The dampened H's inverse Cholesky factor, in place in h, without forming
// H^-1 (GPTQ's cholesky -> cholesky_inverse -> cholesky costs 4/3 n^3; this
// 2/3 n^3). With J the reversal permutation and J H J = L L^T (L lower),
// H = R R^T for the upper R = J L J, so H^-1 = R^-T R^-1 and U = R^-1 =
// J L^-1 J is the upper factor with H^-1 = U^T U, the one GPTQ uses (unique).
// Reversing the flat row-major array gives J M J. The factorization and
// inversion touch only the reversed array's lower triangle; the final
// reversal puts U in h's upper triangle and the untouched original H back in
// the strictly lower one, from which a failed try restores its input.
bool FactorTiled(std::vector<double>& h, const std::vector<double>& diag, int64_t n, double damp,
                 ThreadPool* pool) {
  for (int64_t i = 0; i < n; ++i) {
    h[i * n + i] = diag[i] + damp;
    for (int64_t j = i + 1; j < n; ++j) h[i * n + j] = h[j * n + i];
  }
  std::reverse(h.begin(), h.end());  // J H J
  const Tiles t{h.data(), n, (n + kFactorTile - 1) / kFactorTile};
  const bool ok = CholeskyLowerTiled(t, pool) && InvertLowerTiled(t, pool);  // L^-1
  std::reverse(h.begin(), h.end());  // U = J L^-1 J
  if (!ok) return false;
  for (int64_t i = 0; i < n; ++i)
    if (!(h[i * n + i] > 0) || !std::isfinite(h[i * n + i])) return false;
  return true;
}

// Plain lower Cholesky a = L L^T of a full row-major matrix; L replaces the
// lower triangle, the upper is zeroed. False on a pivot <= 0 (or NaN), the
// test LAPACK's dpotrf makes.
bool CholeskyLowerPlain(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double pivot = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) pivot -= a[j * n + k] * a[j * n + k];
    if (!(pivot > 0) || !std::isfinite(pivot)) return false;
    const double ljj = std::sqrt(pivot);
    a[j * n + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double v = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) v -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = v / ljj;
    }
    for (int64_t i = 0; i < j; ++i) a[i * n + j] = 0;
  }
  return true;
}

// The reference factorization: L L^T = H + damp I, Linv by substitution,
// Hinv = Linv^T Linv, M M^T = Hinv, U = M^T. Writes U to `u` (n x n).
bool FactorPlain(const std::vector<double>& h, const std::vector<double>& diag, int64_t n, double damp,
                 std::vector<double>* u) {
  std::vector<double> l(h);
  for (int64_t i = 0; i < n; ++i) l[i * n + i] = diag[i] + damp;
  if (!CholeskyLowerPlain(l, n)) return false;
  std::vector<double> linv(n * n, 0.0);  // L^-1 (lower), row i = (e_i - sum_k<i L[i][k] row k) / L[i][i]
  for (int64_t i = 0; i < n; ++i) {
    double* xi = linv.data() + i * n;
    xi[i] = 1;
    for (int64_t k = 0; k < i; ++k) {
      const double lik = l[i * n + k];
      const double* xk = linv.data() + k * n;
      for (int64_t c = 0; c <= k; ++c) xi[c] -= lik * xk[c];
    }
    for (int64_t c = 0; c <= i; ++c) xi[c] /= l[i * n + i];
  }
  std::vector<double> hinv(n * n, 0.0);  // H^-1 = Linv^T Linv = sum_k (row k)^T (row k)
  for (int64_t k = 0; k < n; ++k) {
    const double* xk = linv.data() + k * n;
    for (int64_t i = 0; i <= k; ++i)
      for (int64_t j = 0; j <= k; ++j) hinv[i * n + j] += xk[i] * xk[j];
  }
  if (!CholeskyLowerPlain(hinv, n)) return false;
  u->assign(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) (*u)[i * n + j] = hinv[j * n + i];
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite((*u)[i * n + i])) return false;
  return true;
}

// Weights of the columns' errors for the unit encodings (fmt.quantize's
// importance): diag(H), in original column order, scaled to a maximum of 1 so
// that any H fits a float. Measured on 50 random correlated problems x 9
// formats (q4_0, q2_k..q6_k, iq4_nl, nf4, tq2_0; tests/gptq_test.cc's
// generator): diag(H) and 1 / U[j][j]^2 (the weight the sweep itself gives a
// column's error) end within 3% of each other, while no importance leaves
// 20-45% more output error on the formats whose quantizer searches scales
// (k-quants, q4_0, iq4_nl); the INT, NF4 and ternary quantizers ignore it.
void SetImportance(Setup* s, int64_t n) {
  s->importance.assign(n, 0.0f);
  const double top = *std::max_element(s->diag.begin(), s->diag.end());
  for (int64_t a = 0; a < n; ++a) s->importance[s->perm[a]] = float(s->diag[a] / top);
}

// Encodes all of w (rows, n; original order) into out before the sweep: for
// a format without a row header the rows are independent, so panels of
// kPanelRows go to the pool; per-tensor and per-row formats see the whole
// tensor in one call.
void EncodeUpFront(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, const float* importance,
                   uint8_t* out, ThreadPool* pool) {
  const size_t row_bytes = fmt.RowBytes(n);
  if (fmt.row_header_bytes > 0) {
    fmt.quantize(w, rows, n, out, importance);
    return;
  }
  const int64_t panels = (rows + kPanelRows - 1) / kPanelRows;
  For(pool, panels, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t r0 = p * kPanelRows, count = std::min(kPanelRows, rows - r0);
      fmt.quantize(w + r0 * n, count, n, out + size_t(r0) * row_bytes, importance);
    }
  });
}

// One panel of the fast sweep: rows [r0, r0 + rows) of W, in double, in
// sweep order, updated as the sweep goes.
struct Panel {
  int64_t r0 = 0, rows = 0;
  std::vector<double> w;        // (rows, n) sweep order
  std::vector<double> err;      // (rows, batch): this batch's scaled errors
  std::vector<float> decoded;   // (rows, n) original order; only without round_in_place
  std::vector<float> unit_in;   // (rows, U) one unit's values for fmt.quantize
  std::vector<uint8_t> unit_out;  // (rows, RowBytes(U))
  std::vector<double> loss;     // (rows) sum of err^2
  int64_t bad_row = -1, bad_col = -1;  // first non-finite value met (the sweep diverged)
};

// What every panel reads.
struct SweepContext {
  const FormatInfo* fmt;
  int64_t n;
  const Setup* setup;
  const double* hinv;  // (n, n) row-major, upper triangle = U with Hinv = U^T U
  uint8_t* out;
  size_t row_bytes;
};

// Encodes the unit starting at sweep column j (no permutation in this mode)
// of the panel's rows from their current values.
bool EncodeUnit(const SweepContext& c, Panel& p, int64_t j) {
  const FormatInfo& fmt = *c.fmt;
  const int64_t u = c.setup->unit, n = c.n;
  const size_t unit_bytes = fmt.RowBytes(u);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t k = 0; k < u; ++k) {
      const double x = p.w[r * n + j + k];
      if (!(std::fabs(x) <= FLT_MAX)) {
        p.bad_row = p.r0 + r;
        p.bad_col = j + k;
        return false;
      }
      p.unit_in[r * u + k] = float(x);
    }
  fmt.quantize(p.unit_in.data(), p.rows, u, p.unit_out.data(), c.setup->importance.data() + j);
  const size_t offset = size_t(j / fmt.block_size) * size_t(fmt.block_bytes);
  for (int64_t r = 0; r < p.rows; ++r) {
    const uint8_t* src = p.unit_out.data() + size_t(r) * unit_bytes;
    std::memcpy(c.out + size_t(p.r0 + r) * c.row_bytes + offset, src, unit_bytes);
    if (fmt.round_in_place == nullptr) fmt.dequantize(src, p.decoded.data() + r * n + j, u);
  }
  return true;
}

// Sweeps columns [i1, i2) of one panel, then pushes the batch's errors onto
// the columns after it with one dgemm: W[:, i2:] -= Err @ U[i1:i2, i2:].
void SweepBatch(const SweepContext& c, Panel& p, int64_t i1, int64_t i2) {
  if (p.bad_row >= 0) return;
  const FormatInfo& fmt = *c.fmt;
  const Setup& s = *c.setup;
  const int64_t n = c.n, width = s.batch;
  for (int64_t j = i1; j < i2; ++j) {
    if (!s.up_front && j % s.unit == 0 && !EncodeUnit(c, p, j)) return;
    const double* uj = c.hinv + j * n;
    const double d = uj[j];
    const int64_t col = s.perm[j];
    for (int64_t r = 0; r < p.rows; ++r) {
      double* wr = p.w.data() + r * n;
      const double x = wr[j];
      if (!(std::fabs(x) <= FLT_MAX)) {  // NaN, inf, or past what the format sees as a float
        p.bad_row = p.r0 + r;
        p.bad_col = col;
        return;
      }
      uint8_t* row = c.out + size_t(p.r0 + r) * c.row_bytes;
      const double q = fmt.round_in_place != nullptr ? double(fmt.round_in_place(row, n, col, float(x)))
                                                     : double(p.decoded[r * n + col]);
      const double e = (x - q) / d;
      p.err[r * width + (j - i1)] = e;
      p.loss[r] += e * e;
      for (int64_t k = j + 1; k < i2; ++k) wr[k] -= e * uj[k];
    }
  }
  if (i2 < n)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(p.rows), int(n - i2), int(i2 - i1), -1.0,
                p.err.data(), int(width), c.hinv + i1 * n + i2, int(n), 1.0, p.w.data() + i2, int(n));
}

[[noreturn]] void FailDiverged(int64_t row, int64_t col) {
  Fail("GPTQ: weight [{}, {}] became non-finite during the sweep (the Hessian is too ill-conditioned; raise "
       "damp_percent)",
       row, col);
}

}  // namespace

GptqHessianFactor GptqFactorHessian(std::vector<double> hessian, int64_t n, const GptqOptions& options,
                                    ThreadPool* pool) {
  GptqHessianFactor f;
  PrepareHessian(hessian, n, options, &f);
  if (n == 0) return f;
  SingleThreadedBlas single_threaded_blas;
  const auto start = std::chrono::steady_clock::now();
  DampAndFactor(&f, options, [&](double damp) { return FactorTiled(hessian, f.diag, n, damp, pool); });
  f.u = std::move(hessian);
  f.seconds = Seconds(start);
  return f;
}

GptqStats GptqQuantize(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, std::vector<double> hessian,
                       const GptqOptions& options, uint8_t* out, ThreadPool* pool) {
  CheckWeights(fmt, w, rows, n, options);
  if (rows == 0 || n == 0) {  // nothing to sweep: no factorization
    GptqStats stats;
    GptqHessianFactor f;
    PrepareHessian(hessian, n, options, &f);
    PrepareWeights(fmt, w, rows, n, f, options, &stats);
    return stats;
  }
  const GptqHessianFactor f = GptqFactorHessian(std::move(hessian), n, options, pool);
  GptqStats stats = GptqQuantize(fmt, w, rows, n, f, options, out, pool);
  stats.seconds_cholesky = f.seconds;
  return stats;
}

GptqStats GptqQuantize(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, const GptqHessianFactor& factor,
                       const GptqOptions& options, uint8_t* out, ThreadPool* pool) {
  GptqStats stats;
  CheckWeights(fmt, w, rows, n, options);
  Setup s = PrepareWeights(fmt, w, rows, n, factor, options, &stats);
  if (rows == 0 || n == 0) return stats;
  SingleThreadedBlas single_threaded_blas;

  const auto start = std::chrono::steady_clock::now();
  SetImportance(&s, n);
  if (s.up_front) EncodeUpFront(fmt, w, rows, n, s.importance.data(), out, pool);
  const SweepContext c{&fmt, n, &s, factor.u.data(), out, fmt.RowBytes(n)};
  // Rows are taken a chunk at a time, all panels of a chunk moving batch by
  // batch together so they share the batch's slice of U in cache. The chunk
  // only bounds memory; results do not depend on it.
  const int64_t threads = pool != nullptr ? pool->size() : 1;
  const int64_t chunk_rows = kPanelRows * std::max<int64_t>(8, 2 * threads);
  std::vector<double> row_loss(rows, 0.0);
  for (int64_t c0 = 0; c0 < rows; c0 += chunk_rows) {
    const int64_t chunk = std::min(chunk_rows, rows - c0);
    std::vector<Panel> panels((chunk + kPanelRows - 1) / kPanelRows);
    const int64_t np = int64_t(panels.size());
    For(pool, np, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        Panel& p = panels[i];
        p.r0 = c0 + i * kPanelRows;
        p.rows = std::min(kPanelRows, rows - p.r0);
        p.w.resize(p.rows * n);
        for (int64_t r = 0; r < p.rows; ++r)
          for (int64_t a = 0; a < n; ++a) p.w[r * n + a] = w[(p.r0 + r) * n + s.perm[a]];
        p.err.assign(p.rows * s.batch, 0.0);
        p.loss.assign(p.rows, 0.0);
        if (fmt.round_in_place == nullptr) {
          p.decoded.resize(p.rows * n);
          if (s.up_front)
            for (int64_t r = 0; r < p.rows; ++r)
              fmt.dequantize(out + size_t(p.r0 + r) * c.row_bytes, p.decoded.data() + r * n, n);
        }
        if (!s.up_front) {
          p.unit_in.resize(p.rows * s.unit);
          p.unit_out.resize(size_t(p.rows) * fmt.RowBytes(s.unit));
        }
      }
    });
    for (int64_t i1 = 0; i1 < n; i1 += s.batch) {
      const int64_t i2 = std::min(n, i1 + s.batch);
      For(pool, np, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) SweepBatch(c, panels[i], i1, i2);
      });
    }
    for (const Panel& p : panels)
      if (p.bad_row >= 0) FailDiverged(p.bad_row, p.bad_col);
    // Each column ends as it was when rounded: the sweep only updates
    // columns after the one it rounds.
    for (const Panel& p : panels) {
      for (int64_t r = 0; r < p.rows; ++r) {
        for (int64_t a = 0; a < n; ++a) w[(p.r0 + r) * n + s.perm[a]] = float(p.w[r * n + a]);
        row_loss[p.r0 + r] = p.loss[r];
      }
    }
  }
  for (double l : row_loss) stats.loss += 0.5 * l;
  stats.seconds_sweep = Seconds(start);
  return stats;
}

GptqStats GptqQuantizeReference(const FormatInfo& fmt, float* w, int64_t rows, int64_t n,
                                std::vector<double> hessian, const GptqOptions& options, uint8_t* out) {
  GptqStats stats;
  CheckWeights(fmt, w, rows, n, options);
  GptqHessianFactor f;
  PrepareHessian(hessian, n, options, &f);
  Setup s = PrepareWeights(fmt, w, rows, n, f, options, &stats);
  if (rows == 0 || n == 0) return stats;

  auto start = std::chrono::steady_clock::now();
  std::vector<double> u;
  DampAndFactor(&f, options, [&](double damp) { return FactorPlain(hessian, f.diag, n, damp, &u); });
  stats.damp = f.damp;
  stats.damp_retries = f.damp_retries;
  stats.seconds_cholesky = Seconds(start);

  start = std::chrono::steady_clock::now();
  SetImportance(&s, n);
  const size_t row_bytes = fmt.RowBytes(n);
  std::vector<float> decoded(fmt.round_in_place == nullptr ? rows * n : 0);  // (rows, n) original order
  if (s.up_front) {
    fmt.quantize(w, rows, n, out, s.importance.data());
    if (fmt.round_in_place == nullptr)
      for (int64_t r = 0; r < rows; ++r) fmt.dequantize(out + size_t(r) * row_bytes, decoded.data() + r * n, n);
  }
  std::vector<double> wd(rows * n);  // (rows, n) sweep order
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < n; ++a) wd[r * n + a] = w[r * n + s.perm[a]];
  std::vector<double> row_loss(rows, 0.0);
  const int64_t unit = s.unit;
  const size_t unit_bytes = fmt.RowBytes(unit);
  std::vector<float> unit_in(s.up_front ? 0 : rows * unit);
  std::vector<uint8_t> unit_out(s.up_front ? 0 : rows * unit_bytes);
  for (int64_t j = 0; j < n; ++j) {
    if (!s.up_front && j % unit == 0) {  // encode the unit W[:, j : j + U] as it is now
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < unit; ++k) {
          const double x = wd[r * n + j + k];
          if (!(std::fabs(x) <= FLT_MAX)) FailDiverged(r, j + k);
          unit_in[r * unit + k] = float(x);
        }
      fmt.quantize(unit_in.data(), rows, unit, unit_out.data(), s.importance.data() + j);
      const size_t offset = size_t(j / fmt.block_size) * size_t(fmt.block_bytes);
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(out + size_t(r) * row_bytes + offset, unit_out.data() + size_t(r) * unit_bytes, unit_bytes);
        if (fmt.round_in_place == nullptr)
          fmt.dequantize(unit_out.data() + size_t(r) * unit_bytes, decoded.data() + r * n + j, unit);
      }
    }
    const int64_t col = s.perm[j];
    const double d = u[j * n + j];
    for (int64_t r = 0; r < rows; ++r) {
      const double x = wd[r * n + j];
      if (!(std::fabs(x) <= FLT_MAX)) FailDiverged(r, col);
      const double q = fmt.round_in_place != nullptr
                           ? double(fmt.round_in_place(out + size_t(r) * row_bytes, n, col, float(x)))
                           : double(decoded[r * n + col]);
      const double e = (x - q) / d;
      row_loss[r] += e * e;
      for (int64_t k = j + 1; k < n; ++k) wd[r * n + k] -= e * u[j * n + k];
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < n; ++a) w[r * n + s.perm[a]] = float(wd[r * n + a]);
  for (double l : row_loss) stats.loss += 0.5 * l;
  stats.seconds_sweep = Seconds(start);
  return stats;
}

}  // namespace lowbit
