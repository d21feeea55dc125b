// Loads a Hugging Face model folder: config.json, safetensors weights (one
// file or shards with model.safetensors.index.json) and tokenizer files.
// Architectures: llama, mistral, qwen2 (Llama family; HF keeps q/k in
// rotate-half order, so RoPE is RopeStyle::kHalf) and gpt2 (Conv1D weights
// stored (in, out), transposed here to (out, in) f32 copies). Tensors are
// renamed to the GGUF names the runtime uses; the rest stay in the mmap.
#include <charconv>
#include <filesystem>
#include <optional>
#include <span>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace lowbit {

namespace {

using Json = nlohmann::json;

// Typed access to config.json; every error names the file and the key. A key
// set to null counts as absent, as in transformers' config classes.
class ConfigReader {
 public:
  ConfigReader(const Json& json, std::string path) : json_(json), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  bool Has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  int Int(const char* key) const {
    if (!Has(key)) Fail("{}: missing \"{}\"", path_, key);
    const Json& v = json_[key];
    if (!v.is_number_integer()) Fail("{}: \"{}\" is {}, expected an integer", path_, key, v.dump());
    const int64_t i = v.get<int64_t>();
    if (i <= 0 || i > (int64_t(1) << 24)) Fail("{}: \"{}\" = {} is out of range", path_, key, i);
    return int(i);
  }
  int Int(const char* key, int fallback) const { return Has(key) ? Int(key) : fallback; }

  double Float(const char* key, double fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = json_[key];
    if (!v.is_number()) Fail("{}: \"{}\" is {}, expected a number", path_, key, v.dump());
    return v.get<double>();
  }

  bool Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = json_[key];
    if (!v.is_boolean()) Fail("{}: \"{}\" is {}, expected true or false", path_, key, v.dump());
    return v.get<bool>();
  }

  std::string String(const char* key, const std::string& fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = json_[key];
    if (!v.is_string()) Fail("{}: \"{}\" is {}, expected a string", path_, key, v.dump());
    return v.get<std::string>();
  }

  // Options that change the computation in ways the runtime does not implement.
  void RejectIfSet(const char* key) const {
    if (Has(key) && json_[key] != Json(false)) Fail("{}: \"{}\": {} is not supported", path_, key, json_[key].dump());
  }

 private:
  const Json& json_;
  std::string path_;
};

void ReadLlamaConfig(const ConfigReader& r, const std::string& model_type, ModelConfig* c) {
  c->arch = Arch::kLlama;
  c->rope_style = RopeStyle::kHalf;
  c->qkv_bias = model_type == "qwen2";
  c->dim = r.Int("hidden_size");
  c->n_layers = r.Int("num_hidden_layers");
  c->n_heads = r.Int("num_attention_heads");
  c->n_kv_heads = r.Int("num_key_value_heads", c->n_heads);
  if (!r.Has("head_dim") && c->dim % c->n_heads != 0)
    Fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", r.path(), c->dim, c->n_heads);
  c->head_dim = r.Int("head_dim", c->dim / c->n_heads);
  c->ffn_dim = r.Int("intermediate_size");
  c->vocab_size = r.Int("vocab_size");
  // Defaults are those of transformers' LlamaConfig / MistralConfig / Qwen2Config.
  const int default_context = model_type == "llama" ? 2048 : model_type == "mistral" ? 131072 : 32768;
  c->context_length = r.Int("max_position_embeddings", default_context);
  c->norm_eps = float(r.Float("rms_norm_eps", 1e-6));
  c->rope_theta = float(r.Float("rope_theta", 10000.0));
  c->tied_output = r.Bool("tie_word_embeddings", false);
  const std::string act = r.String("hidden_act", "silu");
  if (act != "silu") Fail("{}: hidden_act \"{}\" is not supported (only silu)", r.path(), act);
  r.RejectIfSet("rope_scaling");    // e.g. Llama 3.1's "llama3" frequency rescaling
  r.RejectIfSet("attention_bias");  // a bias on o_proj too; the runtime has q/k/v biases only
  r.RejectIfSet("mlp_bias");
  // Beyond the window these models attend to a band only; the runtime attends
  // to everything, which is identical up to the window, so the window becomes
  // the trained context (longer runs get the runtime's warning).
  const bool windowed = model_type == "mistral" || r.Bool("use_sliding_window", false);
  if (windowed && r.Has("sliding_window")) c->context_length = std::min(c->context_length, r.Int("sliding_window"));
}

