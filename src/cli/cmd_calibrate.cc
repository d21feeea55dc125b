// `lowbit calibrate MODEL --data FILE [--samples N] [--seq-len L] [--seed S] -o STATS [--json]`:
// runs seeded random windows of a text file through the model, records the
// input statistics of every linear layer (calib/stats.h) into one imatrix
// GGUF, and prints a per-layer summary with the observers' ranges.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "calib/dataset.h"
#include "calib/observers.h"
#include "calib/stats.h"
#include "cli/commands.h"
#include "core/progress.h"

namespace lowbit::cli {

namespace {

// LLM.int8()'s outlier threshold: a channel is an outlier when some |x| reaches it.
constexpr float kOutlierThreshold = 6.0f;

struct LayerSummary {
  const LinearInputStats* stats;
  double mean_abs = 0, mean_sq = 0;  // averaged over channels
  float absmax = 0;
  int64_t outliers = 0;  // channels with max |x| >= 6
};

LayerSummary Summarize(const LinearInputStats& s) {
  LayerSummary l{&s};
  for (int64_t j = 0; j < s.channels; ++j) {
    l.mean_abs += s.mean_abs[size_t(j)];
    l.mean_sq += s.mean_sq[size_t(j)];
    l.absmax = std::max(l.absmax, s.absmax[size_t(j)]);
    l.outliers += s.absmax[size_t(j)] >= kOutlierThreshold;
  }
  l.mean_abs /= double(s.channels);
  l.mean_sq /= double(s.channels);
  return l;
}

// The statistics block by block (blk.2 before blk.10), in the model's tensor
// order within a block; tensors outside blocks (the output head) last.
std::vector<const LinearInputStats*> InModelOrder(const Model& model, const ActivationStats& stats) {
  std::map<std::string, size_t> position;
  for (const TensorView& t : model.tensors()) position.emplace(t.name, position.size());
  auto key = [&](const LinearInputStats* s) {
    int block = std::numeric_limits<int>::max();
    if (std::sscanf(s->weight.c_str(), "blk.%d.", &block) != 1) block = std::numeric_limits<int>::max();
    auto it = position.find(s->weight);
    return std::make_tuple(block, it == position.end() ? position.size() : it->second, s->weight);
  };
  std::vector<const LinearInputStats*> out;
  for (const auto& [name, s] : stats.all()) out.push_back(&s);
  std::stable_sort(out.begin(), out.end(), [&](auto* a, auto* b) { return key(a) < key(b); });
  return out;
}

}  // namespace

Runner AddCalibrateCommand(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string data, out;
    int samples = kDefaultCalibrationSamples;
    int seq_len = 0;
    uint64_t seed = kDefaultCalibrationSeed;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "Record the input statistics of every linear layer (imatrix GGUF + observer histograms)");
  AddModelOptions(*cmd, &o->model);
  cmd->add_option("--data,-f", o->data, "calibration text file")->required();
  cmd->add_option("-o,--output", o->out, "statistics file to write (GGUF, llama.cpp imatrix layout)")->required();
  cmd->add_option("--samples,-n", o->samples, "random windows to run")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seq-len,-c", o->seq_len, "tokens per window (default: min(512, model context))")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", o->seed, "seed of the window offsets");
  cmd->add_flag("--json", o->json, "print a JSON report");
  return [o] {
    auto model = OpenModel(o->model);
    const int seq_len = o->seq_len > 0 ? o->seq_len : DefaultCalibrationSeqLen(model->config);
    if (model->config.context_length > 0 && seq_len > model->config.context_length && !o->json)
      fmt::print(stderr, "warning: seq-len {} is longer than the model's trained context {}\n", seq_len,
                 model->config.context_length);
    const auto samples =
        SampleCalibration(*model->tokenizer, ReadDataFile(o->data), o->samples, seq_len, o->seed, o->data);

    SessionOptions so = MakeSessionOptions(o->model);
    so.max_context = seq_len;
    Session session(*model, so);
    ActivationStats stats;
    stats.info().datasets = {o->data};
    stats.info().chunk_count = o->samples;
    stats.info().chunk_size = seq_len;
    stats.info().seed = o->seed;
    {
      Progress bar("calibrate", o->samples);
      CollectActivationStats(session, samples, &stats, [&](int i) { bar.Update(i + 1); });
      bar.Finish();
    }
    stats.Save(o->out);

    const std::vector<const LinearInputStats*> order = InModelOrder(*model, stats);
    const Observer observers[] = {Observer::kMinMax, Observer::kEma, Observer::kPercentile, Observer::kKl,
                                  Observer::kMse};
    if (o->json) {
      nlohmann::json j;
      j["stats"] = o->out;
      j["data"] = o->data;
      j["samples"] = o->samples;
      j["seq_len"] = seq_len;
      j["seed"] = o->seed;
      j["tokens"] = int64_t(o->samples) * seq_len;
      j["outlier_threshold"] = kOutlierThreshold;
      nlohmann::json layers = nlohmann::json::array();
      for (const LinearInputStats* s : order) {
        const LayerSummary l = Summarize(*s);
        nlohmann::json e;
        e["weight"] = s->weight;
        e["channels"] = s->channels;
        e["count"] = s->count;
        e["mean_abs"] = l.mean_abs;
        e["mean_sq"] = l.mean_sq;
        e["absmax"] = l.absmax;
        e["outlier_channels"] = l.outliers;
        e["outlier_share"] = double(l.outliers) / double(s->channels);
        for (Observer ob : observers) e["range"][ObserverName(ob)] = ActivationRange(*s, ob);
        layers.push_back(std::move(e));
      }
      j["layers"] = std::move(layers);
      PrintJson(j.dump(2));
      return;
    }
    fmt::print("{} samples x {} tokens from {} (seed {}) -> {}\n", o->samples, seq_len, o->data, o->seed, o->out);
    size_t width = 6;
    for (const LinearInputStats* s : order) width = std::max(width, s->weight.size());
    fmt::print("{:<{}} {:>8} {:>10} {:>10} {:>9} {:>10} {:>10}\n", "weight", width, "channels", "mean|x|", "max|x|",
               "|x|>=6", "p99.99", "kl");
    for (const LinearInputStats* s : order) {
      const LayerSummary l = Summarize(*s);
      fmt::print("{:<{}} {:>8} {:>10.4g} {:>10.4g} {:>8.2f}% {:>10.4g} {:>10.4g}\n", s->weight, width, s->channels,
                 l.mean_abs, l.absmax, 100.0 * double(l.outliers) / double(s->channels),
                 ActivationRange(*s, Observer::kPercentile), ActivationRange(*s, Observer::kKl));
    }
  };
}

}  // namespace lowbit::cli
