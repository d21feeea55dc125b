// KL divergence of a model against a stored base: llama-perplexity's
// --kl-divergence statistics on the llamacpp-protocol chunks.
//
// Base file layout (little-endian), written atomically:
//   char[8] "LBKLD001"; u32 ctx, vocab, chunks, scored_per_chunk;
//   i32 tokens[chunks * ctx]           (chunk tokens, BOS substitution applied)
//   per scored position (chunks * scored_per_chunk of them):
//     f32 nll                          (exact base NLL of the next token)
//     f32 scale, f32 min_logprob; u16 q[vocab]
//   where logprob_i ~= min_logprob + scale * q_i. As in llama.cpp, log-probs
//   more than 16 below the top one are clipped to the floor (q = 0) and
//   such entries are left out of the KLD sum.
#pragma once

#include <string>
#include <vector>

#include "eval/chunks.h"

namespace lowbit {

struct KldStats {
  int64_t tokens = 0;
  double ppl_base = 0, ppl = 0;
  double kld_mean = 0, kld_stderr = 0, kld_median = 0, kld_p99 = 0, kld_max = 0;
  double top1_agreement = 0, top1_stderr = 0;   // fraction of positions with the same argmax
  double dp_mean = 0, dp_stderr = 0, dp_rms = 0;  // p(correct) of the model minus that of the base
};

// Evaluates `plan` and writes the base file to `path`.
void SaveKldBase(Session& session, const ChunkPlan& plan, const std::string& path, bool progress);

// The chunk length a base file was written with (a session needs that much context).
int KldBaseContext(const std::string& base_path);

// Evaluates the same tokens as the base file (which also supplies ctx and the
// chunk count) and compares.
KldStats CompareKld(Session& session, const std::string& base_path, bool progress);

}  // namespace lowbit
