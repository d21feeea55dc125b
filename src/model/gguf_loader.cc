// Loads a GGUF model as llama.cpp writes it: hyper-parameters from
// "<arch>.*" keys, tensors by their GGUF names, tokenizer from
// "tokenizer.ggml.*". Architectures: llama (Llama, Mistral, SmolLM), qwen2, gpt2.
#include <cfloat>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "model/model.h"

namespace lowbit {

namespace {

// lowbit.activations.* (docs/FORMATS.md, "W8A8 and LLM.int8()"): which block
// products quantize their activations, and how. Checked here so a corrupt or
// hand-edited file fails at load, naming the key.
void ReadActivationSpecs(const GgufFile& file, Model* model) {
  const std::string& path = model->path;
  if (!file.Has("lowbit.activations.mode")) return;
  const std::string mode = file.GetString("lowbit.activations.mode");
  ActivationSpec base;
  if (mode == "int8-dynamic") {
    base.mode = ActivationMode::kInt8Dynamic;
  } else if (mode == "int8-static") {
    base.mode = ActivationMode::kInt8Static;
  } else if (mode == "llm.int8") {
    base.mode = ActivationMode::kLlmInt8;
    const double threshold = file.GetFloat("lowbit.activations.threshold");
    if (!(threshold >= 0 && threshold <= FLT_MAX))
      Fail("{}: lowbit.activations.threshold = {} is not a finite value >= 0", path, threshold);
    base.threshold = float(threshold);
  } else if (mode == "none") {
    return;
  } else {
    Fail("{}: unknown lowbit.activations.mode '{}' (expected int8-dynamic, int8-static or llm.int8)", path, mode);
  }
  const std::vector<std::string> names = file.GetStringArray("lowbit.activations.tensors");
  std::vector<double> scales;
  if (base.mode == ActivationMode::kInt8Static) {
    scales = file.GetFloatArray("lowbit.activations.scales");
    if (scales.size() != names.size())
      Fail("{}: lowbit.activations.scales has {} entries for {} tensors", path, scales.size(), names.size());
  }
  ModelConfig& c = model->config;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorView* t = model->Find(names[i]);
    if (t == nullptr) Fail("{}: lowbit.activations.tensors names '{}', which the file does not hold", path, names[i]);
    const std::string_view type = GetFormat(t->type).name;
    if (t->shape.size() != 2 || (type != "int8_sym_channel" && type != "int8_sym_tensor"))
      Fail("{}: '{}' has activation quantization but is a {} {} tensor (needs 2-D int8_sym_channel/int8_sym_tensor)",
           path, names[i], t->ShapeString(), type);
    ActivationSpec spec = base;
    if (!scales.empty()) {
      if (!(scales[i] >= 0 && scales[i] <= FLT_MAX))
        Fail("{}: lowbit.activations.scales[{}] = {} ('{}') is not a finite value >= 0", path, i, scales[i],
             names[i]);
      spec.scale = float(scales[i]);
    }
    if (!c.activations.emplace(names[i], spec).second)
      Fail("{}: lowbit.activations.tensors lists '{}' twice", path, names[i]);
  }
  c.activation_mode = base.mode;
}

}  // namespace

std::unique_ptr<Model> LoadGgufModel(const std::string& path) {
  auto file = std::make_shared<GgufFile>(path);
  auto model = std::make_unique<Model>();
  model->path = path;
  model->source_format = "gguf";
  model->KeepAlive(file);

  const std::string arch = file->GetString("general.architecture");
  ModelConfig& c = model->config;
  if (arch == "llama" || arch == "mistral") {
    c.arch = Arch::kLlama;
    c.rope_style = RopeStyle::kInterleaved;  // convert_hf_to_gguf permutes q/k into adjacent pairs
  } else if (arch == "qwen2") {
    c.arch = Arch::kLlama;
    c.rope_style = RopeStyle::kHalf;  // llama.cpp runs qwen2 with NeoX rope, weights unpermuted
    c.qkv_bias = true;
  } else if (arch == "gpt2") {
    c.arch = Arch::kGpt2;
  } else {
    Fail("{}: unsupported architecture '{}' (supported: llama, mistral, qwen2, gpt2)", path, arch);
  }
  auto key = [&](const char* k) { return fmt::format("{}.{}", arch, k); };
  auto get_int = [&](const char* k) {
    const int64_t v = file->GetInt(key(k));
    if (v <= 0 || v > (int64_t(1) << 24)) Fail("{}: metadata {} = {} is out of range", path, key(k), v);
    return int(v);
  };
  c.dim = get_int("embedding_length");
  c.n_layers = get_int("block_count");
  c.n_heads = get_int("attention.head_count");
  c.n_kv_heads = file->Has(key("attention.head_count_kv")) ? get_int("attention.head_count_kv") : c.n_heads;
  c.head_dim = file->Has(key("attention.key_length")) ? get_int("attention.key_length") : c.dim / c.n_heads;
  c.ffn_dim = get_int("feed_forward_length");
  c.context_length = get_int("context_length");
  if (c.arch == Arch::kGpt2) {
    c.norm_eps = float(file->GetFloat(key("attention.layer_norm_epsilon")));
  } else {
    c.norm_eps = float(file->GetFloat(key("attention.layer_norm_rms_epsilon")));
    c.rope_theta = float(file->GetFloat(key("rope.freq_base"), 10000.0));
    if (file->Has(key("rope.dimension_count")) && get_int("rope.dimension_count") != c.head_dim)
      Fail("{}: partial RoPE ({} = {}, head dim {}) is not supported", path, key("rope.dimension_count"),
           get_int("rope.dimension_count"), c.head_dim);
  }

  for (const GgufTensorInfo& info : file->tensors()) model->AddTensor(file->View(info));
  const TensorView& embd = model->Get("token_embd.weight");
  if (embd.shape.size() != 2) Fail("{}: token_embd.weight must be 2-D, has shape {}", path, embd.ShapeString());
  c.vocab_size = int(embd.shape[0]);
  c.tied_output = model->Find("output.weight") == nullptr;

  ReadActivationSpecs(*file, model.get());
  model->tokenizer = LoadTokenizerFromGguf(*file);
  model->Validate();
  return model;
}

}  // namespace lowbit
