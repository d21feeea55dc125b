// Loads Karpathy's llama2.c checkpoints: the legacy export (7 int32 header,
// fp32 weights, negative vocab_size = separate classifier) and the version-1
// export (magic "ak42", version 1, 256-byte header). Weights are used in
// place from the memory map; tensors get their GGUF names.
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"

namespace lowbit {

namespace {

constexpr uint32_t kVersion1Magic = 0x616b3432;  // "ak42" little-endian
constexpr size_t kVersion1HeaderBytes = 256;

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

std::string FindTokenizer(const std::string& path, int vocab_size) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path).parent_path();
  for (const std::string& name : {fmt::format("tok{}.bin", vocab_size), std::string("tokenizer.bin")}) {
    const fs::path p = dir / name;
    if (fs::exists(p)) return p.string();
  }
  Fail("{}: no tokenizer found: expected tok{}.bin or tokenizer.bin beside it (or pass --tokenizer)", path,
       vocab_size);
}

}  // namespace

std::unique_ptr<Model> LoadLlama2cModel(const std::string& path, const std::string& tokenizer_path) {
  auto file = std::make_shared<MappedFile>(path);
  const uint8_t* base = file->data();
  const size_t size = file->size();
  if (size < sizeof(Llama2cHeader)) Fail("{}: truncated: {} bytes is too small for a llama2.c header", path, size);

  uint32_t magic;
  std::memcpy(&magic, base, 4);
  const bool v1 = magic == kVersion1Magic;
  Llama2cHeader h;
  bool shared_classifier;
  size_t offset;
  if (v1) {
    if (size < kVersion1HeaderBytes) Fail("{}: truncated: version-1 header needs 256 bytes", path);
    int32_t version;
    std::memcpy(&version, base + 4, 4);
    if (version != 1)
      Fail("{}: llama2.c export version {} is not supported (only fp32 version 1 and legacy)", path, version);
    std::memcpy(&h, base + 8, sizeof(h));
    shared_classifier = base[8 + sizeof(h)] != 0;
    offset = kVersion1HeaderBytes;
  } else {
    std::memcpy(&h, base, sizeof(h));
    shared_classifier = h.vocab_size > 0;
    // Negative means "separate classifier"; INT32_MIN cannot be negated and is rejected below.
    if (h.vocab_size < 0 && h.vocab_size != INT32_MIN) h.vocab_size = -h.vocab_size;
    offset = sizeof(h);
  }
  const int32_t fields[] = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len};
  for (int32_t f : fields)
    if (f <= 0 || f > (1 << 20))
      Fail("{}: not a llama2.c checkpoint (header field {} out of range; GGUF/safetensors are detected by "
           "magic/extension)",
           path, f);
  if (h.dim % h.n_heads != 0) Fail("{}: dim {} is not a multiple of n_heads {}", path, h.dim, h.n_heads);

  auto model = std::make_unique<Model>();
  model->path = path;
  model->source_format = "llama2c";
  model->KeepAlive(file);
  ModelConfig& c = model->config;
  c.arch = Arch::kLlama;
  c.dim = h.dim;
  c.ffn_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size;
  c.context_length = h.seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::kInterleaved;
  c.tied_output = shared_classifier;
  c.Validate(path);

  const int64_t d = c.dim, f = c.ffn_dim, v = c.vocab_size, L = c.n_layers;
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  // Claims a (shape) f32 tensor at the cursor; one per layer when per_layer.
  auto take = [&](const std::string& name, std::vector<int64_t> shape) {
    TensorView t;
    t.name = name;
    t.type = DType::kF32;
    t.shape = std::move(shape);
    t.bytes = size_t(t.NumElements()) * sizeof(float);
    if (offset > size || t.bytes > size - offset)
      Fail("{}: truncated: tensor '{}' needs bytes {}..{} but the file has {}", path, name, offset, offset + t.bytes,
           size);
    t.data = base + offset;
    offset += t.bytes;
    model->AddTensor(std::move(t));
  };
  auto layers = [&](const char* suffix, std::vector<int64_t> shape) {
    for (int64_t l = 0; l < L; ++l) take(fmt::format("blk.{}.{}", l, suffix), shape);
  };
  if (v1) {
    layers("attn_norm.weight", {d});
    layers("ffn_norm.weight", {d});
    take("output_norm.weight", {d});
    take("token_embd.weight", {v, d});
    layers("attn_q.weight", {q, d});
    layers("attn_k.weight", {kv, d});
    layers("attn_v.weight", {kv, d});
    layers("attn_output.weight", {d, q});
    layers("ffn_gate.weight", {f, d});
    layers("ffn_down.weight", {d, f});
    layers("ffn_up.weight", {f, d});
  } else {
    take("token_embd.weight", {v, d});
    layers("attn_norm.weight", {d});
    layers("attn_q.weight", {q, d});
    layers("attn_k.weight", {kv, d});
    layers("attn_v.weight", {kv, d});
    layers("attn_output.weight", {d, q});
    layers("ffn_norm.weight", {d});
    layers("ffn_gate.weight", {f, d});
    layers("ffn_down.weight", {d, f});
    layers("ffn_up.weight", {f, d});
    take("output_norm.weight", {d});
    // Precomputed RoPE tables (seq_len x head_dim/2, real then imaginary): unused, we compute RoPE.
    const size_t rope_bytes = size_t(c.context_length) * size_t(c.head_dim / 2) * sizeof(float) * 2;
    if (rope_bytes > size - offset) Fail("{}: truncated inside the RoPE tables", path);
    offset += rope_bytes;
  }
  if (!shared_classifier) take("output.weight", {v, d});
  if (offset != size && v1) Fail("{}: {} unexpected trailing bytes after the weights", path, size - offset);

  model->tokenizer = LoadLlama2cTokenizer(tokenizer_path.empty() ? FindTokenizer(path, c.vocab_size) : tokenizer_path,
                                          c.vocab_size);
  model->Validate();
  return model;
}

}  // namespace lowbit
