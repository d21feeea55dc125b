// ForwardBlock: the readable FP32 forward pass of one Llama-family or GPT-2
// block. Shapes are written beside every buffer: n = tokens in this batch,
// d = dim, q = n_heads * head_dim, kv = n_kv_heads * head_dim, f = ffn_dim.
#include "runtime/block.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/format.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/packed.h"
#include "kernels/w8a8.h"
#include "model/model.h"
#include "runtime/ops.h"

namespace lowbit {

namespace {

ActQuantParams ActQuantFor(const ActivationSpec& spec) {
  ActQuantParams p;
  p.kind = spec.mode == ActivationMode::kInt8Static ? ActQuantKind::kInt8Static
           : spec.mode == ActivationMode::kLlmInt8  ? ActQuantKind::kLlmInt8
                                                    : ActQuantKind::kInt8Dynamic;
  p.scale = spec.scale;
  p.threshold = spec.threshold;
  return p;
}

}  // namespace

WeightLookup ModelWeights(const Model& model) {
  return [&model](const std::string& name) -> const TensorView& { return model.Get(name); };
}

void EmbedTokens(const ModelConfig& c, const WeightLookup& get, std::span<const int32_t> tokens, int pos0, float* x) {
  const int64_t n = int64_t(tokens.size()), d = c.dim;
  const TensorView& embd = get("token_embd.weight");
  for (int64_t t = 0; t < n; ++t) DequantizeRows(embd, tokens[size_t(t)], 1, &x[t * d]);
  if (c.arch == Arch::kGpt2) {
    const TensorView& pe = get("position_embd.weight");
    std::vector<float> row(static_cast<size_t>(d));
    for (int64_t t = 0; t < n; ++t) {
      DequantizeRows(pe, pos0 + t, 1, row.data());
      for (int64_t i = 0; i < d; ++i) x[t * d + i] += row[size_t(i)];
    }
  }
}

namespace {

constexpr std::array<std::string_view, kBlockRoles> kRoleNames = {
    "attn_norm.weight", "attn_norm.bias",  "attn_q.weight",   "attn_k.weight",   "attn_v.weight",
    "attn_qkv.weight",  "attn_q.bias",     "attn_k.bias",     "attn_v.bias",     "attn_qkv.bias",
    "attn_output.weight", "attn_output.bias", "ffn_norm.weight", "ffn_norm.bias", "ffn_gate.weight",
    "ffn_up.weight",    "ffn_up.bias",     "ffn_down.weight", "ffn_down.bias"};

}  // namespace

std::string_view BlockRoleName(BlockRole role) { return kRoleNames[size_t(role)]; }

std::optional<std::pair<int, BlockRole>> ParseBlockTensor(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (!name.starts_with(kPrefix)) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  int layer = 0;
  size_t i = 0;
  for (; i < name.size() && i < 9 && name[i] >= '0' && name[i] <= '9'; ++i) layer = layer * 10 + (name[i] - '0');
  if (i == 0 || i >= name.size() || name[i] != '.') return std::nullopt;
  const std::string_view role = name.substr(i + 1);
  for (int r = 0; r < kBlockRoles; ++r)
    if (kRoleNames[size_t(r)] == role) return std::pair{layer, BlockRole(r)};
  return std::nullopt;
}

std::span<const BlockRole> ProductStepRoles(Arch arch, int step) {
  using R = BlockRole;
  static const std::array<std::vector<BlockRole>, kProductSteps> kLlama = {
      {{R::kQ, R::kK, R::kV}, {R::kAttnOut}, {R::kGate, R::kUp}, {R::kDown}}};
  static const std::array<std::vector<BlockRole>, kProductSteps> kGpt2 = {
      {{R::kQkv}, {R::kAttnOut}, {R::kUp}, {R::kDown}}};
  return (arch == Arch::kGpt2 ? kGpt2 : kLlama)[size_t(step)];
}

namespace {

// What every part of the block shares: the dimensions, the tensors, the
// scratch buffers, the norms and the products with their hook and
// stop_after. n = tokens in this batch, d = dim, q = n_heads * head_dim,
// kv = n_kv_heads * head_dim, f = ffn_dim.
struct BlockOps {
  BlockOps(const BlockContextArgs& args, int64_t n)
      : a(args), c(*args.config), get(*args.weights), n(n), gpt2(c.arch == Arch::kGpt2), d(c.dim), hd(c.head_dim),
        f(c.ffn_dim), q_dim(int64_t(c.n_heads) * hd), kv_dim(int64_t(c.n_kv_heads) * hd),
        scratch(args.scratch != nullptr ? *args.scratch : own_scratch) {}

