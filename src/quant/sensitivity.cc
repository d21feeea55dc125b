// Per-tensor sensitivity measurement (see sensitivity.h).
#include "quant/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calib/dataset.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "quant/method.h"
#include "quant/pipeline.h"

namespace lowbit {

namespace {

// log-softmax of one row of logits, in double, written as float.
void LogSoftmax(const float* logits, int64_t vocab, float* out) {
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - double(mx));
  const double lse = double(mx) + std::log(sum);
  for (int64_t v = 0; v < vocab; ++v) out[v] = float(double(logits[v]) - lse);
}

}  // namespace

KldProbe::KldProbe(const Model& base, std::vector<std::vector<int32_t>> windows, const SessionOptions& options)
    : windows_(std::move(windows)), options_(options) {
  if (windows_.empty() || windows_.front().empty()) Fail("sensitivity: no calibration tokens to measure KLD on");
  options_.max_context = seq_len();
  vocab_ = base.config.vocab_size;
  positions_ = int64_t(windows_.size()) * seq_len();
  base_logp_.resize(size_t(positions_ * vocab_));
  Session session(base, options_);
  for (size_t w = 0; w < windows_.size(); ++w) {
    session.Reset();
    session.Eval(windows_[w], /*all_logits=*/true);
    const std::span<const float> logits = session.logits();
    for (int i = 0; i < seq_len(); ++i)
      LogSoftmax(logits.data() + size_t(i) * size_t(vocab_), vocab_,
                 base_logp_.data() + (size_t(w) * size_t(seq_len()) + size_t(i)) * size_t(vocab_));
  }
}

double KldProbe::MeanKld(const Model& model) const {
  if (model.config.vocab_size != vocab_)
    Fail("{}: vocab of {} tokens, the base model has {}", model.path, model.config.vocab_size, vocab_);
  Session session(model, options_);
  std::vector<float> logp(static_cast<size_t>(vocab_));
  double total = 0;
  for (size_t w = 0; w < windows_.size(); ++w) {
    session.Reset();
    session.Eval(windows_[w], /*all_logits=*/true);
    const std::span<const float> logits = session.logits();
    for (int i = 0; i < seq_len(); ++i) {
      LogSoftmax(logits.data() + size_t(i) * size_t(vocab_), vocab_, logp.data());
      const float* base = base_logp_.data() + (size_t(w) * size_t(seq_len()) + size_t(i)) * size_t(vocab_);
      double kl = 0;
      for (int64_t v = 0; v < vocab_; ++v) kl += std::exp(double(base[v])) * (double(base[v]) - double(logp[v]));
      total += std::max(kl, 0.0);  // rounding can leave -1e-12 for identical rows
    }
  }
  return total / double(positions_);
}

KldProbe MakeCalibrationProbe(const Model& base, const std::string& text, const std::string& source, int samples,
                              int seq_len, uint64_t seed, const SessionOptions& options) {
  if (base.tokenizer == nullptr) Fail("{}: the model has no tokenizer to read {} with", base.path, source);
  if (seq_len <= 0) seq_len = std::min(kSensitivitySeqLen, DefaultCalibrationSeqLen(base.config));
  return KldProbe(base, SampleCalibration(*base.tokenizer, text, samples, seq_len, seed, source), options);
}

std::unique_ptr<Model> WithReplacedTensor(const Model& base, const std::string& name, const FormatInfo& format,
                                          std::vector<uint8_t> encoded) {
  auto model = std::make_unique<Model>();
  model->config = base.config;
  model->path = base.path;
  model->source_format = base.source_format;
  const TensorView& old = base.Get(name);
  LOWBIT_CHECK(encoded.size() == size_t(old.Rows()) * format.RowBytes(old.RowLength()));
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(encoded));
  for (const TensorView& v : base.tensors()) {
    if (v.name != name) {
      model->AddTensor(v);
      continue;
    }
    TensorView r = v;
    r.type = format.id;
    r.data = owned->data();
    r.bytes = owned->size();
    model->AddTensor(std::move(r));
  }
  model->KeepAlive(owned);
  return model;
}

