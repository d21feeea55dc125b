// Model hyper-parameters, independent of the file format they came from.
#pragma once

#include <cstdint>
#include <map>
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

// Activation quantization of one matrix product, chosen at quantize time and
// read from the file's lowbit.activations.* metadata (docs/FORMATS.md, "W8A8
// and LLM.int8()"); the runtime then sends the product to kernels/w8a8.h.
enum class ActivationMode { kNone, kInt8Dynamic, kInt8Static, kLlmInt8 };
struct ActivationSpec {
  ActivationMode mode = ActivationMode::kNone;
  float scale = 0.0f;      // int8-static: the per-tensor activation scale
  float threshold = 6.0f;  // llm.int8: outlier threshold on |x|
};
// "none", "int8-dynamic", "int8-static", "llm.int8".
std::string_view ActivationModeName(ActivationMode mode);

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
  // Weight name -> how its product quantizes the activations (block matmul
  // weights of a W8A8 / LLM.int8() file); empty: float activations everywhere.
  ActivationMode activation_mode = ActivationMode::kNone;
  std::map<std::string, ActivationSpec> activations;

  // Throws Error(source + ": ...") if the numbers are inconsistent.
  void Validate(const std::string& source) const;
  std::string ToString() const;
};

}  // namespace lowbit
