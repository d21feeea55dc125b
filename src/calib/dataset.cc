// Calibration sampling: seeded random windows of a token stream.
#include "calib/dataset.h"

#include <algorithm>
#include <random>

#include "core/error.h"

namespace lowbit {

int DefaultCalibrationSeqLen(const ModelConfig& config) {
  return config.context_length > 0 ? std::min(kDefaultCalibrationSeqLen, config.context_length)
                                   : kDefaultCalibrationSeqLen;
}

namespace {

// Uniform integer in [0, bound] by rejection (no modulo bias).
uint64_t DrawInclusive(std::mt19937_64& rng, uint64_t bound) {
  if (bound == UINT64_MAX) return rng();
  const uint64_t range = bound + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % range;  // draws >= limit would favour small values
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % range;
}

}  // namespace

std::vector<std::vector<int32_t>> SampleCalibration(const Tokenizer& tokenizer, const std::string& text, int samples,
                                                    int seq_len, uint64_t seed, const std::string& source) {
  if (samples < 1) Fail("{}: calibration needs at least one sample, got {}", source, samples);
  if (seq_len < 2) Fail("{}: calibration sequence length must be at least 2 tokens, got {}", source, seq_len);
  if (text.empty()) Fail("{}: calibration file is empty", source);
  const std::vector<int32_t> stream = tokenizer.Encode(text, /*add_special=*/false);
  const bool bos = tokenizer.add_bos() && tokenizer.bos() >= 0;
  const int64_t body = seq_len - (bos ? 1 : 0);  // stream tokens per sample
  const int64_t n = int64_t(stream.size());
  if (n < body)
    Fail("{}: {} tokens is too little calibration data for one sample of {} tokens{}", source, n, seq_len,
         bos ? " (BOS + " + std::to_string(body) + " from the text)" : "");

  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(samples));
  for (auto& sample : out) {
    const int64_t offset = int64_t(DrawInclusive(rng, uint64_t(n - body)));  // window [offset, offset + body)
    sample.reserve(size_t(seq_len));
    if (bos) sample.push_back(tokenizer.bos());
    sample.insert(sample.end(), stream.begin() + offset, stream.begin() + offset + body);
  }
  return out;
}

}  // namespace lowbit