  const TensorView& Tensor(BlockRole r) const {
    if (a.tensors != nullptr && a.tensors->tensor[size_t(r)] != nullptr) return *a.tensors->tensor[size_t(r)];
    return get(fmt::format("blk.{}.{}", a.layer, BlockRoleName(r)));
  }

  // A buffer of at least `size` floats from the scratch (its contents are
  // left from an earlier call: every user writes it whole before reading).
  float* Buffer(std::vector<float>& v, int64_t size) const {
    if (v.size() < size_t(size)) v.resize(size_t(size));
    return v.data();
  }

  void Norm(BlockRole weight, BlockRole bias, const float* in, float* dst) const {
    if (gpt2)
      LayerNorm(in, Tensor(weight), Tensor(bias), c.norm_eps, n, d, dst);
    else
      RmsNorm(in, Tensor(weight), c.norm_eps, n, d, dst);
  }

  // Product step `step` (ProductStepRoles): y_i (n, out_i) = in (n, in) @
  // W_i^T for its weights in order, through the fast kernels or the scalar
  // references. Hooks and stop_after run for each weight in turn; returns
  // true when the caller asked to stop after one of these inputs. When every
  // weight is packed (and no W8A8 spec or reference run), one fused call
  // (MatMulPackedMany: one activation quantization, one parallel loop) that
  // prefetches the next step's weights; otherwise one product each.
  bool MatMulStep(int step, std::initializer_list<float*> outputs, const float* in) const {
    const std::span<const BlockRole> roles = ProductStepRoles(c.arch, step);
    LOWBIT_CHECK(roles.size() == outputs.size() && roles.size() <= kMaxStepProducts);
    std::array<PackedProduct, kMaxStepProducts> packed;
    size_t num_packed = 0;
    for (size_t i = 0; i < roles.size(); ++i) {
      const TensorView& w = Tensor(roles[i]);
      if (a.on_matmul_input != nullptr && *a.on_matmul_input) (*a.on_matmul_input)(w, in, n);
      if (a.stop_after != nullptr && BlockRoleName(roles[i]) == a.stop_after) return true;
      if (w.packed != nullptr && !a.reference && c.activations.find(w.name) == c.activations.end())
        packed[num_packed++] = {static_cast<const PackedWeights*>(w.packed), outputs.begin()[i]};
    }
    if (num_packed == roles.size()) {
      MatMulPackedMany({packed.data(), num_packed}, in, n, *a.pool, NextSpans(step));
      return false;
    }
    for (size_t i = 0; i < roles.size(); ++i) Product(Tensor(roles[i]), in, outputs.begin()[i]);
    return false;
  }

  // What the threads read into their caches while they would wait after
  // step `step` (a Session's blocks only): after the attention inputs, the
  // key and value rows of this layer up to the batch's last, each KV head's
  // by the thread whose attention items read it (with one item per KV head
  // and a contiguous split of the items, as ParallelFor runs one token's);
  // then the next step's weights.
  std::span<const ThreadPool::PrefetchSpan> NextSpans(int step) const {
    if (a.tensors == nullptr) return {};
    const std::vector<ThreadPool::PrefetchSpan>& next = a.tensors->next_spans[size_t(step)];
    if (step != 0 || a.key_cache == nullptr || a.value_cache == nullptr) return next;
    std::vector<ThreadPool::PrefetchSpan>& spans = scratch.spans;
    spans.clear();
    const int threads = a.pool->size(), heads = c.n_kv_heads;
    const int64_t bytes = (a.pos0 + n) * hd * int64_t(sizeof(float));
    for (int h = 0; h < heads; ++h) {
      const int t = int(int64_t(h) * threads / heads);
      const int64_t at = h * a.cache_rows * hd;
      spans.push_back({t, a.key_cache + at, bytes});
      spans.push_back({t, a.value_cache + at, bytes});
    }
    spans.insert(spans.end(), next.begin(), next.end());
    return spans;
  }

