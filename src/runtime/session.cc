// Session: the FP32 forward pass over a batch of tokens with a KV cache, for
// the Llama family and GPT-2: embedding, every block (runtime/block.h), final
// norm and output head. n = tokens in this batch, d = dim, V = vocab.
#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/matmul.h"
#include "runtime/block.h"
#include "runtime/ops.h"

namespace lowbit {

namespace {

// Sort key of a weight in the order one token's forward pass reads it: block
// by block in BlockRole order, then the output head and anything else.
std::pair<int64_t, int> ForwardOrder(const std::string& name) {
  if (const auto block = ParseBlockTensor(name)) return {block->first, int(block->second)};
  return {std::numeric_limits<int64_t>::max(), 0};
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& options) : model_(model) {
  const ModelConfig& c = model.config;
  max_context_ = options.max_context > 0 ? options.max_context : c.context_length;
  if (c.arch == Arch::kGpt2 && max_context_ > c.context_length)
    Fail("{}: context {} is longer than GPT-2's {} learned positions", model.path, max_context_, c.context_length);
  max_batch_ = std::max(1, options.max_batch);
  reference_ = options.reference;
  pool_ = std::make_unique<ThreadPool>(options.threads);
  if (options.pack_weights && !reference_ && HasFastPackedKernel()) {
    // Every product weight of a packed type: not the embedding table (rows
    // are looked up, not multiplied) unless the head is tied to it. One
    // arena in the order the forward pass reads them (PackWeights).
    std::vector<const TensorView*> order;
    for (const TensorView& t : model.tensors()) {
      if (t.name == "position_embd.weight" || (t.name == "token_embd.weight" && !c.tied_output)) continue;
      if (PackedBytes(t) > 0) order.push_back(&t);
    }
    std::stable_sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) {
      return ForwardOrder(a->name) < ForwardOrder(b->name);
    });
    size_t total = 0;
    for (const TensorView* t : order) total += PackedBytes(*t);
    if (total > 0) packed_arena_ = MakeStreamBuffer<uint8_t>(total, "packed weights");
    size_t offset = 0;
    for (const TensorView* tp : order) {
      const TensorView& t = *tp;
      std::unique_ptr<PackedWeights> p = PackWeights(t, *pool_, packed_arena_.get() + offset);
      offset += PackedBytes(t);
      TensorView view = t;
      view.packed = p.get();
      packed_views_.emplace(t.name, view);
      packed_.push_back(std::move(p));
      // The row-major bytes are no longer read (a tied embedding still is):
      // drop their file pages from this process (they stay in the page cache).
      if (t.name != "token_embd.weight") ReleaseFilePages(t.data, t.bytes);
    }
  }
  weights_ = [this](const std::string& name) -> const TensorView& {
    const auto it = packed_views_.find(name);
    return it != packed_views_.end() ? it->second : model_.Get(name);
  };
  ResolveBlocks();
  const size_t kv = size_t(c.n_kv_heads) * size_t(c.head_dim);
  key_cache_.assign(size_t(c.n_layers) * size_t(max_context_) * kv, 0.0f);
  value_cache_.assign(key_cache_.size(), 0.0f);
}

const TensorView* Session::FindWeight(const std::string& name) const {
  const auto it = packed_views_.find(name);
  return it != packed_views_.end() ? &it->second : model_.Find(name);
}

void Session::ResolveBlocks() {
  const ModelConfig& c = model_.config;
  blocks_.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l)
    for (int r = 0; r < kBlockRoles; ++r)
      blocks_[size_t(l)].tensor[size_t(r)] = FindWeight(fmt::format("blk.{}.{}", l, BlockRoleName(BlockRole(r))));
  // Each step's next step: the block's following one, the next block's
  // first, or the output head after the last block. No spans unless every
  // weight of it is packed.
  const TensorView* head = FindWeight(c.tied_output ? "token_embd.weight" : "output.weight");
  for (int l = 0; l < c.n_layers; ++l)
    for (int step = 0; step < kProductSteps; ++step) {
      std::vector<const TensorView*> next;
      if (step + 1 < kProductSteps || l + 1 < c.n_layers) {
        const BlockTensors& b = blocks_[size_t(step + 1 < kProductSteps ? l : l + 1)];
        for (BlockRole r : ProductStepRoles(c.arch, (step + 1) % kProductSteps)) next.push_back(b.tensor[size_t(r)]);
      } else {
        next.push_back(head);
      }
      std::vector<const PackedWeights*> packed;
      for (const TensorView* t : next)
        if (t != nullptr && t->packed != nullptr) packed.push_back(static_cast<const PackedWeights*>(t->packed));
      if (!packed.empty() && packed.size() == next.size())
        blocks_[size_t(l)].next_spans[size_t(step)] = PrefetchSpansFor(packed, *pool_);
    }
}

