// Per-tensor sensitivity: how much the model's output distribution moves when
// ONE tensor is quantized to a format and every other tensor stays as in the
// source. The damage is the mean KL(base || perturbed) over every position
// of a small fixed set of calibration windows (calib/dataset.h), against the
// base log-probs computed once and kept in memory (no base file, no output
// file: the perturbed model shares the source's tensor views and owns only
// the one re-encoded tensor).
//
// The tensors measured are those `lowbit quantize --format F --pure` would
// quantize (PlanModelRecipe's weight tensors), each in the format the recipe
// would actually store after its shape fallback (a row of 172 cannot hold a
// block of 256: q4_k becomes what FitRowLength picks), so the bytes and the
// damage are those of the file quantize would write. Encoding is the
// format's reference codec (--method rtn).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/format.h"
#include "model/model.h"
#include "runtime/session.h"

namespace lowbit {

class ThreadPool;

// The base model's log-probs on fixed token windows, and the mean KLD of
// another model (same architecture and vocab) against them.
class KldProbe {
 public:
  // Evaluates `base` once on every window (each from an empty cache) and keeps
  // its log-softmax: windows * seq_len * vocab floats.
  KldProbe(const Model& base, std::vector<std::vector<int32_t>> windows, const SessionOptions& options);

  // Mean over every window position of sum_v p_base(v) (log p_base(v) - log p_model(v)).
  double MeanKld(const Model& model) const;

  int64_t positions() const { return positions_; }
  int seq_len() const { return windows_.empty() ? 0 : int(windows_.front().size()); }
  int windows() const { return int(windows_.size()); }

 private:
  std::vector<std::vector<int32_t>> windows_;
  SessionOptions options_;
  int64_t vocab_ = 0;
  int64_t positions_ = 0;
  std::vector<float> base_logp_;  // (positions, vocab), row-major
};

// Defaults of the calibration windows KLD is measured on: a small fixed token
// set (8 x 128 = 1024 positions) keeps one measurement to one short forward
// pass per tensor and format.
constexpr int kSensitivitySamples = 8;
constexpr int kSensitivitySeqLen = 128;

// A probe on `samples` seeded calibration windows of `seq_len` tokens
// (seq_len <= 0: min(128, model context)) of `text`; `source` names the file in errors.
KldProbe MakeCalibrationProbe(const Model& base, const std::string& text, const std::string& source, int samples,
                              int seq_len, uint64_t seed, const SessionOptions& options);

// A model that shares every tensor of `base` (which must outlive it) except
// `name`, which is replaced by `encoded` (owned; rows * format.RowBytes(n)
// bytes) stored in `format`.
std::unique_ptr<Model> WithReplacedTensor(const Model& base, const std::string& name, const FormatInfo& format,
                                          std::vector<uint8_t> encoded);

// Encodes `weights` (rows, n) into `format` with its reference codec;
// `rel_mse` (optional) receives ||w - dequant(q)||^2 / ||w||^2.
std::vector<uint8_t> EncodeWeights(const std::vector<float>& weights, int64_t rows, int64_t n,
                                   const FormatInfo& format, ThreadPool* pool, double* rel_mse);

struct SensitivityEntry {
  std::string tensor;
  std::string format;         // what was asked ("q4_k")
  std::string stored_format;  // what a quantized file stores after the shape fallback ("q5_0")
  std::string source_format;
  int64_t elements = 0;
  double kld = 0;             // mean KLD with this tensor alone at stored_format
  double rel_mse = 0;         // ||w - dequant(q)||^2 / ||w||^2 of that encoding
  uint64_t bytes_at_format = 0;
  uint64_t bytes_at_source = 0;
};

struct SensitivityRanking {
  std::string model;
  std::string data;
  int samples = 0;
  int seq_len = 0;
  int64_t positions = 0;
  std::vector<SensitivityEntry> entries;  // most sensitive first

  std::string ToJson() const;
  std::string ToTable() const;
  // Parses ToJson's output; throws Error naming `source` on malformed input.
  static SensitivityRanking FromJson(const std::string& text, const std::string& source);
  // The entry for (tensor, stored format), or nullptr.
  const SensitivityEntry* Find(const std::string& tensor, const std::string& stored_format) const;
};

// Measures every quantizable tensor of `model` at every format of `formats`
// (weight formats; a tensor whose fallbacks make two formats store the same
// type is measured once per stored type). Sorted by KLD, largest first.
SensitivityRanking MeasureSensitivity(const Model& model, const KldProbe& probe,
                                      const std::vector<const FormatInfo*>& formats, int threads, bool progress);

// Parses "q4_k,q8_0" into weight formats; throws Error naming `option` for an
// unknown or activation-only format or an empty list.
std::vector<const FormatInfo*> ParseFormatList(const std::string& list, const std::string& option);

}  // namespace lowbit
