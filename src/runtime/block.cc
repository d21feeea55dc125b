// ForwardBlock: the readable FP32 forward pass of one Llama-family or GPT-2
// block. Shapes are written beside every buffer: n = tokens in this batch,
// d = dim, q = n_heads * head_dim, kv = n_kv_heads * head_dim, f = ffn_dim.
#include "runtime/block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

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

// What every part of the block shares: the dimensions, the weight lookup, the
// norms and the products with their hook and stop_after. n = tokens in this
// batch, d = dim, q = n_heads * head_dim, kv = n_kv_heads * head_dim, f = ffn_dim.
struct BlockOps {
  BlockOps(const BlockContextArgs& args, int64_t n)
      : a(args), c(*args.config), get(*args.weights), n(n), gpt2(c.arch == Arch::kGpt2), d(c.dim), hd(c.head_dim),
        f(c.ffn_dim), q_dim(int64_t(c.n_heads) * hd), kv_dim(int64_t(c.n_kv_heads) * hd) {}

  const TensorView& Tensor(const char* name) const { return get(fmt::format("blk.{}.{}", a.layer, name)); }

  void Norm(const char* name, const float* in, float* dst) const {
    const TensorView& w = get(fmt::format("blk.{}.{}.weight", a.layer, name));
    if (gpt2)
      LayerNorm(in, w, get(fmt::format("blk.{}.{}.bias", a.layer, name)), c.norm_eps, n, d, dst);
    else
      RmsNorm(in, w, c.norm_eps, n, d, dst);
  }

  // y (n, out) = x (n, in) @ W^T through the fast kernels, or the scalar
  // references; returns true when the caller asked to stop after this input.
  bool MatMul(const char* name, const float* in, float* y) const { return MatMulShared({{name, y}}, in); }

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

  // Products that share their input `in` (q/k/v, gate/up): hooks and
  // stop_after as for MatMul in turn, then, when every weight is packed (and
  // no W8A8 spec or reference run), one fused call (MatMulPackedMany: one
  // activation quantization, one parallel loop); otherwise MatMul each.
  bool MatMulShared(std::initializer_list<std::pair<const char*, float*>> products, const float* in) const {
    std::vector<PackedProduct> packed;
    for (const auto& [name, y] : products) {
      const TensorView& w = Tensor(name);
      if (a.on_matmul_input != nullptr && *a.on_matmul_input) (*a.on_matmul_input)(w, in, n);
      if (a.stop_after != nullptr && std::strcmp(a.stop_after, name) == 0) return true;
      if (w.packed != nullptr && !a.reference && c.activations.find(w.name) == c.activations.end())
        packed.push_back({static_cast<const PackedWeights*>(w.packed), y});
    }
    if (packed.size() == products.size()) {
      MatMulPackedMany(packed, in, n, *a.pool, NextPacked(products.begin()->first));
      return false;
    }
    for (const auto& [name, y] : products) Product(Tensor(name), in, y);
    return false;
  }

  // The packed weights of the products that follow `name`'s in the forward
  // pass (after ffn_down, the next block's attention inputs, or the output
  // head after the last block), for MatMulPackedMany to prefetch; empty
  // unless every one is packed or args.prefetch_next is off.
  std::vector<const PackedWeights*> NextPacked(std::string_view name) const {
    if (!a.prefetch_next) return {};
    std::vector<std::string> next;
    const auto in_layer = [&](int layer, std::initializer_list<const char*> names) {
      for (const char* m : names) next.push_back(fmt::format("blk.{}.{}", layer, m));
    };
    if (name == "attn_q.weight" || name == "attn_k.weight" || name == "attn_v.weight" || name == "attn_qkv.weight")
      in_layer(a.layer, {"attn_output.weight"});
    else if (name == "attn_output.weight" && gpt2)
      in_layer(a.layer, {"ffn_up.weight"});
    else if (name == "attn_output.weight")
      in_layer(a.layer, {"ffn_gate.weight", "ffn_up.weight"});
    else if (name == "ffn_gate.weight" || name == "ffn_up.weight")
      in_layer(a.layer, {"ffn_down.weight"});
    else if (name == "ffn_down.weight" && a.layer + 1 < c.n_layers && gpt2)
      in_layer(a.layer + 1, {"attn_qkv.weight"});
    else if (name == "ffn_down.weight" && a.layer + 1 < c.n_layers)
      in_layer(a.layer + 1, {"attn_q.weight", "attn_k.weight", "attn_v.weight"});
    else if (name == "ffn_down.weight")
      next.push_back(c.tied_output ? "token_embd.weight" : "output.weight");
    std::vector<const PackedWeights*> packed;
    for (const std::string& m : next) {
      const TensorView& w = get(m);
      if (w.packed == nullptr) return {};
      packed.push_back(static_cast<const PackedWeights*>(w.packed));
    }
    return packed;
  }

  const BlockContextArgs& a;
  const ModelConfig& c;
  const WeightLookup& get;
  const int64_t n;
  const bool gpt2;
  const int64_t d, hd, f, q_dim, kv_dim;
};

}  // namespace

