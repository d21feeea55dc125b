// HQQ (Half-Quadratic Quantization, mobiusml/hqq): calibration-free choice of
// the stored values that minimises the lp error sum |W - deq(q(W))|^p with
// p = 0.7 (a sparsity-promoting norm: a few large errors cost less than many
// medium ones), by half-quadratic splitting: an auxiliary error W_e, updated
// by the generalized soft threshold ShrinkLp, and a closed-form update of the
// quantization parameters given W_e. `--method hqq`; docs/QUANTIZE.md.
//
// Two paths, both through FormatInfo (principle 2: formats are not methods):
//  * INT asymmetric formats (int{2,3,4,8}_asym_{g32,g64,g128,channel,tensor}):
//    HQQ itself, per scale group (a group, a row, or the whole tensor). From
//    a start (scale, zero) = the format's min/max parameters of the group's
//    range shrunk by r (r = 1 is rtn), iterate as optimize_weights_proximal:
//      W_q = clamp(round(W/s + z), 0, 2^b - 1)      codes
//      W_r = s (W_q - z)                            reconstruction
//      W_e = s * ShrinkLp((W - W_r)/s, beta, p)     sparse (outlier) error
//      z   = mean(W_q - (W - W_e)/s)                 reference zero update
//      s   = <W - W_e, W_q - z> / |W_q - z|^2       least-squares scale update
//      beta *= kappa
//    stopping early when the lp error of the iterate stops decreasing. The
//    format stores an integer zero in [0, 2^b - 1] and an f16/f32 scale, so
//    every iterate is evaluated as stored (zero rounded, scale rounded as the
//    format does) and the group keeps the stored parameters with the least
//    lp error over all iterates and starts. Because the zero is an integer,
//    a zero-only update (the reference) could only slide the grid window
//    by whole steps; the scale update and the starts r in kStartRatios are
//    what let the grid itself move. The codes are then round-to-nearest under
//    the kept parameters (EncodeIntWithParams).
//  * Every other quantized format (symmetric INT, q4_0/q4_1/q5_*, k-quants,
//    iq4, nf4/fp4, log4, fp8, ...): the same splitting with the format's own
//    codec as the fitting step. Per unit (a block; a row for formats with a
//    row header; the tensor for *_tensor formats), from a start target
//    T = clamp(W, +-r max|W|):
//      Q   = dequantize(quantize(T))                 the codec fits T
//      W_e = u * ShrinkLp((W - Q)/u, beta, p)        outlier error, tolerated
//      T   = W - W_e                                 the inlier part, fitted next
//    keeping the encoding with the least sum |W - Q|^p. u is the unit's
//    quantization step estimated from rtn's error, sqrt(12 * mean(e^2)).
//    r = 1 and the first iterate are rtn's encoding, so the lp error of every
//    unit is never above rtn's.
//  * f32 / f16 / bf16: nothing to optimise; the plain codec.
// In both paths beta acts in units of the quantization step (the reference
// applies it to raw weights, where with LLM-sized weights, |w| ~ 0.02, the
// threshold (1/beta)^(1/(2-p)) ~ 0.17 zeroes every error and the update
// degenerates to a plain mean), so the result does not depend on the
// weights' scale. Importance (--imatrix) is ignored: HQQ is calibration-free.
// Rows are independent (but for *_tensor formats) and run in parallel on the
// ThreadPool; the result does not depend on the thread count.
#pragma once

#include <cstdint>
#include <memory>

#include "quant/method.h"

namespace lowbit {

struct HqqOptions {
  float p = 0.7f;       // lp norm of the error (HQQ's lp_norm)
  float beta = 10.0f;   // initial half-quadratic penalty, in quantization steps
  float kappa = 1.01f;  // beta *= kappa every iteration
  int iters = 20;       // iterations per start (stops earlier when the error rises)
  // Starts r = 1, 1 - start_step, ..., 1 - (starts - 1) * start_step (see above).
  int starts = 5;
  float start_step = 0.02f;
};

// HQQ's shrink_lp_op: sign(x) * max(|x| - |x|^(p-1) / beta, 0), the
// generalized soft threshold (proximal step of |x|^p against beta/2 x^2).
float ShrinkLp(float x, float beta, float p);

// One reference zero-point update on one group of n weights with scale s
// (real-valued zero, codes in [0, max_code]): returns
// mean(W_q - (W - W_e)/s) with W_e as in the header comment.
float HqqZeroStep(const float* w, int64_t n, float scale, float zero, int max_code, float beta, float p);

// Mean |W - Q|^p over n elements (HQQ's objective, as tests report it).
double MeanLpError(const float* w, const float* q, int64_t n, float p);

// `pool` (may be null) parallelises over rows.
std::unique_ptr<QuantMethod> MakeHqqMethod(ThreadPool* pool, const HqqOptions& options = {});

}  // namespace lowbit
