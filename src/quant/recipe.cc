// Recipe planning: eligibility, presets with llama.cpp's mixing rules,
// overrides and the shape fallback (see recipe.h and docs/QUANTIZE.md).
#include "quant/recipe.h"

#include <algorithm>
#include <cctype>
#include <regex>

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr QuantPreset kPresets[] = {
    {"F32", "f32", 0, "32 bits, no quantization"},
    {"F16", "f16", 1, "16 bits"},
    {"BF16", "bf16", 32, "16 bits, bfloat16"},
    {"Q8_0", "q8_0", 7, "8.5 bpw"},
    {"Q4_0", "q4_0", 2, "4.5 bpw, output Q6_K"},
    {"Q4_1", "q4_1", 3, "5.0 bpw, output Q6_K"},
    {"Q5_0", "q5_0", 8, "5.5 bpw, output Q6_K"},
    {"Q5_1", "q5_1", 9, "6.0 bpw, output Q6_K"},
    {"Q2_K", "q2_k", 10, "Q2_K with attn_v/ffn_down/attn_output bumped to Q3_K/Q4_K"},
    {"Q2_K_S", "q2_k", 21, "Q2_K, first eighth of ffn_down Q4_K"},
    {"Q3_K_S", "q3_k", 11, "Q3_K everywhere, output Q6_K"},
    {"Q3_K_M", "q3_k", 12, "Q3_K, attn_v/ffn_down/attn_output Q4_K/Q5_K"},
    {"Q3_K_L", "q3_k", 13, "Q3_K, attn_v/ffn_down/attn_output Q5_K"},
    {"Q4_K_S", "q4_k", 14, "Q4_K, first 4 attn_v and first eighth of ffn_down Q5_K"},
    {"Q4_K_M", "q4_k", 15, "Q4_K, half of attn_v/ffn_down (use_more_bits) Q6_K"},
    {"Q5_K_S", "q5_k", 16, "Q5_K everywhere, output Q6_K"},
    {"Q5_K_M", "q5_k", 17, "Q5_K, half of attn_v/ffn_down (use_more_bits) Q6_K"},
    {"Q6_K", "q6_k", 18, "Q6_K everywhere"},
    {"IQ4_NL", "iq4_nl", 25, "IQ4_NL, attn_v Q5_K with GQA >= 4"},
    {"IQ4_XS", "iq4_xs", 30, "IQ4_XS, attn_v Q5_K with GQA >= 4"},
    {"TQ1_0", "tq1_0", 36, "ternary, token_embd Q4_K"},
    {"TQ2_0", "tq2_0", 37, "ternary, token_embd Q4_K"},
};

