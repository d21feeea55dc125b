// The GGUF metadata of a quantized model: what llama.cpp and lowbit need to
// load it. A GGUF source's keys are copied (minus the ones that describe its
// old quantization); llama2.c and Hugging Face sources get the "<arch>.*"
// hyper-parameters and tokenizer.ggml.* keys llama.cpp's converters write.
//
// RoPE order: GGUF "llama" files hold q/k rows in the interleaved order
// (pairs 2i, 2i+1). A Hugging Face Llama checkpoint (RopeStyle::kHalf) is
// therefore written as convert_hf_to_gguf does: attn_q/attn_k rows permuted
// per head (PermuteRowsForGguf), so the file runs the same in lowbit and in
// llama.cpp. Qwen2-style models (q/k/v biases) are written as arch "qwen2",
// which both run with half-split RoPE and unpermuted weights.
#pragma once

#include <cstdint>
#include <string>

#include "io/gguf_writer.h"
#include "model/model.h"

namespace lowbit {

struct OutputMetadata {
  std::string arch;          // general.architecture written
  bool permute_qk = false;   // attn_q/attn_k rows must go through PermuteRowsForGguf
};

// Sets every metadata key of the output from `model` (and its source file).
OutputMetadata WriteModelMetadata(const Model& model, GgufWriter& writer);

// Reorders the rows of a (n_heads * head_dim, n) q or k weight from HF's
// half-split order to GGUF's interleaved order: new row h*hd + 2i + j takes
// old row h*hd + j*hd/2 + i.
void PermuteRowsForGguf(float* w, int64_t n_heads, int64_t head_dim, int64_t n);

}  // namespace lowbit
