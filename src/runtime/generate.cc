// Generation loop with timing.
#include "runtime/generate.h"

#include <chrono>

#include "core/error.h"
#include "core/progress.h"

namespace lowbit {

GenerateResult Generate(Session& session, const std::string& prompt, int n, Sampler& sampler,
                        const std::function<void(const std::string&)>& on_text) {
  const Tokenizer& tok = *session.model().tokenizer;
  GenerateResult r;
  r.prompt_tokens = tok.Encode(prompt, /*add_special=*/true);
  if (r.prompt_tokens.empty()) {
    if (tok.bos() < 0) Fail("empty prompt and the vocab has no BOS token to start from");
    r.prompt_tokens.push_back(tok.bos());
  }
  if (int64_t(r.prompt_tokens.size()) + n > session.max_context())
    Fail("prompt ({} tokens) plus {} new tokens exceed the context of {}", r.prompt_tokens.size(), n,
         session.max_context());
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  session.Eval(r.prompt_tokens, false);
  auto t1 = Clock::now();
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  int32_t prev = r.prompt_tokens.back();
  for (int i = 0; i < n; ++i) {
    ThrowIfInterrupted();
    const int32_t next = sampler.Sample(session.logits());
    if (next == tok.eos() || (next == tok.bos() && tok.bos() >= 0)) break;
    r.tokens.push_back(next);
    std::string piece = tok.DecodeNext(prev, next);
    r.text += piece;
    if (on_text) on_text(piece);
    prev = next;
    // Evaluated even for the last token so gen_seconds covers exactly one forward pass per token.
    session.Eval(std::span<const int32_t>(&next, 1), false);
  }
  r.gen_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace lowbit
