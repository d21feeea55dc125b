// Recipes: which format every tensor of a model gets, decided before a byte
// is written. A recipe is planned from the tensor list, the model's shape and
// the user's options:
//   1. llama.cpp's eligibility rules: only 2-D tensors whose name ends in
//      "weight" are quantized; norms, biases, position embeddings and every
//      1-D tensor keep their source type.
//   2. The base: a lowbit format name ("q4_k", "int4_g128_asym": every
//      eligible tensor gets it) or a llama.cpp preset ("Q4_K_M": the preset's
//      base type plus llama.cpp's per-tensor mixing rules, kMixRules in
//      recipe.cc; --pure turns the mix off).
//   3. Overrides, strongest first: --keep REGEX (source precision), the
//      output/token-embedding types, --tensor-type REGEX=FORMAT (last wins).
//   4. Shape fallback: a row length that the chosen format's block does not
//      divide gets the first format of its fallback chain that fits
//      (ShapeFallbackChain; llama.cpp's chain for ggml types, narrower
//      groups / per-channel / wider ints for lowbit's own, f16 last), and the
//      fallback is recorded in the plan and the report.
// See docs/QUANTIZE.md for the rule table in prose.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/format.h"

namespace lowbit {

// A llama.cpp llama-quantize preset (tools/quantize QUANT_OPTIONS).
struct QuantPreset {
  std::string_view name;       // "Q4_K_M"
  std::string_view base;       // lowbit format name of the base type: "q4_k"
  uint32_t file_type;          // llama.cpp llama_ftype, written as general.file_type
  std::string_view summary;
};
std::span<const QuantPreset> AllPresets();
// Case-insensitive; aliases Q3_K/Q4_K/Q5_K mean the _M presets. nullptr if none.
const QuantPreset* FindPreset(std::string_view name);
std::string PresetNames();

// What the recipe needs to know about one source tensor.
struct SourceTensor {
  std::string name;
  std::vector<int64_t> shape;  // row-major
  const FormatInfo* type = nullptr;
};

// Model facts the mixing rules read.
struct RecipeModelInfo {
  int n_layers = 0;
  int n_heads = 1;
  int n_kv_heads = 1;
};

struct RecipeOptions {
  std::string format;                      // format or preset name
  bool pure = false;                       // no per-tensor mix
  std::vector<std::string> keep;           // regexes (std::regex_search), source precision
  std::vector<std::pair<std::string, std::string>> tensor_types;  // regex -> format name
  std::string output_tensor_type;          // "" = rules
  std::string token_embedding_type;        // "" = rules
  bool has_imatrix = false;                // some mixing rules depend on it
  // Exact tensor name -> format name, strongest of all (the mixed-precision
  // planner's per-tensor choice, quant/mixed_precision.h). Every name must be
  // a quantizable tensor; the shape fallback still applies.
  std::map<std::string, std::string> tensor_formats;
};

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  const FormatInfo* source = nullptr;
  const FormatInfo* format = nullptr;  // what is written
  bool weight = false;     // a weight the rules quantize (2-D, not a norm, not --keep): pruning applies
  bool quantize = false;   // false: copied from the source unchanged (norms, --keep, same type)
  std::string rule;        // why this format ("base", "mix: attn_v use_more_bits", "--tensor-type ...")
  std::string fallback;    // "" or "q4_k -> q5_0: row length 64 is not a multiple of 256"
  int64_t rows() const;
  int64_t row_length() const { return shape.empty() ? 1 : shape.back(); }
  int64_t elements() const;
  uint64_t bytes() const { return uint64_t(rows()) * format->RowBytes(row_length()); }
};

struct Recipe {
  const QuantPreset* preset = nullptr;  // null for a plain format
  const FormatInfo* base = nullptr;
  uint32_t file_type = 0;                // llama.cpp ftype (0 when not a ggml file)
  bool ggml_only = true;                 // every tensor in a type llama.cpp can load
  std::vector<TensorPlan> tensors;
  int fallbacks() const;
};

// Plans the recipe; throws Error for an unknown format/preset, a bad regex, a
// --keep/--tensor-type regex that matches no tensor, or an activation-only
// format.
Recipe PlanRecipe(const std::vector<SourceTensor>& tensors, const RecipeModelInfo& model,
                  const RecipeOptions& options);

// Formats tried, in order, when `format`'s block does not divide a row
// (excluding `format` itself; f16 always ends the chain).
std::vector<const FormatInfo*> ShapeFallbackChain(const FormatInfo& format);
// `format` if its block divides n, else the first of its chain that does;
// `reason` receives the explanation when a fallback was taken.
const FormatInfo& FitRowLength(const FormatInfo& format, int64_t n, std::string* reason);

// llama.cpp's use_more_bits(i, n): the first and last eighth of the layers and
// every third one between.
bool UseMoreBits(int i_layer, int n_layers);

}  // namespace lowbit