  void Product(const TensorView& w, const float* in, float* y) const {
    // W8A8 / LLM.int8() files: the weight's activation spec picks the int8
    // kernels (a substituted weight of another type runs in float).
    const auto act = c.activations.find(w.name);
    if (act != c.activations.end() && IsW8A8Weight(w.type)) {
      MatMulW8A8(w, ActQuantFor(act->second), in, n, y, *a.pool, a.reference);
      return;
    }
    lowbit::MatMul(w, in, n, y, *a.pool, a.reference);
  }

  static constexpr size_t kMaxStepProducts = 3;
  const BlockContextArgs& a;
  const ModelConfig& c;
  const WeightLookup& get;
  const int64_t n;
  const bool gpt2;
  const int64_t d, hd, f, q_dim, kv_dim;
  BlockScratch own_scratch;  // when args.scratch is null
  BlockScratch& scratch;
};

}  // namespace

bool BlockAttention(const BlockContextArgs& args, const float* x, int64_t n, float* att_out) {
  const BlockOps ops(args, n);
  const ModelConfig& c = ops.c;
  ThreadPool& pool = *args.pool;
  const int pos0 = args.pos0;
  const int64_t d = ops.d, hd = ops.hd, q_dim = ops.q_dim, kv_dim = ops.kv_dim;
  const int group = c.n_heads / c.n_kv_heads;  // query heads per KV head
  float* kc = args.key_cache;    // (kv heads, cache_rows, head_dim)
  float* vc = args.value_cache;  // (kv heads, cache_rows, head_dim)
  const int64_t rows = args.cache_rows;
  LOWBIT_CHECK(pos0 + n <= rows);

  float* xn = ops.Buffer(ops.scratch.xn, n * d);     // normed input (n, d)
  float* q = ops.Buffer(ops.scratch.q, n * q_dim);   // queries (n, q)
  float* k = ops.Buffer(ops.scratch.k, n * kv_dim);  // keys (n, kv)
  float* v = ops.Buffer(ops.scratch.v, n * kv_dim);  // values (n, kv)
  const float att_scale = 1.0f / std::sqrt(float(hd));
  using R = BlockRole;

  ops.Norm(R::kAttnNorm, R::kAttnNormBias, x, xn);
  if (ops.gpt2) {
    // Fused QKV: (n, 3d) = xn @ Wqkv^T + b, split into q, k, v.
    float* qkv = ops.Buffer(ops.scratch.qkv, n * 3 * d);
    if (ops.MatMulStep(0, {qkv}, xn)) return true;
    AddBias(ops.Tensor(R::kQkvBias), n, qkv);
    for (int64_t t = 0; t < n; ++t) {
      const float* row = &qkv[t * 3 * d];
      std::copy(row, row + d, &q[t * d]);
      std::copy(row + d, row + 2 * d, &k[t * d]);
      std::copy(row + 2 * d, row + 3 * d, &v[t * d]);
    }
  } else {
    if (ops.MatMulStep(0, {q, k, v}, xn)) return true;
    if (c.qkv_bias) {
      AddBias(ops.Tensor(R::kQBias), n, q);
      AddBias(ops.Tensor(R::kKBias), n, k);
      AddBias(ops.Tensor(R::kVBias), n, v);
    }
    const float* angles = args.rope_angles;  // (n, head_dim)
    if (angles == nullptr) {
      float* own = ops.Buffer(ops.scratch.rope, n * hd);
      RopeAngles(pos0, n, int(hd), c.rope_theta, own);
      angles = own;
    }
    const bool interleaved = c.rope_style == RopeStyle::kInterleaved;
    for (int64_t t = 0; t < n; ++t) {
      RopeRotate(&q[t * q_dim], c.n_heads, int(hd), &angles[t * hd], interleaved);
      RopeRotate(&k[t * kv_dim], c.n_kv_heads, int(hd), &angles[t * hd], interleaved);
    }
  }
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const int64_t from = t * kv_dim + h * hd, to = (h * rows + pos0 + t) * hd;
      std::copy(k + from, k + from + hd, kc + to);
      std::copy(v + from, v + from + hd, vc + to);
    }

