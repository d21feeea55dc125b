// AWQ (Lin et al. 2023, as AutoAWQ implements it; ../shared/docs/research/
// peers.md §3.1) and SmoothQuant (Xiao et al. 2022, §4.1) as block stages
// (quant/layerwise.h). Both only transform a block's f32 weights by exact
// rescalings (and AWQ's clipping); the base method then encodes every linear
// in its planned format, so "awq" works with every weight format and
// "awq+gptq" hands GPTQ the rescaled weights.
//
// AWQ, per block (awq.cc):
//   1. Capture. One Forward over the calibration samples (the block's f32
//      weights) records, for the input of each product, mean|x| per input
//      channel over every row, and an evenly spaced subsample of at most
//      AwqOptions::max_tokens rows for the searches.
//   2. Scaling groups, in this order (previous op receives 1/s, the linears'
//      input columns s):
//        Llama: attn_norm -> q, k, v; v -> o only when v's rows equal o's
//               columns (no GQA; AutoAWQ skips it with GQA too); ffn_norm ->
//               gate, up; up -> down (rows of up; SwiGLU is linear in up).
//        GPT-2: ln_1 (weight and bias) -> qkv; the v third of qkv (rows and
//               bias) -> o; ln_2 (weight and bias) -> up. Not up -> down
//               (GELU is not linear).
//      Candidates s = max(mean|x|, 1e-4)^alpha (duo scaling: divided by
//      (w_mean^(1-alpha) + 1e-4), w_mean = per input channel mean of |W|
//      with every encoding unit normalised to max 1, as AutoAWQ), clamped to
//      >= 1e-4 and normalised by sqrt(max(s) min(s)), for alpha = i/grid,
//      i = 0 .. grid-1. alpha = 0 is s = 1 (plain quantization), so AWQ never
//      picks a scale that is worse on the calibration rows.
//      Loss (documented choice): the squared error of the CONCATENATED
//      OUTPUTS OF THE GROUP'S LINEARS, sum_l ||X (W_l - Q(W_l diag s)
//      diag(s)^-1)^T||^2 on the subsampled rows, where Q = the planned
//      format's codec (quantize then dequantize). AutoAWQ compares the parent
//      module's output (self_attn for q/k/v, mlp for gate/up); the linears'
//      outputs need no extra forward passes per grid point. With fewer input
//      channels n than rows m the loss is taken through the Gram matrix,
//      sum_r d_r^T (X^T X) d_r (rows n^2 per candidate instead of m rows n).
//      Only linears the recipe quantizes count (but every linear fed by the
//      previous op is rescaled); a group none of whose linears is quantized,
//      or one with a tensor already encoded by an earlier stage, is skipped.
//      The best s is folded (checked finite first), and the captured inputs
//      of the scaled linears are divided by s, as AutoAWQ updates its
//      input_feat.
//   3. Clipping (AwqOptions::clip_search, AutoAWQ's apply_clip), for every
//      quantized linear but q, k and GPT-2's fused qkv ("due to qk bmm"):
//      per output row and encoding unit (a block; a whole row for formats
//      with a row header or a per-tensor scale), w is clamped to
//      [-r max|w|, r max|w|] for r = 1, 0.95, ..., 0.55, each candidate
//      quantized with the format's codec, and the r with the least error of
//      that unit's contribution to the outputs, sum_t (x_t,unit . dw)^2 on
//      AwqOptions::clip_tokens (512) subsampled rows (through the unit's Gram
//      block when the unit is narrower than that), is kept. If the clamped tensor's total output
//      error is above the unclamped one's, the clamp is undone: clipping
//      never increases the loss.
//   Everything is f32 (losses in double); scales are guarded against zero,
//   NaN and inf (channels with mean|x| = 0 get the clamp, never 1/0).
//   Notes: "awq blk.L attn_norm->q,k,v alpha 0.35 loss 3.1e-02 -> 2.2e-02
//   (-29%)" (losses relative to sum ||X W^T||^2) and one per clipped linear.
//
// SmoothQuant (smoothquant.cc): one Forward records max|X_j| of the inputs of
//   q/k/v (GPT-2 qkv) and gate/up (GPT-2 up); per group
//   s_j = max|X_j|^alpha / max(max|W_j|, 1e-5)^(1-alpha), clamped >= 1e-5,
//   max|W_j| over every row of every linear of the group; s_j = 1 for a
//   channel never active (max|X_j| = 0) or a non-finite result. Folded into
//   attn_norm / ffn_norm (weight, and bias for GPT-2's LayerNorm); o and down
//   are not smoothed. It only smooths: the weights are encoded by the base
//   method, activations are quantized by the W8A8 runtime. Note per group:
//   max|X| / mean max|X| over channels before and after.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "formats/format.h"
#include "quant/layerwise.h"

