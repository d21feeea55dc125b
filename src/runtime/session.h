// Inference session: a model plus its KV cache. Eval() runs the readable
// forward pass (runtime/session.cc) over a batch of new tokens at the current
// position; matrix products go through kernels/matmul.h (SIMD kernels, or the
// scalar references when SessionOptions::reference is set).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/thread_pool.h"
#include "core/stream_buffer.h"
#include "kernels/packed.h"
#include "model/model.h"
#include "runtime/block.h"

namespace lowbit {

struct SessionOptions {
  int threads = 0;        // <= 0: one per core
  int max_context = 0;    // <= 0: the model's context_length
  int max_batch = 512;    // tokens per forward call (longer inputs are split)
  bool reference = false; // run every matrix product on the scalar reference kernels
  // Repack Q4_0 / Q8_0 / Q4_K weights into the row-interleaved layout of
  // kernels/packed.h when this CPU has its SIMD kernels (not with reference).
  bool pack_weights = true;
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& options);
  ~Session();

  const Model& model() const { return model_; }
  int position() const { return position_; }
  int max_context() const { return max_context_; }
  void Reset() { position_ = 0; }

  // Appends `tokens` at positions [position(), position() + n) and computes
  // logits for the last token only, or for every token when all_logits.
  // Throws Error when the context would overflow or a token id is out of range.
  void Eval(std::span<const int32_t> tokens, bool all_logits);

  // Row-major logits of the last Eval: (n, vocab) with all_logits, else (1, vocab).
  std::span<const float> logits() const { return logits_; }

  // Optional hook for layer-by-layer checks: called after the embedding
  // (layer = -1) and after every block (layer = 0..L-1) with the residual
  // stream of the current batch, row-major (n, dim).
  std::function<void(int layer, std::span<const float> hidden)> on_hidden;

  // Optional hook for calibration: called before every matrix product with
  // the weight and its input activations x, row-major (n, in). The output
  // head is included ("output.weight" or the tied "token_embd.weight").
  std::function<void(const TensorView& weight, const float* x, int64_t n)> on_matmul_input;

 private:
  // One batch through every block; appends its logits (every token's, or the
  // last token's) to *out when out is not null.
  void EvalBatch(std::span<const int32_t> tokens, bool all_logits, std::vector<float>* out);
  // A weight by name, its packed view when there is one; null when missing.
  const TensorView* FindWeight(const std::string& name) const;
  // Fills blocks_ (after packing).
  void ResolveBlocks();

  const Model& model_;
  int max_context_;
  int max_batch_;
  bool reference_ = false;
  int position_ = 0;
  std::unique_ptr<ThreadPool> pool_;
  // Packed copies of the weights (kernels/packed.h) and views of them, by
  // tensor name; the lookup prefers these views over the model's own.
  std::vector<std::unique_ptr<PackedWeights>> packed_;
  StreamBuffer<uint8_t> packed_arena_;  // their bytes, in forward-pass order
  std::unordered_map<std::string, TensorView> packed_views_;
  WeightLookup weights_;
  std::vector<BlockTensors> blocks_;  // per layer: tensors resolved once, next steps' prefetch spans
  BlockScratch scratch_;
  std::vector<float> rope_angles_;  // (batch, head_dim) RoPE angles of the batch's positions
  std::vector<float> key_cache_;    // (layers, kv_heads, max_context, head_dim)
  std::vector<float> value_cache_;  // (layers, kv_heads, max_context, head_dim)
  std::vector<float> logits_;
};

}  // namespace lowbit
