// Token streams and chunked evaluation shared by perplexity and KLD.
//  llamacpp protocol (llama-perplexity): the whole file tokenized with BOS,
//    split into floor(tokens / ctx) chunks; each chunk evaluated from an empty
//    cache with its first token replaced by BOS; only positions ctx/2 .. ctx-2
//    are scored (each predicts the next token).
//  gptq protocol (GPTQ/AWQ/SmoothQuant papers): WikiText rows joined with
//    "\n\n" into one stream (BOS once at the start if the vocab uses BOS),
//    non-overlapping windows of ctx tokens, every prediction scored.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/session.h"

namespace lowbit {

enum class Protocol { kLlamaCpp, kGptq };
Protocol ParseProtocol(const std::string& name);  // throws Error on unknown names

// Rebuilds the GPTQ-protocol text from a raw WikiText file: each line is one
// dataset row, a line holding a single space is an empty row, and rows are
// joined with "\n\n".
std::string JoinRowsGptq(const std::string& raw);

struct ChunkPlan {
  Protocol protocol = Protocol::kLlamaCpp;
  int ctx = 512;
  std::vector<int32_t> tokens;  // the whole stream
  int chunks = 0;
  int first_scored = 0;  // index in a chunk of the first position whose prediction is scored
  int scored_per_chunk = 0;
};

// Tokenizes `text` per the protocol and plans chunks; max_chunks <= 0 means all.
// `source` names the data file in errors (e.g. too few tokens).
ChunkPlan PlanChunks(const Tokenizer& tok, const std::string& text, Protocol protocol, int ctx, int max_chunks,
                     const std::string& source);

// Evaluates each chunk with a fresh cache and calls
// fn(chunk, chunk_tokens (ctx), logits (ctx, V)). Shows progress.
void ForEachChunk(Session& session, const ChunkPlan& plan, bool progress,
                  const std::function<void(int, std::span<const int32_t>, std::span<const float>)>& fn);

// log p(token) under logits with llama.cpp's numerics (float max, double sum of expf).
double LogSoftmaxAt(std::span<const float> logits, int32_t token);

}  // namespace lowbit