void ReadGpt2Config(const ConfigReader& r, ModelConfig* c) {
  c->arch = Arch::kGpt2;
  c->dim = r.Int("n_embd");
  c->n_layers = r.Int("n_layer");
  c->n_heads = r.Int("n_head");
  c->n_kv_heads = c->n_heads;
  if (c->dim % c->n_heads != 0)
    Fail("{}: n_embd {} is not a multiple of n_head {}", r.path(), c->dim, c->n_heads);
  c->head_dim = c->dim / c->n_heads;
  c->ffn_dim = r.Int("n_inner", 4 * c->dim);
  c->vocab_size = r.Int("vocab_size", 50257);
  c->context_length = r.Has("n_positions") ? r.Int("n_positions") : r.Int("n_ctx", 1024);
  c->norm_eps = float(r.Float("layer_norm_epsilon", 1e-5));
  c->tied_output = r.Bool("tie_word_embeddings", true);
  // All three name the tanh approximation of GELU the runtime implements.
  const std::string act = r.String("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "gelu_fast")
    Fail("{}: activation_function \"{}\" is not supported (only gelu_new)", r.path(), act);
  if (!r.Bool("scale_attn_weights", true)) Fail("{}: scale_attn_weights false is not supported", r.path());
  r.RejectIfSet("scale_attn_by_inverse_layer_idx");
  r.RejectIfSet("add_cross_attention");
}

// Parses "<digits>.<rest>" into the block index and rest; nullopt if malformed.
std::optional<std::pair<int, std::string>> SplitLayer(std::string_view s) {
  int layer = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), layer);
  if (ec != std::errc() || end == s.data() || end == s.data() + s.size() || *end != '.') return std::nullopt;
  return std::pair{layer, std::string(end + 1, s.data() + s.size())};
}

struct Mapping {
  std::string name;        // GGUF name; empty: a buffer to skip
  bool transpose = false;  // GPT-2 Conv1D (in, out) -> (out, in)
};

struct NamePair {
  const char* hf;
  const char* gguf;
};

constexpr NamePair kLlamaTop[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
constexpr NamePair kLlamaBlock[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"self_attn.rotary_emb.inv_freq", ""},  // a cached buffer in older exports
};
constexpr NamePair kGpt2Top[] = {
    {"wte.weight", "token_embd.weight"},    {"wpe.weight", "position_embd.weight"},
    {"ln_f.weight", "output_norm.weight"},  {"ln_f.bias", "output_norm.bias"},
    {"lm_head.weight", "output.weight"},
};
// The second flag marks Conv1D weights.
constexpr std::tuple<const char*, const char*, bool> kGpt2Block[] = {
    {"ln_1.weight", "attn_norm.weight", false},     {"ln_1.bias", "attn_norm.bias", false},
    {"attn.c_attn.weight", "attn_qkv.weight", true}, {"attn.c_attn.bias", "attn_qkv.bias", false},
    {"attn.c_proj.weight", "attn_output.weight", true}, {"attn.c_proj.bias", "attn_output.bias", false},
    {"ln_2.weight", "ffn_norm.weight", false},      {"ln_2.bias", "ffn_norm.bias", false},
    {"mlp.c_fc.weight", "ffn_up.weight", true},     {"mlp.c_fc.bias", "ffn_up.bias", false},
    {"mlp.c_proj.weight", "ffn_down.weight", true}, {"mlp.c_proj.bias", "ffn_down.bias", false},
    {"attn.bias", "", false},                       // causal-mask buffers in older exports
    {"attn.masked_bias", "", false},
};

