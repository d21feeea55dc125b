// Chunk planning and evaluation for perplexity and KLD.
#include "eval/chunks.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"

namespace lowbit {

Protocol ParseProtocol(const std::string& name) {
  if (name == "llamacpp") return Protocol::kLlamaCpp;
  if (name == "gptq") return Protocol::kGptq;
  Fail("unknown protocol '{}' (expected llamacpp or gptq)", name);
}

std::string JoinRowsGptq(const std::string& raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    size_t end = raw.find('\n', start);
    end = end == std::string::npos ? raw.size() : end + 1;
    std::string_view row(raw.data() + start, end - start);
    if (row == " \n") row = {};
    if (!first) out += "\n\n";
    out += row;
    first = false;
    start = end;
  }
  return out;
}

ChunkPlan PlanChunks(const Tokenizer& tok, const std::string& text, Protocol protocol, int ctx, int max_chunks,
                     const std::string& source) {
  if (ctx < 8) Fail("--ctx must be at least 8, got {}", ctx);
  ChunkPlan plan;
  plan.protocol = protocol;
  plan.ctx = ctx;
  plan.tokens = tok.Encode(protocol == Protocol::kGptq ? JoinRowsGptq(text) : text, /*add_special=*/true);
  const int64_t n = int64_t(plan.tokens.size());
  if (protocol == Protocol::kLlamaCpp) {
    if (n < 2 * int64_t(ctx))
      Fail("{}: {} tokens is too little data: the llamacpp protocol needs at least 2 x ctx = {}", source, n,
           2 * ctx);
    plan.first_scored = ctx / 2;
    plan.scored_per_chunk = ctx - 1 - plan.first_scored;
  } else {
    if (n < ctx) Fail("{}: {} tokens is too little data for one window of {}", source, n, ctx);
    plan.first_scored = 0;
    plan.scored_per_chunk = ctx - 1;
  }
  plan.chunks = int(n / ctx);
  if (max_chunks > 0) plan.chunks = std::min(plan.chunks, max_chunks);
  return plan;
}

void ForEachChunk(Session& session, const ChunkPlan& plan, bool progress,
                  const std::function<void(int, std::span<const int32_t>, std::span<const float>)>& fn) {
  const Tokenizer& tok = *session.model().tokenizer;
  Progress bar("chunks", plan.chunks, progress);
  std::vector<int32_t> chunk(size_t(plan.ctx));
  for (int c = 0; c < plan.chunks; ++c) {
    ThrowIfInterrupted();
    std::copy_n(plan.tokens.begin() + int64_t(c) * plan.ctx, plan.ctx, chunk.begin());
    if (plan.protocol == Protocol::kLlamaCpp && tok.add_bos() && tok.bos() >= 0) chunk[0] = tok.bos();
    session.Reset();
    session.Eval(chunk, /*all_logits=*/true);
    fn(c, chunk, session.logits());
    bar.Update(c + 1);
  }
  bar.Finish();
}

double LogSoftmaxAt(std::span<const float> logits, int32_t token) {
  float max = logits[0];
  for (float l : logits) max = std::max(max, l);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - max);
  return double(logits[size_t(token)] - max) - std::log(sum);
}

}  // namespace lowbit