struct PresetAlias {
  std::string_view alias, preset;
};
constexpr PresetAlias kAliases[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// ---- The mixing rules (llama.cpp src/llama-quant.cpp, llama_tensor_get_type) ----
// Rules are tried top to bottom; the first whose preset list names the preset,
// whose tensor matches and whose condition holds sets the type. The order
// mirrors llama.cpp's if/else chains, so it matters within one tensor kind.
// Tensor kinds are found by substring, as llama.cpp does.
enum class Kind { kOutput, kTokenEmbd, kAttnV, kAttnQkv, kAttnOutput, kFfnDown, kOther };

enum class When {
  kAlways,
  kGqa4,          // n_heads / n_kv_heads >= 4
  kNotGqa4,
  kFirst2,        // i_layer < 2
  kFirst4,        // i_layer < 4
  kFirstEighth,   // i_layer < n_layers / 8
  kFirstSixteenth,
  kMoreBits,      // UseMoreBits(i_layer, n_layers)
  kFirstEighthNoImatrix,
  kFirstEighthWithImatrix,
  kNotBase,       // the base type is not this rule's type (output: Q8_0 stays Q8_0)
};

struct MixRule {
  std::string_view presets;  // space-separated preset names; "*" = every quantized preset
  Kind kind;
  When when;
  std::string_view type;
};

constexpr MixRule kMixRules[] = {
    // output.weight (and token_embd when the output is tied): Q6_K unless the base is Q8_0.
    // (An output row the base's block does not divide gets Q8_0: handled in MixType.)
    {"*", Kind::kOutput, When::kNotBase, "q6_k"},
    // token_embd keeps the base, except the ternary presets.
    {"TQ1_0 TQ2_0", Kind::kTokenEmbd, When::kAlways, "q4_k"},
    // attn_v (i = layer index, n = layers)
    {"Q2_K", Kind::kAttnV, When::kGqa4, "q4_k"},
    {"Q2_K", Kind::kAttnV, When::kNotGqa4, "q3_k"},
    {"Q2_K_S", Kind::kAttnV, When::kGqa4, "q4_k"},
    {"Q3_K_M", Kind::kAttnV, When::kFirst2, "q5_k"},
    {"Q3_K_M", Kind::kAttnV, When::kAlways, "q4_k"},
    {"Q3_K_L", Kind::kAttnV, When::kAlways, "q5_k"},
    {"IQ4_NL IQ4_XS", Kind::kAttnV, When::kGqa4, "q5_k"},
    {"Q4_K_M Q5_K_M", Kind::kAttnV, When::kMoreBits, "q6_k"},
    {"Q4_K_S", Kind::kAttnV, When::kFirst4, "q5_k"},
    // ffn_down
    {"Q2_K", Kind::kFfnDown, When::kAlways, "q3_k"},
    {"Q2_K_S", Kind::kFfnDown, When::kFirstEighth, "q4_k"},
    {"Q3_K_M", Kind::kFfnDown, When::kFirstSixteenth, "q5_k"},
    {"Q3_K_M", Kind::kFfnDown, When::kAlways, "q4_k"},
    {"Q3_K_L", Kind::kFfnDown, When::kAlways, "q5_k"},
    {"Q4_K_M", Kind::kFfnDown, When::kMoreBits, "q6_k"},
    {"IQ4_NL IQ4_XS", Kind::kFfnDown, When::kFirstEighthNoImatrix, "q5_k"},
    {"Q5_K_M", Kind::kFfnDown, When::kMoreBits, "q6_k"},
    {"Q4_K_S", Kind::kFfnDown, When::kFirstEighth, "q5_k"},
    {"Q4_0", Kind::kFfnDown, When::kFirstEighthWithImatrix, "q4_1"},
    {"Q5_0", Kind::kFfnDown, When::kFirstEighthWithImatrix, "q5_1"},
    // attn_output (dense models)
    {"Q2_K", Kind::kAttnOutput, When::kAlways, "q3_k"},
    {"Q3_K_M", Kind::kAttnOutput, When::kAlways, "q4_k"},
    {"Q3_K_L", Kind::kAttnOutput, When::kAlways, "q5_k"},
    // fused attn_qkv (GPT-2 style)
    {"Q3_K_M Q3_K_L", Kind::kAttnQkv, When::kAlways, "q4_k"},
    {"Q4_K_M", Kind::kAttnQkv, When::kAlways, "q5_k"},
    {"Q5_K_M", Kind::kAttnQkv, When::kAlways, "q6_k"},
};

std::string_view WhenName(When w) {
  switch (w) {
    case When::kAlways: return "always";
    case When::kGqa4: return "GQA >= 4";
    case When::kNotGqa4: return "GQA < 4";
    case When::kFirst2: return "layer < 2";
    case When::kFirst4: return "layer < 4";
    case When::kFirstEighth: return "layer < n/8";
    case When::kFirstSixteenth: return "layer < n/16";
    case When::kMoreBits: return "use_more_bits(layer)";
    case When::kFirstEighthNoImatrix: return "layer < n/8, no imatrix";
    case When::kFirstEighthWithImatrix: return "layer < n/8, with imatrix";
    case When::kNotBase: return "base is not the rule's type";
  }
  return "?";
}

bool PresetListed(std::string_view list, std::string_view preset) {
  if (list == "*") return true;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(' ', pos);
    if (end == std::string_view::npos) end = list.size();
    if (list.substr(pos, end - pos) == preset) return true;
    pos = end + 1;
  }
  return false;
}

Kind KindOf(const std::string& name, bool tied_output) {
  if (name == "output.weight") return Kind::kOutput;
  if (name == "token_embd.weight") return tied_output ? Kind::kOutput : Kind::kTokenEmbd;
  if (name.find("attn_v.weight") != std::string::npos) return Kind::kAttnV;
  if (name.find("attn_qkv.weight") != std::string::npos) return Kind::kAttnQkv;
  if (name.find("attn_output.weight") != std::string::npos) return Kind::kAttnOutput;
  if (name.find("ffn_down") != std::string::npos) return Kind::kFfnDown;
  return Kind::kOther;
}

