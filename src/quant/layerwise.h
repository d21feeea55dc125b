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
//      inputs it sees there (W: the stage-transformed f32 weights). A stage
//      that quantizes group by group (GPTQ, ForwardGroup) has already run
//      most of that forward: the rest of it continues from where it stopped.
// Memory stays near one block's f32 tensors plus the calibration activations
// (and, with ForwardGroup, one part's output per sample: the MLP hidden
// state, ffn_dim / dim times their size), never a second copy of the model.
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

  // The input of true-sequential group g (groups()[g]) for a stage that
  // finishes the groups in order (GPTQ): on_input sees the group's one input
  // once per member present, one sample at a time as in Forward. Instead of
  // running the block from its input for every group, the block is resumed:
  // the parts before group g (runtime/block.h: attention, attention output,
  // MLP hidden, MLP output) run once over every sample, each with every
  // tensor it reads in its final form (its SetEncoded bytes, else the base
  // method's encoding, made now; a changed float tensor re-encoded), and keep
  // their outputs per sample; the last part's output is the block's output,
  // so the engine needs no forward of its own afterwards. Group g's members
  // are read as they are now. g must not decrease. Once a group past the
  // first two has been reached, the block's input is gone: Forward may not be
  // called again, and no tensor of an earlier group may change.
  virtual void ForwardGroup(size_t g, const MatMulInputFn& on_input) = 0;

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

// ---- The engine (layerwise.cc) and GPTQ as a stage (gptq_stage.cc) ----

namespace lowbit {

class Model;
class QuantMethod;
struct GptqOptions;
struct PruneSpec;
struct Recipe;

// A --method value split into block stages and a base method: stages first
// ("gptq", "awq", "smoothquant"; AWQ and SmoothQuant before GPTQ), then an
// optional base ("rtn", "rtn-mse", "imatrix", "hqq"; default rtn) that encodes
// whatever the stages leave unencoded and every tensor outside the blocks.
// "awq+gptq" = {awq, gptq} + rtn; "awq+rtn-mse" = {awq} + rtn-mse; "hqq" =
// {} + hqq (not calibrated: the plain streaming path).
struct MethodSpec {
  std::string name;                 // as given, canonical ("awq+gptq")
  std::vector<std::string> stages;  // in order
  std::string base = "rtn";
  bool calibrated() const { return !stages.empty(); }
};

// Throws Error naming the known parts for an unknown or misplaced part.
MethodSpec ParseMethodSpec(std::string_view method);
// "gptq, awq, smoothquant, ... and combinations such as awq+gptq" for help texts.
std::string MethodSpecHelp();

// Where the time of the block-by-block engine goes (seconds, summed over blocks).
struct LayerwiseTimings {
  double embed_s = 0;
  double load_s = 0;           // decoding the source's block tensors to f32
  double stage_forward_s = 0;  // the stages' Forward / ForwardGroup calls, less their hooks' own work
  double hessian_s = 0;        // GPTQ: accumulating H (ssyrk + adds)
  double cholesky_s = 0;       // GPTQ: dampening, Cholesky, inverse
  double sweep_s = 0;          // GPTQ: column sweep and lazy batch updates
  double gptq_forward_s = 0;   // GPTQ: its capture forwards, less the Hessian work
  double base_s = 0;           // the base method's encodings
  double final_forward_s = 0;  // the forward with quantized weights (next block's input), or the
                               // part of it ForwardGroup left
  double recon_s = 0;          // reconstruction-error products
  double stages_s = 0;         // every stage, end to end
  int gptq_damp_retries = 0;
  int gptq_dead_columns = 0;
  int gptq_linears = 0;
  int gptq_factorizations = 0;  // one per true-sequential group (its members share the factor)
};

// GPTQ as a block stage: per true-sequential group, ForwardGroup gives the
// group's input, from which H = 2/N sum x x^T is accumulated and factored
// once, then every quantized member is GptqQuantize'd into its planned format
// and SetEncoded. Timings are added to *timings (may be null).
std::unique_ptr<BlockStage> MakeGptqStage(const GptqOptions& options, LayerwiseTimings* timings);

// A block tensor as the engine leaves it.
struct LayerwiseTensor {
  std::vector<uint8_t> bytes;  // rows * Format.RowBytes(n), in the runtime's row order
  std::vector<float> weights;  // the f32 values encoded (stage-transformed, pruned), runtime order
  double recon_error = -1;     // ||W X - Q(W) X||^2 / ||W X||^2; < 0 when not a quantized linear
  int64_t zeros = 0;           // exact zeros left by pruning (0 when not pruned)
};

// The block-by-block engine (see the top of this file). Blocks run on demand:
// Take(name) of a blk.L tensor finishes every block up to L first, so the
// pipeline can stream tensors in file order while memory holds one block's
// f32 tensors, its finished results, and the calibration activations
// (samples * seq_len * dim floats, updated in place block after block).
class LayerwiseQuantizer {
 public:
  struct Args {
    const Model* model = nullptr;
    const Recipe* recipe = nullptr;
    std::vector<const float*> importance;  // per recipe tensor, or null
    const QuantMethod* base = nullptr;
    std::vector<std::unique_ptr<BlockStage>> stages;
    std::vector<std::vector<int32_t>> samples;  // token windows, all of one length
    const PruneSpec* prune = nullptr;           // may be null
    ThreadPool* pool = nullptr;
    int recon_rows = 2048;  // rows (over all samples, evenly spaced) the reconstruction error is measured on
    bool log = true;        // notes to stderr
    LayerwiseTimings* timings = nullptr;  // where the timings are added (null: kept inside, see timings())
  };
  explicit LayerwiseQuantizer(Args args);
  ~LayerwiseQuantizer();

  // The engine's result for a block tensor (runs the blocks up to its layer
  // first), or false when the block left it as in the source (a norm no stage
  // folded, an unpruned --keep tensor) and also for non-block tensors. Each
  // tensor is handed out once, then freed.
  bool Take(const std::string& name, LayerwiseTensor* out);

  LayerwiseTimings& timings();
  const std::vector<std::string>& notes() const;

  struct Impl;  // layerwise.cc

 private:
  std::unique_ptr<Impl> impl_;
};

// The layer of "blk.L.*", or -1.
int BlockLayer(std::string_view name);

}  // namespace lowbit
