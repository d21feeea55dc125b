// Session: the readable FP32 forward pass over a batch of tokens with a KV
// cache, for the Llama family and GPT-2. Shapes are written beside every
// buffer: n = tokens in this batch, d = dim, q = n_heads * head_dim,
// kv = n_kv_heads * head_dim, f = ffn_dim, V = vocab.
#include "runtime/session.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "kernels/dot_ref.h"
#include "kernels/matmul.h"
#include "runtime/ops.h"

namespace lowbit {

Session::Session(const Model& model, const SessionOptions& options) : model_(model) {
  const ModelConfig& c = model.config;
  max_context_ = options.max_context > 0 ? options.max_context : c.context_length;
  if (c.arch == Arch::kGpt2 && max_context_ > c.context_length)
    Fail("{}: context {} is longer than GPT-2's {} learned positions", model.path, max_context_, c.context_length);
  max_batch_ = std::max(1, options.max_batch);
  reference_ = options.reference;
  pool_ = std::make_unique<ThreadPool>(options.threads);
  const size_t kv = size_t(c.n_kv_heads) * size_t(c.head_dim);
  key_cache_.assign(size_t(c.n_layers) * size_t(max_context_) * kv, 0.0f);
  value_cache_.assign(key_cache_.size(), 0.0f);
}

Session::~Session() = default;

void Session::Eval(std::span<const int32_t> tokens, bool all_logits) {
  const int vocab = model_.config.vocab_size;
  if (tokens.empty()) Fail("Eval: no tokens");
  if (position_ + int64_t(tokens.size()) > max_context_)
    Fail("context overflow: {} tokens at position {} exceed the context of {}", tokens.size(), position_,
         max_context_);
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab) Fail("token id {} is out of range for a vocab of {}", t, vocab);
  logits_.clear();
  std::vector<float> batch_logits;
  for (size_t start = 0; start < tokens.size(); start += size_t(max_batch_)) {
    const size_t n = std::min(tokens.size() - start, size_t(max_batch_));
    const bool last = start + n == tokens.size();
    if (!all_logits && !last) {
      EvalBatch(tokens.subspan(start, n), false, nullptr);
      continue;
    }
    EvalBatch(tokens.subspan(start, n), all_logits, &batch_logits);
    logits_.insert(logits_.end(), batch_logits.begin(), batch_logits.end());
  }
}

