// Perplexity under the llama.cpp or GPTQ-paper protocol (see eval/chunks.h).
#pragma once

#include <string>

#include "eval/chunks.h"

namespace lowbit {

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;  // llama.cpp's Gaussian propagation of the per-token NLL
  int64_t tokens = 0;     // scored predictions
  int chunks = 0;
};

PerplexityResult Perplexity(Session& session, const ChunkPlan& plan, bool progress);

}  // namespace lowbit