Session::~Session() {
  // The pool goes first: a worker may still be reading the start of the next
  // product's weights (ThreadPool prefetch spans) in packed_arena_, which
  // members declared after pool_ would otherwise free before it stops.
  pool_.reset();
}

void Session::Eval(std::span<const int32_t> tokens, bool all_logits) {
  const int vocab = model_.config.vocab_size;
  if (tokens.empty()) Fail("Eval: no tokens");
  if (position_ + int64_t(tokens.size()) > max_context_)
    Fail("context overflow: {} tokens at position {} exceed the context of {}", tokens.size(), position_,
         max_context_);
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab) Fail("token id {} is out of range for a vocab of {}", t, vocab);
  // logits_ keeps its capacity from call to call: a generated token's 128 KB
  // of logits (vocab 32000) is not a fresh allocation (an mmap and its page
  // faults) every token.
  logits_.clear();
  for (size_t start = 0; start < tokens.size(); start += size_t(max_batch_)) {
    const size_t n = std::min(tokens.size() - start, size_t(max_batch_));
    const bool last = start + n == tokens.size();
    EvalBatch(tokens.subspan(start, n), all_logits, all_logits || last ? &logits_ : nullptr);
  }
}

void Session::EvalBatch(std::span<const int32_t> tokens, bool all_logits, std::vector<float>* out) {
  const ModelConfig& c = model_.config;
  const Model& m = model_;
  const int64_t n = int64_t(tokens.size()), d = c.dim, V = c.vocab_size;
  const int64_t kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  const WeightLookup& weights = weights_;
  std::vector<float> x(size_t(n * d));  // residual stream (n, d)
  EmbedTokens(c, weights, tokens, position_, x.data());
  if (on_hidden) on_hidden(-1, x);

  BlockContextArgs args;
  args.config = &c;
  args.weights = &weights;
  args.pool = pool_.get();
  args.pos0 = position_;
  args.reference = reference_;
  args.on_matmul_input = &on_matmul_input;
  args.scratch = &scratch_;
  args.cache_rows = max_context_;
  if (c.arch != Arch::kGpt2) {  // the batch's RoPE angles, once for all blocks
    rope_angles_.resize(size_t(n * c.head_dim));
    RopeAngles(position_, n, c.head_dim, c.rope_theta, rope_angles_.data());
    args.rope_angles = rope_angles_.data();
  }
  for (int l = 0; l < c.n_layers; ++l) {
    args.layer = l;
    args.tensors = &blocks_[size_t(l)];
    args.key_cache = &key_cache_[size_t(l) * size_t(max_context_) * size_t(kv_dim)];
    args.value_cache = &value_cache_[size_t(l) * size_t(max_context_) * size_t(kv_dim)];
    ForwardBlock(args, x.data(), n);
    if (on_hidden) on_hidden(l, x);
  }
  position_ += int(n);
  if (out == nullptr) return;

  // Final norm and output head, for every token or only the last.
  const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
  const float* last_x = &x[size_t(first * d)];
  std::vector<float> xn(size_t(rows * d));  // normed (rows, d)
  if (c.arch == Arch::kGpt2)
    LayerNorm(last_x, m.Get("output_norm.weight"), m.Get("output_norm.bias"), c.norm_eps, rows, d, xn.data());
  else
    RmsNorm(last_x, m.Get("output_norm.weight"), c.norm_eps, rows, d, xn.data());
  const size_t at = out->size();  // appended after earlier batches' logits
  out->resize(at + size_t(rows * V));
  const TensorView& head = weights_(c.tied_output ? "token_embd.weight" : "output.weight");
  if (on_matmul_input) on_matmul_input(head, xn.data(), rows);
  MatMul(head, xn.data(), rows, out->data() + at, *pool_, reference_);
}

}  // namespace lowbit
