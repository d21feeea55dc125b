// Weight registry, shape validation and format detection for LoadModel.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lowbit {

void Model::AddTensor(TensorView view) {
  if (index_.count(view.name)) Fail("{}: duplicate tensor '{}'", path, view.name);
  index_[view.name] = tensors_.size();
  tensors_.push_back(std::move(view));
}

void Model::AddOwnedF32(std::string name, std::vector<int64_t> shape, std::vector<float> data) {
  auto owned = std::make_shared<std::vector<float>>(std::move(data));
  TensorView v;
  v.name = std::move(name);
  v.type = DType::kF32;
  v.shape = std::move(shape);
  v.data = owned->data();
  v.bytes = owned->size() * sizeof(float);
  LOWBIT_CHECK(int64_t(owned->size()) == v.NumElements());
  KeepAlive(owned);
  AddTensor(std::move(v));
}

const TensorView* Model::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& Model::Get(const std::string& name) const {
  const TensorView* v = Find(name);
  if (v == nullptr) Fail("{}: missing tensor '{}'", path, name);
  return *v;
}

const TensorView& Model::Get(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView& v = Get(name);
  if (v.shape != shape)
    Fail("{}: tensor '{}' has shape {}, expected ({})", path, name, v.ShapeString(), fmt::join(shape, ", "));
  return v;
}

void Model::Validate() const {
  const ModelConfig& c = config;
  c.Validate(path);
  if (!tokenizer) Fail("{}: no tokenizer", path);
  // Checkpoints often pad the embedding beyond the tokenizer (Qwen2: 151936 rows for ~151646 tokens).
  if (tokenizer->vocab_size() > c.vocab_size)
    Fail("{}: tokenizer has {} tokens but the model's embedding has only {} rows", path, tokenizer->vocab_size(),
         c.vocab_size);
  const int64_t d = c.dim, hd = c.head_dim, f = c.ffn_dim, v = c.vocab_size;
  const int64_t q = int64_t(c.n_heads) * hd, kv = int64_t(c.n_kv_heads) * hd;
  Get("token_embd.weight", {v, d});
  if (!c.tied_output) Get("output.weight", {v, d});
  Get("output_norm.weight", {d});
  const bool gpt2 = c.arch == Arch::kGpt2;
  if (gpt2) {
    Get("position_embd.weight", {c.context_length, d});
    Get("output_norm.bias", {d});
  }
  for (int l = 0; l < c.n_layers; ++l) {
    auto n = [l](const char* t) { return fmt::format("blk.{}.{}", l, t); };
    Get(n("attn_norm.weight"), {d});
    Get(n("ffn_norm.weight"), {d});
    Get(n("attn_output.weight"), {d, q});
    Get(n("ffn_up.weight"), {f, d});
    Get(n("ffn_down.weight"), {d, f});
    if (gpt2) {
      Get(n("attn_qkv.weight"), {3 * d, d});
      Get(n("attn_qkv.bias"), {3 * d});
      for (const char* b : {"attn_norm.bias", "ffn_norm.bias", "attn_output.bias", "ffn_down.bias"}) Get(n(b), {d});
      Get(n("ffn_up.bias"), {f});
    } else {
      Get(n("attn_q.weight"), {q, d});
      Get(n("attn_k.weight"), {kv, d});
      Get(n("attn_v.weight"), {kv, d});
      Get(n("ffn_gate.weight"), {f, d});
      if (c.qkv_bias) {
        Get(n("attn_q.bias"), {q});
        Get(n("attn_k.bias"), {kv});
        Get(n("attn_v.bias"), {kv});
      }
    }
  }
  // NaN/inf weights would silently poison every output; reject them by name.
  std::vector<float> buf;
  for (const TensorView& t : tensors_) {
    const int64_t n = t.RowLength(), rows = t.Rows();
    // Whole rows at a time, about 64K elements per step.
    const int64_t step = std::max<int64_t>(1, (int64_t(1) << 16) / n);
    buf.resize(size_t(std::min(rows, step) * n));
    for (int64_t r = 0; r < rows; r += step) {
      const int64_t m = std::min(step, rows - r);
      DequantizeRows(t, r, m, buf.data());
      for (int64_t i = 0; i < m * n; ++i)
        if (!std::isfinite(buf[size_t(i)]))
          Fail("{}: tensor '{}' holds a non-finite value ({}) at element {}", path, t.name, buf[size_t(i)],
               r * n + i);
    }
    ReleaseFilePages(t.data, t.bytes);  // so loading a large model does not keep every page resident
  }
}

std::unique_ptr<Model> LoadModel(const std::string& path, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) Fail("{}: no such file or directory", path);
  if (fs::is_directory(path, ec)) return LoadHfModel(path);
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) Fail("{}: cannot open", path);
    in.read(magic, 4);
    if (in.gcount() < 4) Fail("{}: file is too short to be a model ({} bytes)", path, in.gcount());
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return LoadGgufModel(path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".safetensors") return LoadHfModel(fs::path(path).parent_path().string());
  // llama2.c checkpoints have no magic in the legacy export; version-1 exports start with "ak42".
  return LoadLlama2cModel(path, tokenizer_path);
}

}  // namespace lowbit
