// One transformer block's forward pass, shared by Session (over its KV cache)
// and by block-by-block calibrated quantization (quant/layerwise.h), which
// runs a single block over captured calibration activations with some of its
// weights replaced. Weights are found through a lookup, so a caller can
// substitute tensors (f32 overrides, freshly quantized bytes) without a copy
// of the model.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"

namespace lowbit {

class Model;

// Finds a tensor by its full GGUF name ("blk.3.attn_q.weight"); throws Error
// when it is missing.
using WeightLookup = std::function<const TensorView&(const std::string& name)>;
// Called before every matrix product with the weight and its input x, row-major (n, in).
using MatMulInputHook = std::function<void(const TensorView& weight, const float* x, int64_t n)>;

// The lookup of a model's own tensors (Model::Get).
WeightLookup ModelWeights(const Model& model);

// A block's tensors by role ("blk.<layer>.<role name>"), in the order one
// token's forward pass reads them. Session lays its packed weights out in
// this order, and each product prefetches the products of the next step.
enum class BlockRole : int {
  kAttnNorm, kAttnNormBias,
  kQ, kK, kV, kQkv, kQBias, kKBias, kVBias, kQkvBias,
  kAttnOut, kAttnOutBias,
  kFfnNorm, kFfnNormBias,
  kGate, kUp, kUpBias,
  kDown, kDownBias,
  kCount
};
inline constexpr int kBlockRoles = int(BlockRole::kCount);
std::string_view BlockRoleName(BlockRole role);  // "attn_q.weight"
// (layer, role) of "blk.<layer>.<role name>"; nullopt for any other name.
std::optional<std::pair<int, BlockRole>> ParseBlockTensor(std::string_view name);

// The product steps of a block (products in a step share their input):
// attention inputs (q, k, v or fused qkv), attention output, MLP inputs
// (gate and up, or GPT-2's up), MLP output.
inline constexpr int kProductSteps = 4;
std::span<const BlockRole> ProductStepRoles(Arch arch, int step);

// A Session's view of one block, resolved once instead of by name on every
// token: each role's tensor (null where the model has none) and, per product
// step, each thread's first bytes of the next step's packed weights (the
// next block's first step or the output head after the last), which
// MatMulPackedMany reads into the threads' caches while they would wait.
struct BlockTensors {
  std::array<const TensorView*, kBlockRoles> tensor{};
  std::array<std::vector<ThreadPool::PrefetchSpan>, kProductSteps> next_spans;
};

// Buffers a block's parts reuse from call to call (sized on first use).
struct BlockScratch {
  std::vector<float> xn, q, k, v, qkv, proj, gate, att_out, hidden;
  std::vector<ThreadPool::PrefetchSpan> spans;  // a product's prefetch spans
  std::vector<float> rope;                      // RoPE angles, when the caller gives none
};

struct BlockContextArgs {
  const ModelConfig* config = nullptr;
  const WeightLookup* weights = nullptr;
  ThreadPool* pool = nullptr;
  int layer = 0;
  int pos0 = 0;                // position of the first of the n tokens
  // RoPE angles (n, head_dim) of positions pos0 .. pos0 + n - 1 (RopeAngles),
  // which a Session computes once per forward pass; null: each block
  // computes them.
  const float* rope_angles = nullptr;
  // This layer's keys and values, (kv_heads, cache_rows, head_dim): each KV
  // head's rows are contiguous, so attention streams them and each thread
  // can prefetch the heads it attends with; cache_rows >= pos0 + n.
  float* key_cache = nullptr;
  float* value_cache = nullptr;
  int64_t cache_rows = 0;
  bool reference = false;      // scalar reference kernels for every product
  const MatMulInputHook* on_matmul_input = nullptr;  // may be null
  // This block's tensors resolved by the Session (null: look each up by
  // name through `weights` on every call, as layer-wise quantization does,
  // whose lookup tracks what each forward read).
  const BlockTensors* tensors = nullptr;
  BlockScratch* scratch = nullptr;  // null: the parts allocate their buffers
  // When set (e.g. "ffn_down.weight"), ForwardBlock returns right after the
  // hook has seen the input of blk.<layer>.<stop_after>; x is then left
  // partly updated and must be discarded. Saves the rest of the block when a
  // caller only needs the inputs of the first few products.
  const char* stop_after = nullptr;
};

// x (n, d): the residual stream entering block `layer`, updated in place to
// the stream leaving it. Keys and values of the n tokens are written into the
// caches at rows pos0 .. pos0 + n - 1; attention is causal over rows 0 .. pos0 + t.
void ForwardBlock(const BlockContextArgs& args, float* x, int64_t n);

// ForwardBlock in four parts, for block-by-block quantization, which resumes
// a block between them (keeping each part's output per sample) instead of
// running it again from its input. ForwardBlock(args, x, n) is exactly
//   BlockAttention(args, x, n, att);        // att (n, q) = attention of norm(x)'s q, k, v; caches written
//   BlockAttentionOutput(args, att, n, x);  // x += att @ Wo^T (+ bias)
//   BlockMlpHidden(args, x, n, h);          // h (n, f) = silu(norm(x) @ Wgate^T) * (norm(x) @ Wup^T),
//                                           //   GPT-2: gelu(norm(x) @ Wup^T + b)
//   BlockMlpOutput(args, h, n, x);          // x += h @ Wdown^T (+ bias)
// with q = n_heads * head_dim, f = ffn_dim. Each part calls on_matmul_input
// before its products and returns true when it stopped at stop_after (its
// output is then incomplete).
bool BlockAttention(const BlockContextArgs& args, const float* x, int64_t n, float* att_out);
bool BlockAttentionOutput(const BlockContextArgs& args, const float* att_out, int64_t n, float* x);
bool BlockMlpHidden(const BlockContextArgs& args, const float* x, int64_t n, float* h);
bool BlockMlpOutput(const BlockContextArgs& args, const float* h, int64_t n, float* x);

// x (n, d) = token embeddings of `tokens` (+ learned positions from pos0 for GPT-2).
void EmbedTokens(const ModelConfig& config, const WeightLookup& weights, std::span<const int32_t> tokens, int pos0,
                 float* x);

}  // namespace lowbit
