// A loaded model: its config, its tokenizer and a registry of named weight
// tensors. Tensor names are the GGUF names for every source format
// ("token_embd.weight", "blk.3.attn_q.weight", ...), so the runtime sees one
// naming scheme. Weights stay in the memory map when their layout already
// matches; converted ones (e.g. GPT-2 Conv1D transposes) are owned here.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "formats/format.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace lowbit {

class Model {
 public:
  ModelConfig config;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string path;           // what the user pointed at
  std::string source_format;  // "gguf", "safetensors", "llama2c"

  // Registers a view whose bytes are kept alive by some owner added with KeepAlive.
  void AddTensor(TensorView view);
  // Registers a tensor whose f32 data the model owns.
  void AddOwnedF32(std::string name, std::vector<int64_t> shape, std::vector<float> data);
  void KeepAlive(std::shared_ptr<void> owner) { owners_.push_back(std::move(owner)); }

  const TensorView* Find(const std::string& name) const;
  // Throws Error("<path>: missing tensor '<name>'").
  const TensorView& Get(const std::string& name) const;
  // Like Get, and checks the shape; throws naming file, tensor, expected and actual shapes.
  const TensorView& Get(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }

  // Checks every tensor the architecture needs exists with the right shape and
  // holds finite values; throws Error naming the first problem.
  void Validate() const;

 private:
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::vector<std::shared_ptr<void>> owners_;
};

// Opens any supported model: a GGUF file, a llama2.c checkpoint (tokenizer
// found beside it or given), or a Hugging Face folder. Throws Error naming the
// path and the problem.
std::unique_ptr<Model> LoadModel(const std::string& path, const std::string& tokenizer_path = "");

std::unique_ptr<Model> LoadGgufModel(const std::string& path);
std::unique_ptr<Model> LoadLlama2cModel(const std::string& path, const std::string& tokenizer_path);
std::unique_ptr<Model> LoadHfModel(const std::string& dir);

}  // namespace lowbit
