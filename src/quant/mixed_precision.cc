// Mixed-precision planning: damage estimates and the multiple-choice
// knapsack (see mixed_precision.h).
#include "quant/mixed_precision.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/pipeline.h"

namespace lowbit {

KnapsackSolution SolveMultipleChoiceKnapsack(const std::vector<std::vector<KnapsackOption>>& items, uint64_t budget,
                                             uint64_t max_cells) {
  KnapsackSolution s;
  s.choice.assign(items.size(), 0);
  if (items.empty()) return s;
  // Every item pays its smallest option; the DP spends the rest of the budget
  // on upgrades, whose sizes are differences from that smallest option.
  std::vector<uint64_t> min_bytes(items.size());
  uint64_t base = 0, g = 0, spread = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].empty()) Fail("knapsack: item {} has no option", i);
    if (items[i].size() > 255) Fail("knapsack: item {} has {} options (at most 255)", i, items[i].size());
    min_bytes[i] = std::min_element(items[i].begin(), items[i].end(), [](auto& a, auto& b) {
                     return a.bytes < b.bytes;
                   })->bytes;
    base += min_bytes[i];
    uint64_t widest = 0;
    for (const KnapsackOption& o : items[i]) {
      g = std::gcd(g, o.bytes - min_bytes[i]);
      widest = std::max(widest, o.bytes - min_bytes[i]);
    }
    spread += widest;
  }
  if (base > budget)
    Fail("size budget of {} bytes is below the smallest total of the candidates ({} bytes)", budget, base);
  const uint64_t room = std::min(budget - base, spread);  // more than `spread` buys nothing
  uint64_t unit = std::max<uint64_t>(g, 1);
  // Cells per item bounded so the choice table stays under 256 MiB.
  const uint64_t cells_cap = std::max<uint64_t>(1, std::min<uint64_t>(max_cells, (uint64_t(1) << 28) / items.size()));
  if (room / unit > cells_cap) {
    unit = (room + cells_cap - 1) / cells_cap;
    s.exact = false;
  }
  s.unit = unit;
  const size_t cap = size_t(room / unit);
  // dp[c]: least damage of the items so far with upgrade cost exactly c units.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> dp(cap + 1, kInf), next(cap + 1);
  std::vector<uint8_t> pick(items.size() * (cap + 1));
  dp[0] = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    std::fill(next.begin(), next.end(), kInf);
    uint8_t* row = pick.data() + i * (cap + 1);
    for (size_t j = 0; j < items[i].size(); ++j) {
      const KnapsackOption& o = items[i][j];
      const uint64_t cost = (o.bytes - min_bytes[i] + unit - 1) / unit;  // rounded up: never over budget
      if (cost > cap) continue;
      for (size_t c = size_t(cost); c <= cap; ++c) {
        if (dp[c - cost] == kInf) continue;
        const double d = dp[c - cost] + o.damage;
        if (d < next[c] || (d == next[c] && o.bytes < items[i][row[c]].bytes)) {
          next[c] = d;
          row[c] = uint8_t(j);
        }
      }
    }
    dp.swap(next);
  }
  size_t best = 0;
  for (size_t c = 1; c <= cap; ++c)
    if (dp[c] < dp[best]) best = c;  // strict: ties keep the smaller size
  LOWBIT_CHECK(dp[best] < kInf);
  for (size_t i = items.size(); i-- > 0;) {
    const int j = pick[i * (cap + 1) + best];
    s.choice[i] = j;
    const KnapsackOption& o = items[i][size_t(j)];
    s.bytes += o.bytes;
    s.damage += o.damage;
    best -= size_t((o.bytes - min_bytes[i] + unit - 1) / unit);
  }
  LOWBIT_CHECK(best == 0 && s.bytes <= budget);
  return s;
}

std::vector<const FormatInfo*> DefaultMixedPrecisionCandidates() {
  return ParseFormatList("q2_k,q3_k,q4_k,q5_k,q6_k,q8_0", "--candidates");
}