// The GGUF name for an HF tensor name, or nullopt if the architecture has no such tensor.
std::optional<Mapping> MapName(const std::string& hf, bool gpt2) {
  std::string_view s = hf;
  if (gpt2 && s.starts_with("transformer.")) s.remove_prefix(std::string_view("transformer.").size());
  const std::string_view layers = gpt2 ? "h." : "model.layers.";
  if (s.starts_with(layers)) {
    const auto split = SplitLayer(s.substr(layers.size()));
    if (!split) return std::nullopt;
    const auto& [layer, rest] = *split;
    auto block = [layer = layer](const char* t) { return *t ? fmt::format("blk.{}.{}", layer, t) : std::string(); };
    if (gpt2) {
      for (const auto& [from, to, conv] : kGpt2Block)
        if (rest == from) return Mapping{block(to), conv};
    } else {
      for (const NamePair& p : kLlamaBlock)
        if (rest == p.hf) return Mapping{block(p.gguf), false};
    }
    return std::nullopt;
  }
  for (const NamePair& p : gpt2 ? std::span<const NamePair>(kGpt2Top) : std::span<const NamePair>(kLlamaTop))
    if (s == p.hf) return Mapping{p.gguf, false};
  return std::nullopt;
}

// Conv1D weight (in, out) -> f32 (out, in).
std::vector<float> TransposeToF32(const TensorView& v) {
  const std::vector<float> src = ToF32(v);  // (in, out)
  const int64_t in = v.shape[0], out = v.shape[1];
  std::vector<float> dst(src.size());       // (out, in)
  for (int64_t i = 0; i < in; ++i)
    for (int64_t o = 0; o < out; ++o) dst[size_t(o * in + i)] = src[size_t(i * out + o)];
  return dst;
}

}  // namespace

std::unique_ptr<Model> LoadHfModel(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) Fail("{}: not a directory", dir);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path, ec)) Fail("{}: no config.json; not a Hugging Face model folder", dir);

  auto model = std::make_unique<Model>();
  model->path = dir;
  model->source_format = "safetensors";
  Json json;
  try {
    json = Json::parse(ReadFileToString(config_path));
  } catch (const Json::exception& e) {
    Fail("{}: not valid JSON: {}", config_path, e.what());
  }
  if (!json.is_object()) Fail("{}: expected a JSON object", config_path);
  const ConfigReader reader(json, config_path);
  const std::string model_type = reader.String("model_type", "");
  ModelConfig& c = model->config;
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2") {
    ReadLlamaConfig(reader, model_type, &c);
  } else if (model_type == "gpt2") {
    ReadGpt2Config(reader, &c);
  } else {
    Fail("{}: unsupported model_type \"{}\" (supported: llama, mistral, qwen2, gpt2)", config_path, model_type);
  }
  c.Validate(config_path);
  const bool gpt2 = c.arch == Arch::kGpt2;

  const SafetensorsCheckpoint ckpt(dir);
  for (const auto& file : ckpt.files()) model->KeepAlive(file);
  for (const std::string& hf : ckpt.TensorNames()) {
    const std::optional<Mapping> m = MapName(hf, gpt2);
    if (!m)
      Fail("{}: unexpected tensor '{}' for a {} model (another architecture, or quantized weights?)",
           ckpt.FileOf(hf).name(), hf, model_type);
    if (m->name.empty()) continue;
    if (m->name.starts_with("blk.")) {
      const int layer = SplitLayer(std::string_view(m->name).substr(4))->first;
      if (layer >= c.n_layers)
        Fail("{}: tensor '{}' belongs to block {}, but config.json has {} layers", ckpt.FileOf(hf).name(), hf, layer,
             c.n_layers);
    }
    // A tied head is the embedding; some exports still write a copy of it.
    if (m->name == "output.weight" && c.tied_output) continue;
    TensorView view = ckpt.View(hf);
    if (m->transpose) {
      if (view.shape.size() != 2)
        Fail("{}: tensor '{}' has shape {}, expected a 2-D Conv1D weight", ckpt.FileOf(hf).name(), hf,
             view.ShapeString());
      model->AddOwnedF32(m->name, {view.shape[1], view.shape[0]}, TransposeToF32(view));
    } else {
      view.name = m->name;
      model->AddTensor(std::move(view));
    }
  }
  if (!c.tied_output && model->Find("output.weight") == nullptr)
    Fail("{}: tie_word_embeddings is false but the checkpoint has no lm_head.weight", dir);

  model->tokenizer = LoadTokenizerFromHfFolder(dir);
  model->Validate();
  return model;
}

}  // namespace lowbit