int LayerIndex(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// llama.cpp's tensor_allows_quantization, for the tensors lowbit's models have.
bool Quantizable(const SourceTensor& t) {
  const std::string& n = t.name;
  if (t.shape.size() < 2) return false;
  if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
  if (n.find("_norm.weight") != std::string::npos) return false;
  if (n.find("ffn_gate_inp.weight") != std::string::npos) return false;
  if (n == "position_embd.weight" || n == "token_types.weight") return false;
  return true;
}

const FormatInfo& WeightFormat(const std::string& name, const std::string& what) {
  const FormatInfo* f = FindFormatByName(name);
  if (f == nullptr || !f->weight_format)
    Fail("unknown weight format '{}' for {} (known: {})", name, what, FormatNames(true));
  return *f;
}

std::regex CompileRegex(const std::string& pattern, const std::string& what) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    Fail("{} '{}': invalid regular expression: {}", what, pattern, e.what());
  }
}

const FormatInfo* ByName(std::string_view name) { return FindFormatByName(name); }

// llama.cpp's llama_ftype for a file whose matrices are all one ggml type
// (cosmetic: llama.cpp only prints it); 0 (ALL_F32) when there is none.
uint32_t PlainFileType(const FormatInfo& f) {
  if (!f.ggml_native) return 0;
  for (const QuantPreset& p : kPresets)
    if (p.base == f.name) return p.file_type;  // first preset of that base: the _S/plain one
  return 0;
}

}  // namespace

std::span<const QuantPreset> AllPresets() { return kPresets; }

const QuantPreset* FindPreset(std::string_view name) {
  for (const PresetAlias& a : kAliases)
    if (EqualsNoCase(a.alias, name)) name = a.preset;
  for (const QuantPreset& p : kPresets)
    if (EqualsNoCase(p.name, name)) return &p;
  return nullptr;
}

