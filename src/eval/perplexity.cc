// Perplexity: mean NLL over the scored predictions of every chunk.
#include "eval/perplexity.h"

#include <cmath>

namespace lowbit {

PerplexityResult Perplexity(Session& session, const ChunkPlan& plan, bool progress) {
  double nll = 0.0, nll2 = 0.0;
  int64_t count = 0;
  ForEachChunk(session, plan, progress, [&](int, std::span<const int32_t> chunk, std::span<const float> logits) {
    const size_t vocab = logits.size() / chunk.size();
    for (int j = plan.first_scored; j < plan.first_scored + plan.scored_per_chunk; ++j) {
      const double lp = LogSoftmaxAt(logits.subspan(size_t(j) * vocab, vocab), chunk[size_t(j) + 1]);
      nll -= lp;
      nll2 += lp * lp;
      ++count;
    }
  });
  PerplexityResult r;
  r.tokens = count;
  r.chunks = plan.chunks;
  const double mean = nll / double(count);
  r.ppl = std::exp(mean);
  // As llama-perplexity: stderr of the mean NLL, propagated through exp.
  const double var = nll2 / double(count) - mean * mean;
  r.ppl_stderr = (var > 0 && count > 1) ? std::sqrt(var / double(count - 1)) * r.ppl : 0.0;
  return r;
}

}  // namespace lowbit
