// Text generation: evaluate the prompt in one batch, then sample token by
// token, streaming each token's text to a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"

namespace lowbit {

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;     // including BOS when the vocab uses it
  std::vector<int32_t> tokens;            // generated tokens
  std::string text;                       // decoded generated text
  double prompt_seconds = 0;              // time to evaluate the prompt
  double gen_seconds = 0;                 // time to generate `tokens`
};

// Generates up to n tokens after `prompt` (an empty prompt starts from BOS
// alone). Stops early at EOS, or at BOS for vocabs whose stories are
// BOS-separated (llama2.c convention). on_text receives each token's text.
GenerateResult Generate(Session& session, const std::string& prompt, int n, Sampler& sampler,
                        const std::function<void(const std::string&)>& on_text);

}  // namespace lowbit
