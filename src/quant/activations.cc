// Activation quantization options -> GGUF metadata. See quant/activations.h
// and docs/FORMATS.md ("W8A8 and LLM.int8()") for the keys.
//   Which products: the 2-D weights of the blocks ("blk.N.*.weight": q, k, v,
//   attention output, gate, up, down, GPT-2's fused qkv) planned as
//   int8_sym_channel or int8_sym_tensor. The output head and the token
//   embedding never get activation quantization (SmoothQuant and LLM.int8()
//   keep lm_head in float too); block weights that --keep / --tensor-type
//   moved to another format keep float activations.
//   int8-static: per tensor, scale = observer range T / 127 from the
//   `lowbit calibrate` statistics (calib/observers.h).
#include "quant/activations.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "model/model.h"
#include "quant/recipe.h"

#ifdef LOWBIT_QUANT_HAVE_CALIB
#include "calib/observers.h"
#include "calib/stats.h"
#endif

namespace lowbit {

namespace {

constexpr double kDefaultThreshold = 6.0;  // LLM.int8()'s outlier threshold

struct Mode {
  ActivationMode mode = ActivationMode::kNone;
  double threshold = kDefaultThreshold;
};

// A whole-string finite number, or false.
bool ParseNumber(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

Mode ParseMode(const std::string& text) {
  Mode m;
  if (text == "none" || text.empty()) return m;
  if (text == "int8-dynamic") {
    m.mode = ActivationMode::kInt8Dynamic;
  } else if (text == "int8-static") {
    m.mode = ActivationMode::kInt8Static;
  } else if (text == "llm.int8" || text.starts_with("llm.int8:")) {
    m.mode = ActivationMode::kLlmInt8;
    if (text.size() > 8 && (!ParseNumber(text.substr(9), &m.threshold) || m.threshold < 0 || m.threshold > 1e30))
      Fail("--activations {}: the LLM.int8() threshold must be a number >= 0 (llm.int8:6.0)", text);
  } else {
    Fail("--activations '{}': unknown mode (expected none, int8-dynamic, int8-static or llm.int8[:THRESHOLD])", text);
  }
  return m;
}

bool IsInt8PerRow(const FormatInfo* f) {
  return f != nullptr && (f->name == "int8_sym_channel" || f->name == "int8_sym_tensor");
}

bool IsBlockProduct(const TensorPlan& t) {
  return t.name.starts_with("blk.") && t.name.ends_with(".weight") && t.shape.size() == 2;
}

// The tensors whose products get quantized activations; throws when the
// weight format cannot work.
std::vector<const TensorPlan*> ActivationTensors(const std::string& mode, const Recipe& recipe) {
  if (!IsInt8PerRow(recipe.base))
    Fail(
        "--activations {} runs int8 x int8 products and needs int8 weights per output channel: use --format "
        "int8_sym_channel (or int8_sym_tensor), not {}",
        mode, recipe.base != nullptr ? recipe.base->name : "?");
  std::vector<const TensorPlan*> out;
  for (const TensorPlan& t : recipe.tensors)
    if (IsBlockProduct(t) && IsInt8PerRow(t.format)) out.push_back(&t);
  if (out.empty()) Fail("--activations {}: no block weight is planned as int8_sym_channel/int8_sym_tensor", mode);
  return out;
}

struct StaticSetup {
  std::string observer = "minmax";
  double param = 0;
};

StaticSetup ParseObserverOption(const std::string& text) {
  StaticSetup s;
  if (text.empty()) return s;
  const size_t colon = text.find(':');
  s.observer = text.substr(0, colon);
  if (colon != std::string::npos) {
    if (s.observer != "percentile" || !ParseNumber(text.substr(colon + 1), &s.param) || !(s.param > 0) ||
        s.param > 100)
      Fail("--act-observer '{}': only percentile takes a parameter, a percentage in (0, 100] (percentile:99.99)",
           text);
  }
  return s;
}

// One activation scale per tensor (T / 127), in the order of `tensors`.
std::vector<float> StaticScales(const ActivationOptions& options, const std::vector<const TensorPlan*>& tensors) {
#ifdef LOWBIT_QUANT_HAVE_CALIB
  const StaticSetup setup = ParseObserverOption(options.observer);
  const Observer observer = ParseObserver(setup.observer);
  const ActivationStats stats = ActivationStats::Load(options.stats);
  std::vector<float> scales;
  for (const TensorPlan* t : tensors) {
    const LinearInputStats* s = stats.Find(t->name);
    if (s == nullptr)
      Fail("{}: the activation statistics have no entry for '{}' (needed by --activations int8-static)",
           options.stats, t->name);
    if (s->channels != t->row_length())
      Fail("{}: statistics for '{}' have {} input channels, the tensor has rows of {}", options.stats, t->name,
           s->channels, t->row_length());
    const float range = ActivationRange(*s, observer, setup.param);
    if (!std::isfinite(range) || range < 0)
      Fail("{}: the {} range of '{}' is {}", options.stats, setup.observer, t->name, range);
    scales.push_back(range / 127.0f);
  }
  return scales;
#else
  (void)tensors;
  Fail("--activations int8-static: this build has no calibration library (src/calib) to read {}", options.stats);
#endif
}

}  // namespace

void CheckActivationOptions(const ActivationOptions& options, const Model&, const Recipe& recipe) {
  const Mode m = ParseMode(options.mode);
  const bool is_static = m.mode == ActivationMode::kInt8Static;
  if (!is_static && !options.stats.empty())
    Fail("--act-stats is only used by --activations int8-static (got --activations {})", options.mode);
  if (!is_static && !options.observer.empty())
    Fail("--act-observer is only used by --activations int8-static (got --activations {})", options.mode);
  if (m.mode == ActivationMode::kNone) return;
  const std::vector<const TensorPlan*> tensors = ActivationTensors(options.mode, recipe);
  if (is_static) {
    if (options.stats.empty())
      Fail("--activations int8-static needs calibration statistics: --act-stats STATS (from lowbit calibrate)");
    StaticScales(options, tensors);  // every tensor has a range: fail before writing
  }
}

void WriteActivationMetadata(const ActivationOptions& options, const Model&, const Recipe& recipe,
                             GgufWriter& writer) {
  const Mode m = ParseMode(options.mode);
  if (m.mode == ActivationMode::kNone) return;
  const std::vector<const TensorPlan*> tensors = ActivationTensors(options.mode, recipe);
  std::vector<std::string> names;
  for (const TensorPlan* t : tensors) names.push_back(t->name);
  writer.SetString("lowbit.activations.mode", std::string(ActivationModeName(m.mode)));
  writer.Set("lowbit.activations.tensors", GgufStringArray(names));
  if (m.mode == ActivationMode::kLlmInt8) writer.SetFloat32("lowbit.activations.threshold", float(m.threshold));
  if (m.mode == ActivationMode::kInt8Static) {
    std::vector<GgufValue> scales;
    for (float s : StaticScales(options, tensors)) scales.push_back(GgufFloat(GgufType::kFloat32, s));
    writer.Set("lowbit.activations.scales", GgufArray(GgufType::kFloat32, std::move(scales)));
    writer.SetString("lowbit.activations.observer", options.observer.empty() ? "minmax" : options.observer);
  }
}

}  // namespace lowbit