  // Causal attention: token t sees positions 0..pos0+t. With enough (token,
  // KV head) groups for the threads, one group per work item, its query
  // heads reading each key and value row once (AttendGroup); else one
  // (token, head) pair per item.
  const int per_item = n * c.n_kv_heads >= 2 * int64_t(pool.size()) ? group : 1;  // query heads per work item
  const int items_per_token = c.n_heads / per_item;
  pool.ParallelFor(n * items_per_token, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(size_t(per_item) * size_t(pos0 + n));  // (heads of an item, positions)
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / items_per_token;
      const int h = int(item % items_per_token) * per_item;  // the item's first query head
      const int kvh = h / group;
      const float* qh = &q[t * q_dim + h * hd];
      const int64_t len = pos0 + t + 1;
      float* o = &att_out[size_t(t * q_dim + h * hd)];
      if (per_item > 1) {
        (args.reference ? AttendGroupRef : AttendGroup)(qh, per_item, hd, kc + kvh * rows * hd, vc + kvh * rows * hd,
                                                        len, hd, hd, att_scale, scores.data(), o, hd);
      } else {
        (args.reference ? AttendHeadRef : AttendHead)(qh, kc + kvh * rows * hd, vc + kvh * rows * hd, len, hd, hd,
                                                      att_scale, scores.data(), o);
      }
    }
  });
  return false;
}

bool BlockAttentionOutput(const BlockContextArgs& args, const float* att_out, int64_t n, float* x) {
  const BlockOps ops(args, n);
  float* proj = ops.Buffer(ops.scratch.proj, n * ops.d);  // block output to add (n, d)
  if (ops.MatMulStep(1, {proj}, att_out)) return true;
  if (ops.gpt2) AddBias(ops.Tensor(BlockRole::kAttnOutBias), n, proj);
  for (int64_t i = 0; i < n * ops.d; ++i) x[i] += proj[i];
  return false;
}

bool BlockMlpHidden(const BlockContextArgs& args, const float* x, int64_t n, float* h) {
  const BlockOps ops(args, n);
  const int64_t hidden = n * ops.f;
  float* xn = ops.Buffer(ops.scratch.xn, n * ops.d);  // normed input (n, d)
  ops.Norm(BlockRole::kFfnNorm, BlockRole::kFfnNormBias, x, xn);
  if (ops.gpt2) {
    if (ops.MatMulStep(2, {h}, xn)) return true;
    AddBias(ops.Tensor(BlockRole::kUpBias), n, h);
    for (int64_t i = 0; i < hidden; ++i) h[i] = GeluTanh(h[i]);
  } else {
    // SwiGLU: h = silu(xn @ Wgate^T) * (xn @ Wup^T)
    float* gate = ops.Buffer(ops.scratch.gate, hidden);  // (n, f)
    if (ops.MatMulStep(2, {gate, h}, xn)) return true;
    (args.reference ? SwiGluInPlaceRef : SwiGluInPlace)(h, gate, hidden);
  }
  return false;
}

bool BlockMlpOutput(const BlockContextArgs& args, const float* h, int64_t n, float* x) {
  const BlockOps ops(args, n);
  float* proj = ops.Buffer(ops.scratch.proj, n * ops.d);  // block output to add (n, d)
  if (ops.MatMulStep(3, {proj}, h)) return true;
  if (ops.gpt2) AddBias(ops.Tensor(BlockRole::kDownBias), n, proj);
  for (int64_t i = 0; i < n * ops.d; ++i) x[i] += proj[i];
  return false;
}

void ForwardBlock(const BlockContextArgs& args, float* x, int64_t n) {
  const BlockOps ops(args, n);
  float* att_out = ops.Buffer(ops.scratch.att_out, n * ops.q_dim);  // attention output (n, q)
  float* h = ops.Buffer(ops.scratch.hidden, n * ops.f);             // MLP hidden (n, f)
  // The parts share ops.scratch (its own when args.scratch is null).
  BlockContextArgs part = args;
  part.scratch = &ops.scratch;
  if (BlockAttention(part, x, n, att_out)) return;
  if (BlockAttentionOutput(part, att_out, n, x)) return;
  if (BlockMlpHidden(part, x, n, h)) return;
  BlockMlpOutput(part, h, n, x);
}

}  // namespace lowbit
