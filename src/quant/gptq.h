// GPTQ (Frantar et al. 2022; ../shared/docs/research/peers.md) for one weight
// matrix, into any weight format.
//
// W (rows, n) is swept over its n input columns. Each column is rounded and
// its error, scaled by the inverse Hessian's Cholesky factor, is pushed onto
// the columns not yet rounded; updates are applied lazily in batches
// (GptqOptions::batch) with one GEMM per batch.
//
// Rounding in a format: the format's own codec chooses the scales. The
// "encoding unit" is one block (n for formats with a row header: per-channel,
// per-tensor, FP8's row scale). When the sweep reaches the first column of a
// unit, the unit's columns of the current (error-updated) W are encoded with
// fmt.quantize (importance = diag(H)); then each column of the unit is rounded
// with those scales fixed by fmt.round_in_place and its error propagated. With
// act-order (or static groups) every unit is encoded up front from the
// original W, since a block format cannot store a permuted group index.
// Formats without round_in_place round a whole unit at once (the unit's
// columns then get no error feedback from each other, only from earlier units;
// with act-order, static groups or a row header that is plain RTN).
//
// Determinism: rows are independent and go to the pool in panels of a fixed
// size, the factorization goes to the pool in tiles of a fixed size, and
// OpenBLAS is held to one thread during the call (its own threaded
// factorization picks its blocking from its thread count), so the output is
// bit-identical for any thread count. The fast path carries W in double like the reference, and
// both give the same bytes (tests/gptq_test.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "formats/format.h"

namespace lowbit {

class ThreadPool;

struct GptqOptions {
  double damp_percent = 0.01;  // dampening: this fraction of the mean diagonal is added to it
  int batch = 128;             // lazy-batch width in columns (rounded up to a multiple of the unit)
  bool act_order = false;      // sweep columns in order of decreasing diag(H)
  bool static_groups = false;  // encode every unit's scales from the original W before the sweep
};

struct GptqStats {
  double damp = 0;          // the dampening finally added to the diagonal (absolute)
  int damp_retries = 0;     // times the dampening was raised because Cholesky failed
  int dead_columns = 0;     // columns with H[i][i] == 0 (zeroed in W, H[i][i] set to 1)
  double loss = 0;          // GPTQ's sum over columns of ||w_j - q_j||^2 / Hinv_cholesky[j][j]^2 / 2
                            // = 1/2 tr((W - Q) (H + damp I) (W - Q)^T), W after the dead-column fix
  double seconds_cholesky = 0;
  double seconds_sweep = 0;
};

// The dampened inverse-Hessian factor GPTQ sweeps with, made once per
// Hessian: every linear that reads the same input (q/k/v, gate/up) shares it.
struct GptqHessianFactor {
  int64_t n = 0;
  bool act_order = false;      // made for an act-order sweep (perm sorts diag(H))
  std::vector<int64_t> perm;   // sweep position -> original column
  std::vector<double> diag;    // diag(H) in sweep order, undamped, dead columns set to 1
  std::vector<int64_t> dead;   // original columns with H[i][i] == 0 (their weights are zeroed)
  std::vector<double> u;       // (n, n) row-major in sweep order: the upper triangle is U with
                               // (H + damp I)^-1 = U^T U (the strictly lower one is not used)
  double damp = 0;             // as in GptqStats
  int damp_retries = 0;
  double seconds = 0;          // dampening, Cholesky, inverse
};

// Checks H (n, n; row-major, symmetric, 2 X^T X / N, consumed) and factors
// it for options.damp_percent and options.act_order, raising the dampening
// as GptqQuantize does, tiles spread over `pool` (may be null; the bits do
// not depend on it). Throws Error as GptqQuantize does for a bad H.
GptqHessianFactor GptqFactorHessian(std::vector<double> hessian, int64_t n, const GptqOptions& options,
                                    ThreadPool* pool = nullptr);

// Quantizes w (rows, n; modified in place into the error-updated weights:
// each column as it was when rounded, in the original column order)
// into `out` (rows * fmt.RowBytes(n) bytes) given the Hessian (n, n;
// row-major, symmetric, 2 X^T X / N, consumed). Dense linear algebra is
// LAPACK/BLAS (OpenBLAS). Throws Error when H stays indefinite after the
// dampening has been raised (x10, up to 8 times), never writes NaN.
GptqStats GptqQuantize(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, std::vector<double> hessian,
                       const GptqOptions& options, uint8_t* out, ThreadPool* pool);
// The same with a factor from GptqFactorHessian (made with the same
// options): the same bytes, weights and stats, less the factorization
// (seconds_cholesky is 0; the factor has its seconds).
GptqStats GptqQuantize(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, const GptqHessianFactor& factor,
                       const GptqOptions& options, uint8_t* out, ThreadPool* pool);

// A plain reference of the same algorithm (no lazy batches, no BLAS, double
// precision, column by column); tests compare GptqQuantize against it.
GptqStats GptqQuantizeReference(const FormatInfo& fmt, float* w, int64_t rows, int64_t n,
                                std::vector<double> hessian, const GptqOptions& options, uint8_t* out);

}  // namespace lowbit