namespace lowbit {

class ThreadPool;

struct AwqOptions {
  int grid = 20;             // alpha in {0, 1/grid, ..., (grid-1)/grid}
  bool duo_scaling = false;  // s = mean|x|^a / (w_mean^(1-a) + 1e-4)
  bool clip_search = true;   // AutoAWQ's apply_clip
  int max_tokens = 4096;     // calibration rows used by the scale search (evenly spaced subsample)
  int clip_tokens = 512;     // rows used by the clip search (AutoAWQ's n_sample_token)
  int clip_grid = 20;        // r = 1 - i/clip_grid ...
  double max_shrink = 0.5;   // ... for i < max_shrink * clip_grid
};

struct SmoothQuantOptions {
  double alpha = 0.5;  // migration strength; per model: Llama-2 0.85, Mistral 0.8 (peers.md §4.1)
};

std::unique_ptr<BlockStage> MakeAwqStage(const AwqOptions& options);
std::unique_ptr<BlockStage> MakeSmoothQuantStage(const SmoothQuantOptions& options);

// ---- The pieces, as pure functions (tests/awq_test.cc) ----

// out (rows, n) = the format's decoding of its encoding of w (rows, n):
// what the linear computes with once stored. Rows in parallel when the format
// allows (not per-tensor formats).
void PseudoQuantize(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, float* out, ThreadPool* pool);

// The columns of one encoding unit: a block, or the whole row for formats
// with a row header or one scale per tensor.
int64_t AwqUnit(const FormatInfo& fmt, int64_t n);

// One linear of a scaling group: f32 weights (rows, n) and its planned format.
struct AwqLinear {
  const float* w = nullptr;
  int64_t rows = 0;
  const FormatInfo* format = nullptr;
};

// AutoAWQ's duo-scaling statistic: per input channel the mean over every row
// of |w| / max|w| of its encoding unit (n values).
std::vector<float> AwqWeightMean(std::span<const AwqLinear> linears, int64_t n);

// The candidate scales for one alpha (n values; w_mean empty without duo
// scaling), normalised by sqrt(max * min). Empty when any would be non-finite.
std::vector<float> AwqScales(std::span<const float> x_mean, std::span<const float> w_mean, double alpha);

// sum over the linears of ||X (W - Q(W diag s) diag(s)^-1)^T||^2 for x (m, n)
// row-major; s = null means plain Q(W).
double AwqGroupLoss(std::span<const AwqLinear> linears, const float* x, int64_t m, int64_t n, const float* s,
                    ThreadPool& pool);

struct AwqSearchResult {
  std::vector<float> scales;  // n; all 1 when alpha = 0 wins
  double alpha = 0;
  double loss = 0;      // AwqGroupLoss at the chosen scales
  double loss_rtn = 0;  // at alpha = 0 (s = 1)
  double norm = 0;      // sum over the linears of ||X W^T||^2 (for relative numbers)
};

// The grid search of step 2 over x (m, n) with mean|x| per channel x_mean.
AwqSearchResult AwqSearchScales(std::span<const AwqLinear> linears, const float* x, int64_t m, int64_t n,
                                std::span<const float> x_mean, const AwqOptions& options, ThreadPool& pool);

struct AwqClipResult {
  double loss_before = 0;  // ||X (W - Q(W))^T||^2 before clamping
  double loss_after = 0;   // the same after (<= loss_before)
  double norm = 0;         // ||X W^T||^2 (for relative numbers)
  int64_t units = 0;       // (row, unit) pairs
  int64_t clipped = 0;     // of which clamped (r < 1)
};

// Step 3 on w (rows, n), clamped in place, with x (m, n) the rows to measure on.
AwqClipResult AwqClip(const FormatInfo& fmt, float* w, int64_t rows, int64_t n, const float* x, int64_t m,
                      const AwqOptions& options, ThreadPool& pool);

// SmoothQuant's s_j from max|X_j| and max|W_j| (both n values).
std::vector<float> SmoothQuantScales(std::span<const float> x_absmax, std::span<const float> w_absmax, double alpha);

// Folding helpers. w (rows, n): column j multiplied by s[j].
void ScaleColumns(float* w, int64_t rows, int64_t n, const float* s);
// v (n): v[j] /= s[j] (a norm's weight or bias, a bias slice).
void DivideBy(float* v, int64_t n, const float* s);
// w (rows, n): row j divided by s[j] (the previous linear of v -> o, up -> down).
void DivideRows(float* w, int64_t rows, int64_t n, const float* s);

}  // namespace lowbit