bool BlockAttention(const BlockContextArgs& args, const float* x, int64_t n, float* att_out) {
  const BlockOps ops(args, n);
  const ModelConfig& c = ops.c;
  ThreadPool& pool = *args.pool;
  const int pos0 = args.pos0;
  const int64_t d = ops.d, hd = ops.hd, q_dim = ops.q_dim, kv_dim = ops.kv_dim;
  const int group = c.n_heads / c.n_kv_heads;  // query heads per KV head
  float* kc = args.key_cache;    // (ctx, kv)
  float* vc = args.value_cache;  // (ctx, kv)

  std::vector<float> xn(size_t(n * d));            // normed input (n, d)
  std::vector<float> q(size_t(n * q_dim));         // queries (n, q)
  std::vector<float> k(size_t(n * kv_dim));        // keys (n, kv)
  std::vector<float> v(size_t(n * kv_dim));        // values (n, kv)
  const float att_scale = 1.0f / std::sqrt(float(hd));

  ops.Norm("attn_norm", x, xn.data());
  if (ops.gpt2) {
    // Fused QKV: (n, 3d) = xn @ Wqkv^T + b, split into q, k, v.
    std::vector<float> qkv(size_t(n * 3 * d));
    if (ops.MatMul("attn_qkv.weight", xn.data(), qkv.data())) return true;
    AddBias(ops.Tensor("attn_qkv.bias"), n, qkv.data());
    for (int64_t t = 0; t < n; ++t) {
      const float* row = &qkv[size_t(t * 3 * d)];
      std::copy(row, row + d, &q[size_t(t * d)]);
      std::copy(row + d, row + 2 * d, &k[size_t(t * d)]);
      std::copy(row + 2 * d, row + 3 * d, &v[size_t(t * d)]);
    }
  } else {
    if (ops.MatMulShared({{"attn_q.weight", q.data()}, {"attn_k.weight", k.data()}, {"attn_v.weight", v.data()}},
                         xn.data()))
      return true;
    if (c.qkv_bias) {
      AddBias(ops.Tensor("attn_q.bias"), n, q.data());
      AddBias(ops.Tensor("attn_k.bias"), n, k.data());
      AddBias(ops.Tensor("attn_v.bias"), n, v.data());
    }
    const bool interleaved = c.rope_style == RopeStyle::kInterleaved;
    for (int64_t t = 0; t < n; ++t) {
      Rope(&q[size_t(t * q_dim)], c.n_heads, int(hd), pos0 + int(t), c.rope_theta, interleaved);
      Rope(&k[size_t(t * kv_dim)], c.n_kv_heads, int(hd), pos0 + int(t), c.rope_theta, interleaved);
    }
  }
  std::copy(k.begin(), k.end(), kc + size_t(pos0) * size_t(kv_dim));
  std::copy(v.begin(), v.end(), vc + size_t(pos0) * size_t(kv_dim));

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
      const float* qh = &q[size_t(t * q_dim + h * hd)];
      const int64_t len = pos0 + t + 1;
      float* o = &att_out[size_t(t * q_dim + h * hd)];
      if (per_item > 1) {
        (args.reference ? AttendGroupRef : AttendGroup)(qh, per_item, hd, kc + kvh * hd, vc + kvh * hd, len, kv_dim,
                                                        hd, att_scale, scores.data(), o, hd);
      } else {
        (args.reference ? AttendHeadRef : AttendHead)(qh, kc + kvh * hd, vc + kvh * hd, len, kv_dim, hd, att_scale,
                                                      scores.data(), o);
      }
    }
  });
  return false;
}

bool BlockAttentionOutput(const BlockContextArgs& args, const float* att_out, int64_t n, float* x) {
  const BlockOps ops(args, n);
  std::vector<float> proj(size_t(n * ops.d));  // block output to add (n, d)
  if (ops.MatMul("attn_output.weight", att_out, proj.data())) return true;
  if (ops.gpt2) AddBias(ops.Tensor("attn_output.bias"), n, proj.data());
  for (int64_t i = 0; i < n * ops.d; ++i) x[i] += proj[size_t(i)];
  return false;
}

bool BlockMlpHidden(const BlockContextArgs& args, const float* x, int64_t n, float* h) {
  const BlockOps ops(args, n);
  const size_t hidden = size_t(n * ops.f);
  std::vector<float> xn(size_t(n * ops.d));  // normed input (n, d)
  ops.Norm("ffn_norm", x, xn.data());
  if (ops.gpt2) {
    if (ops.MatMul("ffn_up.weight", xn.data(), h)) return true;
    AddBias(ops.Tensor("ffn_up.bias"), n, h);
    for (size_t i = 0; i < hidden; ++i) h[i] = GeluTanh(h[i]);
  } else {
    // SwiGLU: h = silu(xn @ Wgate^T) * (xn @ Wup^T)
    std::vector<float> gate(hidden);  // (n, f)
    if (ops.MatMulShared({{"ffn_gate.weight", gate.data()}, {"ffn_up.weight", h}}, xn.data())) return true;
    (args.reference ? SwiGluInPlaceRef : SwiGluInPlace)(h, gate.data(), int64_t(hidden));
  }
  return false;
}

bool BlockMlpOutput(const BlockContextArgs& args, const float* h, int64_t n, float* x) {
  const BlockOps ops(args, n);
  std::vector<float> proj(size_t(n * ops.d));  // block output to add (n, d)
  if (ops.MatMul("ffn_down.weight", h, proj.data())) return true;
  if (ops.gpt2) AddBias(ops.Tensor("ffn_down.bias"), n, proj.data());
  for (int64_t i = 0; i < n * ops.d; ++i) x[i] += proj[size_t(i)];
  return false;
}

void ForwardBlock(const BlockContextArgs& args, float* x, int64_t n) {
  const ModelConfig& c = *args.config;
  std::vector<float> att_out(size_t(n) * size_t(c.n_heads) * size_t(c.head_dim));  // attention output (n, q)
  if (BlockAttention(args, x, n, att_out.data())) return;
  if (BlockAttentionOutput(args, att_out.data(), n, x)) return;
  std::vector<float> h(size_t(n) * size_t(c.ffn_dim));  // MLP hidden (n, f)
  if (BlockMlpHidden(args, x, n, h.data())) return;
  BlockMlpOutput(args, h.data(), n, x);
}

}  // namespace lowbit
