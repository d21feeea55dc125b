#include "quant/gguf_metadata.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace lowbit {

namespace {

bool DescribesOldQuantization(const std::string& key) {
  return key == "general.file_type" || key == "general.quantization_version" || key == "general.alignment" ||
         key.starts_with("quantize.");
}

void WriteHyperParameters(const ModelConfig& c, const std::string& a, GgufWriter& w) {
  w.SetUint32(a + ".context_length", uint32_t(c.context_length));
  w.SetUint32(a + ".embedding_length", uint32_t(c.dim));
  w.SetUint32(a + ".block_count", uint32_t(c.n_layers));
  w.SetUint32(a + ".feed_forward_length", uint32_t(c.ffn_dim));
  w.SetUint32(a + ".attention.head_count", uint32_t(c.n_heads));
  if (c.arch == Arch::kGpt2) {
    w.SetFloat32(a + ".attention.layer_norm_epsilon", c.norm_eps);
  } else {
    w.SetUint32(a + ".attention.head_count_kv", uint32_t(c.n_kv_heads));
    w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", c.norm_eps);
    w.SetFloat32(a + ".rope.freq_base", c.rope_theta);
    w.SetUint32(a + ".rope.dimension_count", uint32_t(c.head_dim));
    if (c.head_dim * c.n_heads != c.dim) {
      w.SetUint32(a + ".attention.key_length", uint32_t(c.head_dim));
      w.SetUint32(a + ".attention.value_length", uint32_t(c.head_dim));
    }
  }
  w.SetUint32(a + ".vocab_size", uint32_t(c.vocab_size));
}

// tokenizer.ggml.* as llama.cpp's converters write them for an SPM vocab
// (convert_llama_ggml_to_gguf / convert-llama2c-to-ggml: model "llama",
// tokens, scores, token_type, special ids).
void WriteSpmTokenizer(const SpmTokenizer& tok, GgufWriter& w) {
  const Vocab& v = tok.vocab();
  w.SetString("tokenizer.ggml.model", "llama");
  w.Set("tokenizer.ggml.tokens", GgufStringArray(v.tokens));
  std::vector<GgufValue> scores, types;
  for (int32_t i = 0; i < v.size(); ++i) {
    scores.push_back(GgufFloat(GgufType::kFloat32, v.score(i)));
    types.push_back(GgufInt(GgufType::kInt32, int64_t(v.type(i))));
  }
  w.Set("tokenizer.ggml.scores", GgufArray(GgufType::kFloat32, std::move(scores)));
  w.Set("tokenizer.ggml.token_type", GgufArray(GgufType::kInt32, std::move(types)));
  if (v.unk >= 0) w.SetUint32("tokenizer.ggml.unknown_token_id", uint32_t(v.unk));
  if (v.bos >= 0) w.SetUint32("tokenizer.ggml.bos_token_id", uint32_t(v.bos));
  if (v.eos >= 0) w.SetUint32("tokenizer.ggml.eos_token_id", uint32_t(v.eos));
  w.Set("tokenizer.ggml.add_bos_token", GgufBool(v.add_bos));
  w.Set("tokenizer.ggml.add_eos_token", GgufBool(v.add_eos));
  if (!tok.add_space_prefix()) w.Set("tokenizer.ggml.add_space_prefix", GgufBool(false));
}

// tokenizer.ggml.* as llama.cpp's convert_hf_to_gguf.py writes a GPT-2 style
// byte-level BPE vocab: model "gpt2", pre "gpt-2", tokens, token_type, merges
// in rank order, special ids.
void WriteBpeTokenizer(const BpeTokenizer& tok, GgufWriter& w) {
  const Vocab& v = tok.vocab();
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  w.Set("tokenizer.ggml.tokens", GgufStringArray(v.tokens));
  std::vector<GgufValue> types;
  for (int32_t i = 0; i < v.size(); ++i) types.push_back(GgufInt(GgufType::kInt32, int64_t(v.type(i))));
  w.Set("tokenizer.ggml.token_type", GgufArray(GgufType::kInt32, std::move(types)));
  w.Set("tokenizer.ggml.merges", GgufStringArray(tok.merge_lines()));
  if (v.bos >= 0) w.SetUint32("tokenizer.ggml.bos_token_id", uint32_t(v.bos));
  if (v.eos >= 0) w.SetUint32("tokenizer.ggml.eos_token_id", uint32_t(v.eos));
  if (v.unk >= 0) w.SetUint32("tokenizer.ggml.unknown_token_id", uint32_t(v.unk));
  w.Set("tokenizer.ggml.add_bos_token", GgufBool(v.add_bos));
}

}  // namespace

OutputMetadata WriteModelMetadata(const Model& model, GgufWriter& w) {
  OutputMetadata out;
  if (model.source_format == "gguf") {
    const GgufFile src(model.path);
    for (const auto& [key, value] : src.metadata())
      if (!DescribesOldQuantization(key)) w.Set(key, value);
    out.arch = src.GetString("general.architecture");
    return out;
  }

  const ModelConfig& c = model.config;
  if (c.arch == Arch::kGpt2)
    out.arch = "gpt2";
  else if (c.qkv_bias)
    out.arch = "qwen2";  // half-split RoPE in llama.cpp and lowbit; weights unpermuted
  else
    out.arch = "llama";
  if (c.qkv_bias && c.rope_style != RopeStyle::kHalf)
    Fail("{}: a model with q/k/v biases and interleaved RoPE has no GGUF architecture lowbit can write", model.path);
  out.permute_qk = out.arch == "llama" && c.rope_style == RopeStyle::kHalf;

  w.SetString("general.architecture", out.arch);
  w.SetString("general.name", std::filesystem::path(model.path).filename().string());
  WriteHyperParameters(c, out.arch, w);
  if (const auto* spm = dynamic_cast<const SpmTokenizer*>(model.tokenizer.get())) {
    WriteSpmTokenizer(*spm, w);
  } else if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(model.tokenizer.get())) {
    WriteBpeTokenizer(*bpe, w);
  } else {
    Fail("{}: its tokenizer cannot be written to GGUF", model.path);
  }
  return out;
}

void PermuteRowsForGguf(float* w, int64_t n_heads, int64_t head_dim, int64_t n) {
  std::vector<float> head(size_t(head_dim * n));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* base = w + h * head_dim * n;
    std::memcpy(head.data(), base, head.size() * sizeof(float));
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(base + (2 * i + j) * n, head.data() + (j * half + i) * n, size_t(n) * sizeof(float));
  }
}

}  // namespace lowbit