void Session::EvalBatch(std::span<const int32_t> tokens, bool all_logits, std::vector<float>* out) {
  const ModelConfig& c = model_.config;
  const Model& m = model_;
  const bool gpt2 = c.arch == Arch::kGpt2;
  const int64_t n = int64_t(tokens.size()), d = c.dim, hd = c.head_dim, f = c.ffn_dim, V = c.vocab_size;
  const int64_t q_dim = int64_t(c.n_heads) * hd, kv_dim = int64_t(c.n_kv_heads) * hd;
  const int group = c.n_heads / c.n_kv_heads;  // query heads per KV head
  const int pos0 = position_;
  ThreadPool& pool = *pool_;

  std::vector<float> x(size_t(n * d));            // residual stream (n, d)
  std::vector<float> xn(size_t(n * d));           // normed input (n, d)
  std::vector<float> q(size_t(n * q_dim));        // queries (n, q)
  std::vector<float> k(size_t(n * kv_dim));       // keys (n, kv)
  std::vector<float> v(size_t(n * kv_dim));       // values (n, kv)
  std::vector<float> att_out(size_t(n * q_dim));  // attention output (n, q)
  std::vector<float> proj(size_t(n * d));         // block output to add (n, d)
  std::vector<float> h1(size_t(n * f));           // MLP hidden (n, f)
  std::vector<float> h2(gpt2 ? 0 : size_t(n * f));  // SwiGLU up branch (n, f)

  // Embedding: x[t] = token_embd[token] (+ position_embd[pos] for GPT-2).
  const TensorView& embd = m.Get("token_embd.weight");
  for (int64_t t = 0; t < n; ++t) DequantizeRows(embd, tokens[size_t(t)], 1, &x[size_t(t * d)]);
  if (gpt2) {
    const TensorView& pe = m.Get("position_embd.weight");
    std::vector<float> row(static_cast<size_t>(d));
    for (int64_t t = 0; t < n; ++t) {
      DequantizeRows(pe, pos0 + t, 1, row.data());
      for (int64_t i = 0; i < d; ++i) x[size_t(t * d + i)] += row[size_t(i)];
    }
  }
  if (on_hidden) on_hidden(-1, x);

  auto layer_tensor = [&](int l, const char* name) -> const TensorView& {
    return m.Get(fmt::format("blk.{}.{}", l, name));
  };
  auto norm = [&](int l, const char* name, const float* in, float* dst) {
    const std::string w = fmt::format("blk.{}.{}.weight", l, name);
    if (gpt2)
      LayerNorm(in, m.Get(w), m.Get(fmt::format("blk.{}.{}.bias", l, name)), c.norm_eps, n, d, dst);
    else
      RmsNorm(in, m.Get(w), c.norm_eps, n, d, dst);
  };
  const float att_scale = 1.0f / std::sqrt(float(hd));
  // y (n, out) = x (n, in) @ W^T through the fast kernels, or the scalar references with --reference.
  auto matmul = [&](const TensorView& w, const float* in, int64_t rows, float* y) {
    if (on_matmul_input) on_matmul_input(w, in, rows);
    MatMul(w, in, rows, y, pool, reference_);
  };

  for (int l = 0; l < c.n_layers; ++l) {
    float* kc = &key_cache_[size_t(l) * size_t(max_context_) * size_t(kv_dim)];    // (ctx, kv)
    float* vc = &value_cache_[size_t(l) * size_t(max_context_) * size_t(kv_dim)];  // (ctx, kv)

    // ---- attention ----
    norm(l, "attn_norm", x.data(), xn.data());
    if (gpt2) {
      // Fused QKV: (n, 3d) = xn @ Wqkv^T + b, split into q, k, v.
      std::vector<float> qkv(size_t(n * 3 * d));
      matmul(layer_tensor(l, "attn_qkv.weight"), xn.data(), n, qkv.data());
      AddBias(layer_tensor(l, "attn_qkv.bias"), n, qkv.data());
      for (int64_t t = 0; t < n; ++t) {
        const float* row = &qkv[size_t(t * 3 * d)];
        std::copy(row, row + d, &q[size_t(t * d)]);
        std::copy(row + d, row + 2 * d, &k[size_t(t * d)]);
        std::copy(row + 2 * d, row + 3 * d, &v[size_t(t * d)]);
      }
    } else {
      matmul(layer_tensor(l, "attn_q.weight"), xn.data(), n, q.data());
      matmul(layer_tensor(l, "attn_k.weight"), xn.data(), n, k.data());
      matmul(layer_tensor(l, "attn_v.weight"), xn.data(), n, v.data());
      if (c.qkv_bias) {
        AddBias(layer_tensor(l, "attn_q.bias"), n, q.data());
        AddBias(layer_tensor(l, "attn_k.bias"), n, k.data());
        AddBias(layer_tensor(l, "attn_v.bias"), n, v.data());
      }
      const bool interleaved = c.rope_style == RopeStyle::kInterleaved;
      for (int64_t t = 0; t < n; ++t) {
        Rope(&q[size_t(t * q_dim)], c.n_heads, int(hd), pos0 + int(t), c.rope_theta, interleaved);
        Rope(&k[size_t(t * kv_dim)], c.n_kv_heads, int(hd), pos0 + int(t), c.rope_theta, interleaved);
      }
    }
    std::copy(k.begin(), k.end(), kc + size_t(pos0) * size_t(kv_dim));
    std::copy(v.begin(), v.end(), vc + size_t(pos0) * size_t(kv_dim));

    // Causal attention, one (token, head) pair per work item: token t sees positions 0..pos0+t.
    pool.ParallelFor(n * c.n_heads, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(size_t(pos0 + n));  // (positions)
      for (int64_t item = begin; item < end; ++item) {
        const int64_t t = item / c.n_heads;
        const int h = int(item % c.n_heads);
        const int kvh = h / group;
        const float* qh = &q[size_t(t * q_dim + h * hd)];
        const int64_t len = pos0 + t + 1;
        for (int64_t p = 0; p < len; ++p) {
          const float* kp = kc + size_t(p * kv_dim + kvh * hd);
          scores[size_t(p)] = DotF32Ref(qh, kp, hd) * att_scale;
        }
        Softmax(scores.data(), len);
        float* o = &att_out[size_t(t * q_dim + h * hd)];
        std::fill(o, o + hd, 0.0f);
        for (int64_t p = 0; p < len; ++p) {
          const float* vp = vc + size_t(p * kv_dim + kvh * hd);
          const float a = scores[size_t(p)];
          for (int64_t i = 0; i < hd; ++i) o[i] += a * vp[i];
        }
      }
    });
    matmul(layer_tensor(l, "attn_output.weight"), att_out.data(), n, proj.data());
    if (gpt2) AddBias(layer_tensor(l, "attn_output.bias"), n, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];

    // ---- MLP ----
    norm(l, "ffn_norm", x.data(), xn.data());
    matmul(layer_tensor(l, "ffn_up.weight"), xn.data(), n, h1.data());
    if (gpt2) {
      AddBias(layer_tensor(l, "ffn_up.bias"), n, h1.data());
      for (float& e : h1) e = GeluTanh(e);
    } else {
      // SwiGLU: h = silu(xn @ Wgate^T) * (xn @ Wup^T)
      matmul(layer_tensor(l, "ffn_gate.weight"), xn.data(), n, h2.data());
      for (size_t i = 0; i < h1.size(); ++i) h1[i] *= Silu(h2[i]);
    }
    matmul(layer_tensor(l, "ffn_down.weight"), h1.data(), n, proj.data());
    if (gpt2) AddBias(layer_tensor(l, "ffn_down.bias"), n, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
    if (on_hidden) on_hidden(l, x);
  }
  position_ += int(n);
  if (out == nullptr) return;

  // Final norm and output head, for every token or only the last.
  const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
  const float* last_x = &x[size_t(first * d)];
  if (gpt2)
    LayerNorm(last_x, m.Get("output_norm.weight"), m.Get("output_norm.bias"), c.norm_eps, rows, d, xn.data());
  else
    RmsNorm(last_x, m.Get("output_norm.weight"), c.norm_eps, rows, d, xn.data());
  out->resize(size_t(rows * V));
  const TensorView& head = c.tied_output ? m.Get("token_embd.weight") : m.Get("output.weight");
  matmul(head, xn.data(), rows, out->data());
}

}  // namespace lowbit
