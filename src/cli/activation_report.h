// What `lowbit run/ppl/kld` report about a W8A8 / LLM.int8() file
// (docs/FORMATS.md, "W8A8 and LLM.int8()"): the activation mode, and for
// LLM.int8() the fraction of input columns that ran in f32 (outliers) over
// every product of the command.
#pragma once

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/w8a8.h"
#include "model/model.h"

namespace lowbit::cli {

// {"mode", "threshold", "outlier_fraction", "outlier_columns", "columns"}, or
// null for a model without activation quantization.
inline nlohmann::json ActivationsJson(const Model& model) {
  const ModelConfig& c = model.config;
  if (c.activation_mode == ActivationMode::kNone) return nullptr;
  nlohmann::json j;
  j["mode"] = std::string(ActivationModeName(c.activation_mode));
  j["tensors"] = c.activations.size();
  if (c.activation_mode == ActivationMode::kLlmInt8) {
    const W8A8Counters k = GetW8A8Counters();
    j["threshold"] = c.activations.empty() ? 0.0f : c.activations.begin()->second.threshold;
    j["outlier_fraction"] = k.outlier_fraction();
    j["outlier_columns"] = k.outlier_columns;
    j["columns"] = k.columns;
  }
  return j;
}

// One line on stderr (nothing for a model without activation quantization).
inline void PrintActivationSummary(const Model& model) {
  const nlohmann::json j = ActivationsJson(model);
  if (j.is_null()) return;
  if (j.contains("outlier_fraction")) {
    fmt::print(stderr, "activations: llm.int8 (threshold {}), outlier columns {:.3f}% ({} of {})\n",
               j["threshold"].get<double>(), 100 * j["outlier_fraction"].get<double>(),
               j["outlier_columns"].get<int64_t>(), j["columns"].get<int64_t>());
  } else {
    fmt::print(stderr, "activations: {} on {} tensors\n", j["mode"].get<std::string>(), j["tensors"].get<int64_t>());
  }
}

}  // namespace lowbit::cli
