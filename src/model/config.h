// Model hyper-parameters, independent of the file format they came from.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

enum class Arch { kLlama, kGpt2 };
std::string_view ArchName(Arch arch);

// How RoPE pairs up the dimensions of a head.
//  kInterleaved: pairs (2i, 2i+1) (llama2.c, and GGUF "llama" files, whose
//                converter permutes HF q/k weights into this order).
//  kHalf:        pairs (i, i + d/2), HF's rotate_half ("NeoX" style).
enum class RopeStyle { kInterleaved, kHalf };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int dim = 0;           // residual stream width (n_embd)
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;    // < n_heads means grouped-query attention
  int head_dim = 0;      // usually dim / n_heads
  int ffn_dim = 0;       // hidden width of the MLP
  int vocab_size = 0;
  int context_length = 0;  // trained context; longer contexts are allowed with a warning
  float norm_eps = 1e-5f;  // RMSNorm (Llama) or LayerNorm (GPT-2) epsilon
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  bool tied_output = false;  // output head shares token_embd.weight
  bool qkv_bias = false;     // Qwen2-style biases on q/k/v

  // Throws Error(source + ": ...") if the numbers are inconsistent.
  void Validate(const std::string& source) const;
  std::string ToString() const;
};

}  // namespace lowbit