std::string PresetNames() {
  std::string s;
  for (const QuantPreset& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
  for (const PresetAlias& a : kAliases) s += fmt::format(", {} (= {})", a.alias, a.preset);
  return s;
}

bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int64_t TensorPlan::rows() const {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

int64_t TensorPlan::elements() const { return rows() * row_length(); }

int Recipe::fallbacks() const {
  return int(std::count_if(tensors.begin(), tensors.end(), [](const TensorPlan& t) { return !t.fallback.empty(); }));
}

std::vector<const FormatInfo*> ShapeFallbackChain(const FormatInfo& format) {
  std::vector<std::string> names;
  const std::string n(format.name);
  // llama.cpp's tensor_type_fallback for ggml types (then F16).
  if (n == "tq1_0" || n == "tq2_0") names = {"q4_0"};
  else if (n == "q2_k" || n == "q3_k" || n == "iq4_xs") names = {"iq4_nl"};
  else if (n == "q4_k") names = {"q5_0"};
  else if (n == "q5_k") names = {"q5_1"};
  else if (n == "q6_k") names = {"q8_0"};
  // lowbit's integer formats: intB_S_gG -> narrower groups -> intB_S_channel ->
  // the next wider integers per channel (int2/int3 blocks are 4/8 codes per byte group).
  if (n.starts_with("int") && n.size() > 4) {
    const int bits = n[3] - '0';
    const std::string sym = n.find("_asym") != std::string::npos ? "asym" : "sym";
    const bool tensor = n.ends_with("_tensor");
    if (const size_t g = n.find("_g"); g != std::string::npos) {
      const int group = std::stoi(n.substr(g + 2));
      for (int gg : {64, 32})
        if (gg < group) names.push_back(fmt::format("int{}_{}_g{}", bits, sym, gg));
    }
    const char* scope = tensor ? "tensor" : "channel";
    for (int b : {bits, 4, 8})
      if (b >= bits) names.push_back(fmt::format("int{}_{}_{}", b, sym, scope));
  }
  // bitsandbytes 4-bit and log4 (blocks of 64/32): int4 symmetric groups, then per channel.
  if (n == "nf4" || n == "fp4" || n == "nf4_dq" || n == "fp4_dq" || n == "log4")
    names = {"int4_sym_g32", "int4_sym_channel", "int8_sym_channel"};
  names.push_back("f16");
  std::vector<const FormatInfo*> chain;
  for (const std::string& name : names) {
    const FormatInfo* f = ByName(name);
    if (f != nullptr && f != &format && std::find(chain.begin(), chain.end(), f) == chain.end()) chain.push_back(f);
  }
  return chain;
}

const FormatInfo& FitRowLength(const FormatInfo& format, int64_t n, std::string* reason) {
  if (n % format.block_size == 0) return format;
  for (const FormatInfo* f : ShapeFallbackChain(format)) {
    if (n % f->block_size == 0) {
      if (reason)
        *reason = fmt::format("{} -> {}: row length {} is not a multiple of the {} block size {}", format.name,
                              f->name, n, format.name, format.block_size);
      return *f;
    }
  }
  LOWBIT_CHECK(false);  // f16 (block 1) ends every chain
}

Recipe PlanRecipe(const std::vector<SourceTensor>& tensors, const RecipeModelInfo& model,
                  const RecipeOptions& options) {
  Recipe recipe;
  recipe.preset = FindPreset(options.format);
  if (recipe.preset != nullptr) {
    recipe.base = ByName(recipe.preset->base);
    recipe.file_type = recipe.preset->file_type;
  } else {
    const FormatInfo* f = FindFormatByName(options.format);
    if (f == nullptr || !f->weight_format)
      Fail("unknown --format '{}': not a weight format ({}) nor a llama.cpp preset ({})", options.format,
           FormatNames(true), PresetNames());
    recipe.base = f;
  }
  LOWBIT_CHECK(recipe.base != nullptr);
  const std::string preset = recipe.preset ? std::string(recipe.preset->name) : "";
  const bool mix = recipe.preset != nullptr && !options.pure && recipe.base->block_size > 1;

  struct Override {
    std::regex re;
    std::string pattern;
    const FormatInfo* format;  // null for --keep
    int matches = 0;
  };
  std::vector<Override> keeps, types;
  size_t tensor_format_matches = 0;
  for (const std::string& k : options.keep) keeps.push_back({CompileRegex(k, "--keep"), k, nullptr});
  for (const auto& [re, name] : options.tensor_types)
    types.push_back({CompileRegex(re, "--tensor-type"), re,
                     &WeightFormat(name, fmt::format("--tensor-type {}={}", re, name))});
  const FormatInfo* output_type =
      options.output_tensor_type.empty() ? nullptr : &WeightFormat(options.output_tensor_type, "--output-tensor-type");
  const FormatInfo* embd_type = options.token_embedding_type.empty()
                                    ? nullptr
                                    : &WeightFormat(options.token_embedding_type, "--token-embedding-type");

  const bool tied = std::none_of(tensors.begin(), tensors.end(),
                                 [](const SourceTensor& t) { return t.name == "output.weight"; });
  const bool gqa4 = model.n_kv_heads > 0 && model.n_heads / model.n_kv_heads >= 4;
  const int n_layers = std::max(model.n_layers, 1);

  for (const SourceTensor& t : tensors) {
    TensorPlan p;
    p.name = t.name;
    p.shape = t.shape;
    p.source = t.type;
    LOWBIT_CHECK(p.source != nullptr);
    const int64_t n = t.shape.empty() ? 1 : t.shape.back();

    bool kept = false;
    for (Override& k : keeps)
      if (std::regex_search(t.name, k.re)) {
        ++k.matches;
        if (!kept) p.rule = fmt::format("--keep {}", k.pattern);
        kept = true;
      }
    // --tensor-type regexes count as matched against any eligible tensor.
    const FormatInfo* forced = nullptr;
    std::string forced_rule;
    if (Quantizable(t))
      for (Override& o : types)
        if (std::regex_search(t.name, o.re)) {
          ++o.matches;
          forced = o.format;  // the last match wins (llama.cpp PR #14572)
          forced_rule = fmt::format("--tensor-type {}={}", o.pattern, o.format->name);
        }

    if (kept || !Quantizable(t)) {
      p.format = p.source;
      if (!kept) p.rule = "not quantized (llama.cpp rules: 1-D, norm or embedding table)";
      recipe.tensors.push_back(std::move(p));
      continue;
    }

    p.weight = true;
    const FormatInfo* chosen = recipe.base;
    p.rule = recipe.preset ? fmt::format("preset {} base", preset) : "base format";
    if (mix) {
      const Kind kind = KindOf(t.name, tied);
      const int layer = std::max(LayerIndex(t.name), 0);
      if (kind == Kind::kOutput && n % recipe.base->block_size != 0) {
        chosen = ByName("q8_0");
        p.rule = fmt::format("mix {}: output rows of {} do not fit {} -> q8_0", preset, n, recipe.base->name);
      } else {
        for (const MixRule& r : kMixRules) {
          if (r.kind != kind || !PresetListed(r.presets, preset)) continue;
          bool ok = false;
          switch (r.when) {
            case When::kAlways: ok = true; break;
            case When::kGqa4: ok = gqa4; break;
            case When::kNotGqa4: ok = !gqa4; break;
            case When::kFirst2: ok = layer < 2; break;
            case When::kFirst4: ok = layer < 4; break;
            case When::kFirstEighth: ok = layer < n_layers / 8; break;
            case When::kFirstSixteenth: ok = layer < n_layers / 16; break;
            case When::kMoreBits: ok = UseMoreBits(layer, n_layers); break;
            case When::kFirstEighthNoImatrix: ok = layer < n_layers / 8 && !options.has_imatrix; break;
            case When::kFirstEighthWithImatrix: ok = layer < n_layers / 8 && options.has_imatrix; break;
            case When::kNotBase: ok = recipe.base->name != "q8_0"; break;
          }
          if (!ok) continue;
          chosen = ByName(r.type);
          p.rule = fmt::format("mix {}: {} -> {} ({})", preset, t.name, r.type, WhenName(r.when));
          break;
        }
      }
    }
    if (forced != nullptr) {
      chosen = forced;
      p.rule = forced_rule;
    }
    if (t.name == "output.weight" || (tied && t.name == "token_embd.weight" && embd_type == nullptr)) {
      if (output_type != nullptr) {
        chosen = output_type;
        p.rule = fmt::format("--output-tensor-type {}", output_type->name);
      }
    }
    if (t.name == "token_embd.weight" && embd_type != nullptr) {
      chosen = embd_type;
      p.rule = fmt::format("--token-embedding-type {}", embd_type->name);
    }
    if (auto it = options.tensor_formats.find(t.name); it != options.tensor_formats.end()) {
      chosen = ByName(it->second);
      if (chosen == nullptr || !chosen->weight_format)
        Fail("per-tensor format map: '{}' for tensor '{}' is not a weight format", it->second, t.name);
      p.rule = fmt::format("mixed precision: {}", chosen->name);
      ++tensor_format_matches;
    }
    LOWBIT_CHECK(chosen != nullptr);
    p.format = &FitRowLength(*chosen, n, &p.fallback);
    p.quantize = p.format != p.source;
    if (!p.quantize) p.rule += " (already in this type: copied)";
    recipe.tensors.push_back(std::move(p));
  }

  if (tensor_format_matches != options.tensor_formats.size())
    for (const auto& entry : options.tensor_formats) {
      const std::string& name = entry.first;  // not a structured binding: clang 14 cannot capture those
      if (std::none_of(recipe.tensors.begin(), recipe.tensors.end(),
                       [&](const TensorPlan& p) { return p.weight && p.name == name; }))
        Fail("per-tensor format map: '{}' is not a quantizable tensor of the model", name);
    }
  for (const Override& k : keeps)
    if (k.matches == 0) Fail("--keep '{}' matches no tensor of the model", k.pattern);
  for (const Override& o : types)
    if (o.matches == 0)
      Fail("--tensor-type '{}={}' matches no quantizable tensor of the model", o.pattern, o.format->name);
  if (output_type != nullptr && tied && embd_type != nullptr)
    Fail("--output-tensor-type: the model has no output.weight (the output is tied to token_embd.weight, "
         "which --token-embedding-type sets)");
  for (const TensorPlan& p : recipe.tensors)
    if (!p.format->ggml_native) recipe.ggml_only = false;
  if (recipe.preset == nullptr) recipe.file_type = PlainFileType(*recipe.base);
  return recipe;
}

}  // namespace lowbit
