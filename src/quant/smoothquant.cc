// SmoothQuant as a block stage (awq.h): per-channel smoothing factors folded
// from the input norms into the linears they feed. Exact in real arithmetic:
// the block computes the same function, with activation outliers moved into
// the weights.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "quant/awq.h"

namespace lowbit {

std::vector<float> SmoothQuantScales(std::span<const float> x_absmax, std::span<const float> w_absmax, double alpha) {
  std::vector<float> s(x_absmax.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    const double xa = x_absmax[j];
    if (!std::isfinite(xa) || !(xa > 0)) continue;  // never active: nothing to migrate
    const double wa = std::isfinite(w_absmax[j]) ? std::max(double(w_absmax[j]), 1e-5) : 1e-5;
    const double v = std::max(std::pow(xa, alpha) / std::pow(wa, 1.0 - alpha), 1e-5);
    if (std::isfinite(float(v))) s[j] = float(v);
  }
  return s;
}

namespace {

struct SmoothGroup {
  std::string label;
  std::string input;                 // product whose input max|X_j| is taken
  std::vector<std::string> linears;  // the norm's consumers (columns * s)
  std::vector<std::string> norm;     // weight (and bias): / s
};

// The largest channel's max|x| over the mean of every channel's: how far the
// worst outlier stands out (what per-tensor activation scales suffer from).
double OutlierRatio(const std::vector<float>& absmax) {
  double mx = 0, sum = 0;
  for (float v : absmax) {
    mx = std::max(mx, double(v));
    sum += v;
  }
  return sum > 0 ? mx * double(absmax.size()) / sum : 0.0;
}

class SmoothQuantStage final : public BlockStage {
 public:
  explicit SmoothQuantStage(const SmoothQuantOptions& options) : options_(options) {}
  std::string_view name() const override { return "smoothquant"; }

  void ProcessBlock(BlockContext& block) override {
    const int l = block.layer();
    auto N = [l](const char* s) { return fmt::format("blk.{}.{}", l, s); };
    std::vector<SmoothGroup> groups;
    if (block.config().arch == Arch::kGpt2) {
      groups.push_back({"ln_1->qkv", N("attn_qkv.weight"), {N("attn_qkv.weight")},
                        {N("attn_norm.weight"), N("attn_norm.bias")}});
      groups.push_back({"ln_2->up", N("ffn_up.weight"), {N("ffn_up.weight")},
                        {N("ffn_norm.weight"), N("ffn_norm.bias")}});
    } else {
      groups.push_back({"attn_norm->q,k,v", N("attn_q.weight"),
                        {N("attn_q.weight"), N("attn_k.weight"), N("attn_v.weight")}, {N("attn_norm.weight")}});
      groups.push_back({"ffn_norm->gate,up", N("ffn_gate.weight"), {N("ffn_gate.weight"), N("ffn_up.weight")},
                        {N("ffn_norm.weight")}});
    }

    // max|X_j| of both inputs in one pass (smoothing the attention group
    // leaves the block's function, hence the MLP's input, unchanged).
    std::map<std::string, std::vector<float>> absmax;
    for (const SmoothGroup& g : groups) absmax[g.input].assign(size_t(block.Shape(g.input).back()), 0.0f);
    block.Forward(
        [&](const std::string& name, const float* x, int64_t n) {
          auto it = absmax.find(name.starts_with("blk.") ? name : fmt::format("blk.{}.{}", l, name));
          if (it == absmax.end()) return;
          std::vector<float>& m = it->second;
          const int64_t in = int64_t(m.size());
          for (int64_t t = 0; t < n; ++t)
            for (int64_t j = 0; j < in; ++j) m[size_t(j)] = std::max(m[size_t(j)], std::fabs(x[t * in + j]));
        },
        "ffn_up.weight");

    for (const SmoothGroup& g : groups) Apply(block, g, absmax[g.input]);
  }

 private:
  void Apply(BlockContext& block, const SmoothGroup& g, const std::vector<float>& x_absmax) {
    const int64_t n = int64_t(x_absmax.size());
    for (const std::string& name : g.linears)
      if (!block.Has(name) || block.Encoded(name)) return;
    for (const std::string& name : g.norm)
      if (!block.Has(name)) return;
    std::vector<float> w_absmax(size_t(n), 0.0f);
    for (const std::string& name : g.linears) {
      const std::vector<float>& w = block.Weight(name);
      for (size_t i = 0; i < w.size(); ++i)
        w_absmax[i % size_t(n)] = std::max(w_absmax[i % size_t(n)], std::fabs(w[i]));
    }
    const std::vector<float> s = SmoothQuantScales(x_absmax, w_absmax, options_.alpha);
    std::map<std::string, std::vector<float>> next;
    for (const std::string& name : g.linears) {
      std::vector<float> w = block.Weight(name);
      ScaleColumns(w.data(), int64_t(w.size()) / n, n, s.data());
      next[name] = std::move(w);
    }
    for (const std::string& name : g.norm) {
      std::vector<float> v = block.Weight(name);
      DivideBy(v.data(), n, s.data());
      next[name] = std::move(v);
    }
    std::vector<float> smoothed(x_absmax);
    for (int64_t j = 0; j < n; ++j) smoothed[size_t(j)] /= s[size_t(j)];
    std::string line = fmt::format("smoothquant blk.{} {}: alpha {:.2f}, max|X| / mean over channels {:.1f} -> {:.1f}",
                                   block.layer(), g.label, options_.alpha, OutlierRatio(x_absmax),
                                   OutlierRatio(smoothed));
    for (const auto& entry : next)
      if (!std::all_of(entry.second.begin(), entry.second.end(), [](float e) { return std::isfinite(e); })) {
        block.Note(line + " (not applied: the folded weights would not be finite)");
        return;
      }
    for (auto& entry : next) block.Weight(entry.first) = std::move(entry.second);
    block.Note(line);
  }

  SmoothQuantOptions options_;
};

}  // namespace

std::unique_ptr<BlockStage> MakeSmoothQuantStage(const SmoothQuantOptions& options) {
  return std::make_unique<SmoothQuantStage>(options);
}

}  // namespace lowbit
