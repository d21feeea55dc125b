// Block-by-block calibrated quantization (GPTQ, AWQ, SmoothQuant; issue 5).
//
// The calibration samples are embedded once; then for each block l in order:
//   1. a BlockContext holds the block's tensors in f32 (loaded from the
//      source on first use) and the residual stream entering the block for
//      every sample (n_samples * seq_len rows of dim floats);
//   2. the stages run in the order the method names them ("awq+gptq": AWQ
//      rescales, then GPTQ encodes). A stage may rescale weights and norms
//      (Weight() is mutable) and may set a tensor's final encoding;
//   3. every planned-quantized linear still without an encoding is encoded by
//      the base method (rtn, rtn-mse) in its planned format;
//   4. the block runs once more with the quantized weights (the runtime's own
//      kernels) to produce the next block's input, and each linear's
//      reconstruction error ||W X - Q(W) X||^2 / ||W X||^2 is measured on the
//      inputs it sees there (W: the stage-transformed f32 weights).
// Memory stays near one block's f32 tensors plus two copies of the
// calibration activations, never a second copy of the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format.h"
#include "model/config.h"

namespace lowbit {

class ThreadPool;

// Full input names of this block's products in true-sequential groups:
// Llama {q, k, v}, {o}, {gate, up}, {down}; GPT-2 {qkv}, {o}, {up}, {down}.
std::vector<std::vector<std::string>> TrueSequentialGroups(const ModelConfig& config, int layer);

using MatMulInputFn = std::function<void(const std::string& weight_name, const float* x, int64_t n)>;

class BlockContext {
 public:
  virtual ~BlockContext() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int layer() const = 0;
  virtual ThreadPool& pool() = 0;
  virtual const std::vector<std::vector<std::string>>& groups() const = 0;

  // Whether block tensor `name` (full name, "blk.3.attn_norm.weight") exists.
  virtual bool Has(const std::string& name) const = 0;
  virtual const std::vector<int64_t>& Shape(const std::string& name) const = 0;
  // Current f32 values of a block tensor (weights, norms, biases), row-major;
  // mutable so stages can rescale in place. Not to be changed after SetEncoded.
  virtual std::vector<float>& Weight(const std::string& name) = 0;
  // The format the recipe plans for a tensor (f32/f16/... when kept in float).
  virtual const FormatInfo& Format(const std::string& name) const = 0;
  // Whether the recipe quantizes this tensor (false for norms, biases, --keep).
  virtual bool Quantized(const std::string& name) const = 0;
  // Per-input-channel importance from --imatrix statistics, or null.
  virtual const float* Importance(const std::string& name) const = 0;

  // Runs the block over every calibration sample (positions 0 .. seq_len-1
  // each, one sample at a time) with the current weights: a tensor's encoding
  // where one is set, else its Weight(). on_input sees the input of every
  // product (x row-major (n, in), n = seq_len). stop_after: as in
  // runtime/block.h ("attn_output.weight" stops once o's input is seen). The
  // block's stored input activations are not changed.
  virtual void Forward(const MatMulInputFn& on_input, const char* stop_after = nullptr) = 0;

  // Sets a tensor's final bytes (rows * Format(name).RowBytes(n)); from then
  // on Forward uses them.
  virtual void SetEncoded(const std::string& name, std::vector<uint8_t> bytes) = 0;
  virtual bool Encoded(const std::string& name) const = 0;

  // A line for the method's log (stderr unless --json, and the JSON report).
  virtual void Note(std::string line) = 0;
};

class BlockStage {
 public:
  virtual ~BlockStage() = default;
  virtual std::string_view name() const = 0;
  virtual void ProcessBlock(BlockContext& block) = 0;
};

}  // namespace lowbit