MixedPrecisionPlan PlanMixedPrecision(const Model& model, const SensitivityRanking& ranking,
                                      const MixedPrecisionOptions& options) {
  const std::vector<const FormatInfo*> candidates =
      options.candidates.empty() ? DefaultMixedPrecisionCandidates() : options.candidates;
  if (options.target_bpw <= 0 && options.max_bytes == 0)
    Fail("mixed precision: give a size budget (--target-bpw B or --max-size BYTES)");
  RecipeOptions ro;
  ro.format = std::string(candidates.front()->name);
  ro.pure = true;
  ro.keep = options.keep;
  const Recipe recipe = PlanModelRecipe(model, ro);

  MixedPrecisionPlan plan;
  std::vector<const TensorPlan*> weights;
  for (const TensorPlan& p : recipe.tensors) {
    plan.parameters += p.elements();
    if (p.weight)
      weights.push_back(&p);
    else
      plan.fixed_bytes += p.bytes();
  }
  plan.budget_bytes = options.max_bytes;
  if (options.target_bpw > 0) {
    const uint64_t b = uint64_t(options.target_bpw * double(plan.parameters) / 8.0);
    plan.budget_bytes = plan.budget_bytes ? std::min(plan.budget_bytes, b) : b;
  }

  ThreadPool pool(options.threads);
  std::vector<std::vector<KnapsackOption>> items;
  std::vector<std::vector<TensorChoice>> choices;
  std::vector<float> w;
  for (const TensorPlan* p : weights) {
    std::vector<KnapsackOption> opts;
    std::vector<TensorChoice> cs;
    bool decoded = false;
    for (const FormatInfo* c : candidates) {
      std::string reason;
      const FormatInfo& stored = FitRowLength(*c, p->row_length(), &reason);
      if (std::any_of(cs.begin(), cs.end(), [&](const TensorChoice& x) { return x.format == stored.name; }))
        continue;
      TensorChoice tc;
      tc.name = p->name;
      tc.format = std::string(stored.name);
      tc.bytes = uint64_t(p->rows()) * stored.RowBytes(p->row_length());
      if (&stored != p->source) {
        if (const SensitivityEntry* e = ranking.Find(p->name, tc.format)) {
          tc.damage = e->kld;
        } else {
          const SensitivityEntry* ref = nullptr;
          for (const SensitivityEntry& x : ranking.entries)
            if (x.tensor == p->name && x.rel_mse > 0) ref = &x;
          if (ref == nullptr)
            Fail("{}: the sensitivity ranking has no measurement of tensor '{}' (measure it with lowbit sensitivity)",
                 ranking.model.empty() ? "mixed precision" : ranking.model, p->name);
          if (!decoded) {
            w.resize(size_t(p->elements()));
            DequantizeRows(model.Get(p->name), 0, p->rows(), w.data());
            decoded = true;
          }
          double rel_mse = 0;
          EncodeWeights(w, p->rows(), p->row_length(), stored, &pool, &rel_mse);
          tc.damage = ref->kld * rel_mse / ref->rel_mse;
          tc.measured = false;
        }
      }
      opts.push_back({tc.bytes, tc.damage});
      cs.push_back(std::move(tc));
    }
    plan.smallest_bytes += std::min_element(opts.begin(), opts.end(), [](auto& a, auto& b) {
                             return a.bytes < b.bytes;
                           })->bytes;
    items.push_back(std::move(opts));
    choices.push_back(std::move(cs));
  }
  plan.smallest_bytes += plan.fixed_bytes;
  std::string names;
  for (const FormatInfo* c : candidates) {
    if (!names.empty()) names += ',';
    names += c->name;
  }
  if (plan.budget_bytes < plan.smallest_bytes)
    Fail("size budget of {} bytes ({:.4f} bits/weight) is below the smallest the candidates {} allow: {} bytes "
         "({:.4f} bits/weight, every tensor at its smallest candidate; {} bytes of tensors are not quantized)",
         plan.budget_bytes, 8.0 * double(plan.budget_bytes) / double(plan.parameters), names, plan.smallest_bytes,
         8.0 * double(plan.smallest_bytes) / double(plan.parameters), plan.fixed_bytes);

  const KnapsackSolution s = SolveMultipleChoiceKnapsack(items, plan.budget_bytes - plan.fixed_bytes);
  plan.exact = s.exact;
  plan.total_bytes = plan.fixed_bytes + s.bytes;
  plan.estimated_damage = s.damage;
  for (size_t i = 0; i < choices.size(); ++i) plan.tensors.push_back(choices[i][size_t(s.choice[i])]);
  return plan;
}

std::map<std::string, std::string> MixedPrecisionPlan::TensorFormats() const {
  std::map<std::string, std::string> m;
  for (const TensorChoice& t : tensors) m[t.name] = t.format;
  return m;
}

std::string MixedPrecisionPlan::ToJson() const {
  nlohmann::ordered_json j;
  j["estimator"] = "sum of per-tensor mean KLD (measured, or scaled by relative weight MSE)";
  j["solver"] = exact ? "exact multiple-choice knapsack DP" : "knapsack DP on sizes rounded up";
  j["budget_bytes"] = budget_bytes;
  j["total_bytes"] = total_bytes;
  j["parameters"] = parameters;
  j["bits_per_weight"] = bits_per_weight();
  j["estimated_kld"] = estimated_damage;
  nlohmann::ordered_json ts = nlohmann::ordered_json::array();
  for (const TensorChoice& t : tensors) {
    nlohmann::ordered_json x;
    x["tensor"] = t.name;
    x["format"] = t.format;
    x["bytes"] = t.bytes;
    x["kld"] = t.damage;
    x["measured"] = t.measured;
    ts.push_back(std::move(x));
  }
  j["tensors"] = std::move(ts);
  return j.dump();
}

std::string MixedPrecisionPlan::ToTable() const {
  std::string s = fmt::format("{:<32} {:<8} {:>10} {:>12}\n", "tensor", "format", "bytes", "est. kld");
  for (const TensorChoice& t : tensors)
    s += fmt::format("{:<32} {:<8} {:>10} {:>12.6g}{}\n", t.name, t.format, t.bytes, t.damage,
                     t.measured ? "" : " (scaled by MSE)");
  s += fmt::format(
      "mixed precision: {} of {} budget bytes ({:.4f} bits/weight over {} parameters), estimated KLD {:.6g}{}\n",
      total_bytes, budget_bytes, bits_per_weight(), parameters, estimated_damage,
      exact ? "" : " (sizes rounded up to the DP unit)");
  return s;
}

}  // namespace lowbit
