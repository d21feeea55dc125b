// `lowbit quantize`: streams a model into a GGUF file, one tensor at a time.
//   1. Plan the recipe (quant/recipe.h) and check the inputs (method,
//      importance for every quantized tensor) before anything is written.
//   2. Write the GGUF header: the source's metadata (quant/gguf_metadata.h),
//      general.file_type, general.quantization_version, lowbit.quantize.*,
//      and every tensor's info.
//   3. Calibrated methods (gptq, awq, smoothquant and '+' combinations,
//      quant/layerwise.h): the calibration windows are drawn from
//      calib_text, and the block-by-block engine quantizes blk.L tensors on
//      demand as the loop below reaches them (block L runs once every
//      earlier block has); its bytes, and the f32 of float tensors a stage
//      changed (folded norms), are what is written for those tensors.
//   4. Per tensor: decode the source to f32, check it is finite, permute q/k
//      rows if the RoPE order demands it, prune, quantize with the method,
//      dequantize the result to check it is finite and measure its error,
//      and append it to the file.
// Peak memory is the source map's touched pages of one tensor plus that
// tensor in f32, its encoding and its decoded check (pages of finished source
// tensors are released). Ctrl-C or any error leaves no output file (the
// writer renames its temporary file into place only at the end).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"
#include "quant/activations.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/importance.h"
#include "quant/layerwise.h"
#include "quant/prune.h"
#include "quant/recipe.h"

namespace lowbit {

struct QuantizeOptions {
  std::string output;
  std::string method = "rtn";
  RecipeOptions recipe;  // format/preset, --keep, --tensor-type, output/embedding types, --pure
  PruneSpec prune;
  ActivationOptions activations;  // W8A8 / LLM.int8() (quant/activations.h)
  int threads = 0;
  bool progress = true;  // progress bar on stderr
  // Extra string metadata written after lowbit.quantize.* (key -> value), e.g.
  // lowbit.recipe from the mixed-precision planner (quant/mixed_precision.h).
  std::vector<std::pair<std::string, std::string>> metadata;

  // Calibration for the block-by-block methods (--data, --samples, --seq-len, --seed).
  std::string calib_text;         // the text itself
  std::string calib_source;       // its file name, for errors and lowbit.quantize.calibration
  int calib_samples = 128;        // kDefaultCalibrationSamples (GPTQ's 128)
  int calib_seq_len = 0;          // <= 0: DefaultCalibrationSeqLen(config)
  uint64_t calib_seed = 0;        // kDefaultCalibrationSeed
  GptqOptions gptq;
  AwqOptions awq;
  SmoothQuantOptions smoothquant;
  int recon_rows = 2048;          // rows the per-linear reconstruction error is measured on
  // Runs the engine even for a method without stages ("rtn" then encodes
  // every block tensor inside it); tests use it to check the engine writes
  // plain rtn's bytes.
  bool force_layerwise = false;
};

struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;
  std::string source_type;
  std::string format;
  bool quantized = false;
  uint64_t bytes = 0;
  std::string rule;
  std::string fallback;
  double rel_rmse = 0;   // ||w - dequant(q)|| / ||w|| against the (pruned) f32 weights
  double sparsity = 0;   // fraction of exact zeros after pruning (0 when not pruned)
  double recon_error = -1;  // ||W X - Q(W) X||^2 / ||W X||^2 on calibration inputs (< 0: not measured)
};

struct QuantizeReport {
  std::string source;
  std::string output;
  std::string method;
  std::string format;       // what the user asked for
  std::string preset;       // "" for a plain format
  uint32_t file_type = 0;
  std::vector<TensorReport> tensors;
  uint64_t total_bytes = 0;        // tensor data
  uint64_t file_bytes = 0;         // whole output file
  int64_t parameters = 0;
  double bits_per_weight = 0;      // 8 * total_bytes / parameters
  int64_t quantized_parameters = 0;
  uint64_t quantized_bytes = 0;
  double quantized_bits_per_weight = 0;
  int fallbacks = 0;
  std::string prune;
  double pruned_sparsity = 0;      // zeros / weights over the pruned tensors
  uint64_t peak_rss_bytes = 0;     // getrusage ru_maxrss of the process at the end
  uint64_t largest_tensor_f32_bytes = 0;
  double seconds = 0;
  // Block-by-block methods only.
  bool calibrated = false;
  std::string calibration;         // "128 x 512 tokens, seed 0, from FILE"
  std::vector<std::string> stages;
  std::string base_method;
  LayerwiseTimings timings;
  std::vector<std::string> notes;  // the stages' log lines

  std::string ToJson() const;
  std::string ToTable() const;  // human-readable per-tensor table and totals
};

// Quantizes `model` into options.output. `importance` may be null (required
// by --method imatrix). Throws Error (and leaves no output file) on any problem.
QuantizeReport QuantizeModel(const Model& model, const QuantizeOptions& options, const ImportanceSource* importance);

// The recipe QuantizeModel would use, without writing anything.
// file_tensors: plan the tensors of the output file, which adds output.weight
// (a copy of token_embd.weight) for a tied GPT-2 source, as llama.cpp needs.
Recipe PlanModelRecipe(const Model& model, const RecipeOptions& options, bool file_tensors = false);

// Peak resident set size of this process so far (getrusage), in bytes.
uint64_t PeakRssBytes();

}  // namespace lowbit
