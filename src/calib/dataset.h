// Calibration samples, GPTQ-paper style (gptq/datautils.py, ../shared/docs/
// research/peers.md §8.1): the text is tokenized once as one stream (no BOS),
// and each sample is a window of the stream at an offset drawn uniformly from
// a seeded generator. When the vocab uses BOS, a sample is BOS followed by
// seq_len - 1 stream tokens, so every sample looks like the start of a
// document to the model. The generator is std::mt19937_64 with an unbiased
// integer draw of our own (std::uniform_int_distribution is not specified
// bit for bit), so a seed names the same samples on every platform.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace lowbit {

constexpr int kDefaultCalibrationSamples = 128;
constexpr int kDefaultCalibrationSeqLen = 512;
constexpr uint64_t kDefaultCalibrationSeed = 0;  // GPTQ's seed

// min(512, the model's context length).
int DefaultCalibrationSeqLen(const ModelConfig& config);

// `samples` windows of exactly `seq_len` tokens each. Throws Error naming
// `source` for an empty text, a text with fewer tokens than one sample, or
// samples < 1 / seq_len < 2. Windows may overlap (they are independent draws).
std::vector<std::vector<int32_t>> SampleCalibration(const Tokenizer& tokenizer, const std::string& text, int samples,
                                                    int seq_len, uint64_t seed, const std::string& source);

}  // namespace lowbit
