// Activation quantization chosen at quantize time (issue 4): W8A8 int8 with
// dynamic per-token or static per-tensor activation scales, and LLM.int8()
// outlier decomposition. The choice is stored in the output GGUF's metadata,
// so `lowbit run/ppl/kld/bench` execute it.
#pragma once

#include <string>

namespace lowbit {

class GgufWriter;
class Model;
struct Recipe;

struct ActivationOptions {
  std::string mode = "none";  // none | int8-dynamic | int8-static | llm.int8[:THRESHOLD]
  std::string stats;          // calibration statistics (lowbit calibrate) for int8-static
  std::string observer;       // static ranges: minmax | ema | percentile | kl | mse
};

// Checks the options against the planned recipe before anything is written;
// throws Error naming the problem.
void CheckActivationOptions(const ActivationOptions& options, const Model& model, const Recipe& recipe);

// Writes the activation-quantization metadata (nothing for mode "none").
void WriteActivationMetadata(const ActivationOptions& options, const Model& model, const Recipe& recipe,
                             GgufWriter& writer);

}  // namespace lowbit
