// Speed measurement in llama-bench's protocol, plus the memory roofline for
// token generation. pp: a prompt of p random token ids (BOS first) evaluated
// as one batch from an empty cache; tg: n single-token decodes from an empty
// cache. One warmup of each, then r repetitions; mean +- sample stdev of
// tokens/s. Generating one token reads every weight matrix once (the
// embedding only one row), so tokens/s can never beat
// read bandwidth / bytes per token: that ceiling and the fraction reached
// are reported beside the measurement.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace lowbit {

// The bandwidth probe's window when there is no tg repetition to match.
inline constexpr double kNoTgWindowSeconds = 0.25;

struct BenchOptions {
  int prompt_tokens = 512;                   // p (0: skip pp)
  int gen_tokens = 128;                      // n (0: skip tg)
  int repetitions = 3;                       // r
  int threads = 0;                           // <= 0: one per core
  uint64_t seed = 1234;                      // for the random token ids
  size_t bandwidth_bytes = size_t(1) << 30;  // buffer for the read-bandwidth probe (far above any L3)
  int bandwidth_runs = 5;  // best of this many probe windows (at least repetitions + 1 when tg runs)
  bool pack_weights = true;                  // SessionOptions::pack_weights
};

struct MeanStdev {
  double mean = 0, stdev = 0;
};

struct BenchResult {
  int threads = 0;
  int prompt_tokens = 0, gen_tokens = 0, repetitions = 0;
  MeanStdev pp_tokens_per_s, tg_tokens_per_s;
  std::vector<double> tg_repetitions;  // tokens/s of each tg repetition, in order
  uint64_t model_bytes = 0;      // every tensor's bytes
  uint64_t bytes_per_token = 0;  // weights one generated token reads
  // Streaming read rate of the best probe window, a window being as long as
  // a tg repetition (kNoTgWindowSeconds without tg): what the memory
  // sustains over the time a measurement takes.
  double read_bandwidth_gb_s = 0;
  double read_bandwidth_peak_gb_s = 0;  // the fastest single 1 GiB pass (about 20-30 ms)
  // Each probe window's rate, in order: with tg, the window before the first
  // repetition, then one after each.
  std::vector<double> bandwidth_windows_gb_s;
  double tg_roofline_tokens_per_s = 0;  // read bandwidth / bytes_per_token
  double roofline_fraction = 0;         // tg mean / roofline
  // Median over the tg repetitions of tg / (bandwidth of the faster of the
  // two probe windows either side of the repetition / bytes_per_token): the
  // share of the roofline at the time, on a machine whose bandwidth drifts.
  double roofline_fraction_paired = 0;
};

// Bytes of weights a generated token reads: every tensor except the
// embeddings (one row each), plus the output head (token_embd when tied).
uint64_t BytesPerGeneratedToken(const Model& model);

// Runs warmup + repetitions; `on_step` (may be empty) is told what runs next.
BenchResult RunBench(const Model& model, const BenchOptions& options,
                     const std::function<void(const std::string&)>& on_step = {});

MeanStdev MeanAndStdev(const std::vector<double>& samples);

}  // namespace lowbit