std::vector<uint8_t> EncodeWeights(const std::vector<float>& weights, int64_t rows, int64_t n,
                                   const FormatInfo& format, ThreadPool* pool, double* rel_mse) {
  LOWBIT_CHECK(int64_t(weights.size()) == rows * n && n % format.block_size == 0);
  std::vector<uint8_t> out(size_t(rows) * format.RowBytes(n));
  QuantizeRowsParallel(format, weights.data(), rows, n, nullptr, out.data(), pool);
  if (rel_mse != nullptr) {
    std::vector<float> deq(static_cast<size_t>(n));
    double err = 0, norm = 0;
    for (int64_t r = 0; r < rows; ++r) {
      format.dequantize(out.data() + size_t(r) * format.RowBytes(n), deq.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double w = weights[size_t(r * n + i)], e = double(deq[size_t(i)]) - w;
        err += e * e;
        norm += w * w;
      }
    }
    *rel_mse = norm > 0 ? err / norm : err;
  }
  return out;
}

std::vector<const FormatInfo*> ParseFormatList(const std::string& list, const std::string& option) {
  std::vector<const FormatInfo*> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    start = comma + 1;
    if (name.empty()) continue;
    const FormatInfo* f = FindFormatByName(name);
    if (f == nullptr || !f->weight_format)
      Fail("{}: unknown weight format '{}' (known: {})", option, name, FormatNames(true));
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  if (out.empty()) Fail("{}: no format given", option);
  return out;
}

SensitivityRanking MeasureSensitivity(const Model& model, const KldProbe& probe,
                                      const std::vector<const FormatInfo*>& formats, int threads, bool progress) {
  // (tensor, stored format) -> asked format, in recipe order: the fallback
  // can make several asked formats store the same type.
  struct Job {
    const TensorPlan* plan;
    const FormatInfo* asked;
    const FormatInfo* stored;
  };
  std::vector<Recipe> recipes;
  for (const FormatInfo* f : formats) {
    RecipeOptions ro;
    ro.format = std::string(f->name);
    ro.pure = true;
    recipes.push_back(PlanModelRecipe(model, ro));
  }
  std::vector<Job> jobs;
  for (size_t k = 0; k < recipes.front().tensors.size(); ++k)
    for (size_t i = 0; i < formats.size(); ++i) {
      const TensorPlan& p = recipes[i].tensors[k];
      if (!p.weight) continue;
      const bool seen = std::any_of(jobs.begin(), jobs.end(),
                                    [&](const Job& j) { return j.plan->name == p.name && j.stored == p.format; });
      if (!seen) jobs.push_back({&p, formats[i], p.format});
    }
  if (jobs.empty()) Fail("{}: no tensor that quantize would quantize", model.path);

  SensitivityRanking ranking;
  ranking.model = model.path;
  ranking.samples = probe.windows();
  ranking.seq_len = probe.seq_len();
  ranking.positions = probe.positions();
  ThreadPool pool(threads);
  Progress bar("sensitivity", int64_t(jobs.size()), progress);
  std::string last;
  std::vector<float> w;
  for (size_t j = 0; j < jobs.size(); ++j) {
    ThrowIfInterrupted();
    const TensorPlan& p = *jobs[j].plan;
    const TensorView& view = model.Get(p.name);
    SensitivityEntry e;
    e.tensor = p.name;
    e.format = std::string(jobs[j].asked->name);
    e.stored_format = std::string(jobs[j].stored->name);
    e.source_format = std::string(p.source->name);
    e.elements = p.elements();
    e.bytes_at_format = p.bytes();
    e.bytes_at_source = view.bytes;
    if (p.format != p.source) {  // same type as the source: nothing changes, KLD 0
      if (last != p.name) {
        w.resize(size_t(p.elements()));
        DequantizeRows(view, 0, p.rows(), w.data());
        last = p.name;
      }
      std::vector<uint8_t> bytes = EncodeWeights(w, p.rows(), p.row_length(), *p.format, &pool, &e.rel_mse);
      e.kld = probe.MeanKld(*WithReplacedTensor(model, p.name, *p.format, std::move(bytes)));
    }
    ranking.entries.push_back(std::move(e));
    bar.Update(int64_t(j + 1), p.name);
  }
  bar.Finish();
  std::stable_sort(ranking.entries.begin(), ranking.entries.end(),
                   [](const SensitivityEntry& a, const SensitivityEntry& b) { return a.kld > b.kld; });
  return ranking;
}

