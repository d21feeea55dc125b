// Activation quantization options -> GGUF metadata. See quant/activations.h.
#include "quant/activations.h"

#include "core/error.h"

namespace lowbit {

void CheckActivationOptions(const ActivationOptions& options, const Model&, const Recipe&) {
  if (options.mode != "none") Fail("--activations {}: activation quantization is not built yet", options.mode);
}

void WriteActivationMetadata(const ActivationOptions&, const Model&, const Recipe&, GgufWriter&) {}

}  // namespace lowbit
