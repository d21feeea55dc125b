// ModelConfig validation and printing.
#include "model/config.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

std::string_view ArchName(Arch arch) { return arch == Arch::kLlama ? "llama" : "gpt2"; }

std::string_view ActivationModeName(ActivationMode mode) {
  switch (mode) {
    case ActivationMode::kNone:
      return "none";
    case ActivationMode::kInt8Dynamic:
      return "int8-dynamic";
    case ActivationMode::kInt8Static:
      return "int8-static";
    case ActivationMode::kLlmInt8:
      return "llm.int8";
  }
  return "?";
}

void ModelConfig::Validate(const std::string& source) const {
  auto positive = [&](const char* name, int v) {
    if (v <= 0 || v > (1 << 24)) Fail("{}: config {} = {} is out of range", source, name, v);
  };
  positive("dim", dim);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("n_kv_heads", n_kv_heads);
  positive("head_dim", head_dim);
  positive("ffn_dim", ffn_dim);
  positive("vocab_size", vocab_size);
  positive("context_length", context_length);
  if (n_heads % n_kv_heads != 0)
    Fail("{}: n_heads {} is not a multiple of n_kv_heads {}", source, n_heads, n_kv_heads);
  if (arch == Arch::kLlama && head_dim % 2 != 0) Fail("{}: head_dim {} must be even for RoPE", source, head_dim);
  if (arch == Arch::kGpt2 && (n_heads * head_dim != dim || n_kv_heads != n_heads))
    Fail("{}: GPT-2 needs n_heads * head_dim == dim and no grouped-query attention", source);
  if (!(norm_eps > 0.0f) || norm_eps > 1.0f) Fail("{}: norm epsilon {} is out of range", source, norm_eps);
  if (!(rope_theta > 0.0f)) Fail("{}: rope theta {} is out of range", source, rope_theta);
}

std::string ModelConfig::ToString() const {
  return fmt::format(
      "arch={} dim={} layers={} heads={} kv_heads={} head_dim={} ffn={} vocab={} ctx={} eps={:g} "
      "rope_theta={:g} rope={} tied_output={} qkv_bias={}",
      ArchName(arch), dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, context_length,
      norm_eps, rope_theta, rope_style == RopeStyle::kInterleaved ? "interleaved" : "half", tied_output,
      qkv_bias);
}

}  // namespace lowbit