const SensitivityEntry* SensitivityRanking::Find(const std::string& tensor, const std::string& stored_format) const {
  for (const SensitivityEntry& e : entries)
    if (e.tensor == tensor && e.stored_format == stored_format) return &e;
  return nullptr;
}

std::string SensitivityRanking::ToJson() const {
  nlohmann::ordered_json j;
  j["model"] = model;
  j["data"] = data;
  j["samples"] = samples;
  j["seq_len"] = seq_len;
  j["positions"] = positions;
  j["metric"] = "mean KL(base || one tensor quantized) over every calibration position";
  nlohmann::ordered_json es = nlohmann::ordered_json::array();
  for (const SensitivityEntry& e : entries) {
    nlohmann::ordered_json x;
    x["tensor"] = e.tensor;
    x["format"] = e.format;
    x["stored_format"] = e.stored_format;
    x["source_format"] = e.source_format;
    x["elements"] = e.elements;
    x["kld"] = e.kld;
    x["rel_mse"] = e.rel_mse;
    x["bytes_at_format"] = e.bytes_at_format;
    x["bytes_at_source"] = e.bytes_at_source;
    es.push_back(std::move(x));
  }
  j["ranking"] = std::move(es);
  return j.dump(2);
}

std::string SensitivityRanking::ToTable() const {
  std::string s = fmt::format("{:>4}  {:<32} {:<8} {:<8} {:>12} {:>10} {:>10} {:>10}\n", "rank", "tensor", "format",
                              "stored", "kld", "rel_mse", "bytes", "src_bytes");
  for (size_t i = 0; i < entries.size(); ++i) {
    const SensitivityEntry& e = entries[i];
    s += fmt::format("{:>4}  {:<32} {:<8} {:<8} {:>12.6g} {:>10.3g} {:>10} {:>10}\n", i + 1, e.tensor, e.format,
                     e.stored_format, e.kld, e.rel_mse, e.bytes_at_format, e.bytes_at_source);
  }
  s += fmt::format("{} measurements, mean KLD over {} positions ({} windows of {} tokens)\n", entries.size(),
                   positions, samples, seq_len);
  return s;
}

SensitivityRanking SensitivityRanking::FromJson(const std::string& text, const std::string& source) {
  SensitivityRanking r;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    r.model = j.value("model", "");
    r.data = j.value("data", "");
    r.samples = j.value("samples", 0);
    r.seq_len = j.value("seq_len", 0);
    r.positions = j.value("positions", int64_t(0));
    if (!j.contains("ranking") || !j["ranking"].is_array()) Fail("{}: no \"ranking\" array", source);
    for (const nlohmann::json& x : j["ranking"]) {
      SensitivityEntry e;
      e.tensor = x.at("tensor").get<std::string>();
      e.format = x.at("format").get<std::string>();
      e.stored_format = x.value("stored_format", e.format);
      e.source_format = x.value("source_format", "");
      e.elements = x.value("elements", int64_t(0));
      e.kld = x.at("kld").get<double>();
      e.rel_mse = x.value("rel_mse", 0.0);
      e.bytes_at_format = x.at("bytes_at_format").get<uint64_t>();
      e.bytes_at_source = x.value("bytes_at_source", uint64_t(0));
      if (!std::isfinite(e.kld) || e.kld < 0) Fail("{}: tensor '{}' has a bad kld ({})", source, e.tensor, e.kld);
      r.entries.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: not a sensitivity ranking: {}", source, e.what());
  }
  if (r.entries.empty()) Fail("{}: the sensitivity ranking is empty", source);
  return r;
}

}  // namespace lowbit
