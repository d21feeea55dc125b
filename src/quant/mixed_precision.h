// Mixed precision from measurement: one format per tensor, chosen from a
// candidate list to minimise the estimated total damage under a size budget.
//
// Damage model. The damage of the whole file is estimated as the SUM of the
// per-tensor damages d(t, f) = mean KLD with tensor t alone at format f
// (quant/sensitivity.h) -- additive for small, independent perturbations.
// d(t, f) comes from the ranking when it holds a measurement of t at the
// type f is stored as after the shape fallback. Otherwise it is scaled from
// a measured format f0 of the same tensor by the relative weight MSE:
//   d(t, f) = d(t, f0) * relmse(t, f) / relmse(t, f0)
// (to first order the KLD is a quadratic form in the weight error, so it
// grows with the error energy; relmse is computed here by encoding t's
// weights). A stored type equal to the source type has damage 0.
//
// Budget. Bytes are those of the file's tensor data (what bits/weight counts
// in QuantizeReport): tensors the recipe does not quantize are fixed at their
// source bytes; each quantizable tensor costs rows * RowBytes at the stored
// type (after the fallback, so rows of 172 count as what is written).
// --target-bpw B means a budget of floor(B * parameters / 8) bytes.
//
// Solver. A multiple-choice knapsack solved exactly by dynamic programming
// over the byte budget in units of u = gcd of all option sizes (then every
// budget-respecting choice is representable: the optimum is exact). When the
// budget holds more than max_cells units, u is raised to
// ceil(budget / max_cells) and sizes are rounded UP to whole units: the
// budget is still respected, and the result is optimal for the rounded sizes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/format.h"
#include "model/model.h"
#include "quant/sensitivity.h"

namespace lowbit {

struct KnapsackOption {
  uint64_t bytes = 0;
  double damage = 0;
};

struct KnapsackSolution {
  std::vector<int> choice;  // one option index per item
  uint64_t bytes = 0;
  double damage = 0;
  uint64_t unit = 1;        // byte granularity of the DP
  bool exact = true;        // unit divided every option size
};

// Minimises the summed damage with sum of bytes <= budget; ties go to fewer
// bytes. Throws Error when even the smallest option of every item exceeds
// the budget, or an item has no option.
KnapsackSolution SolveMultipleChoiceKnapsack(const std::vector<std::vector<KnapsackOption>>& items, uint64_t budget,
                                             uint64_t max_cells = uint64_t(1) << 22);

struct MixedPrecisionOptions {
  std::vector<const FormatInfo*> candidates;  // default: q2_k, q3_k, q4_k, q5_k, q6_k, q8_0
  double target_bpw = 0;                      // > 0: budget from bits per weight
  uint64_t max_bytes = 0;                     // > 0: budget in bytes of tensor data
  std::vector<std::string> keep;              // --keep regexes: those tensors stay in the source type
  int threads = 0;
};

std::vector<const FormatInfo*> DefaultMixedPrecisionCandidates();

struct TensorChoice {
  std::string name;
  std::string format;   // stored type
  uint64_t bytes = 0;
  double damage = 0;
  bool measured = true;  // false: scaled by relative MSE from another format
};

struct MixedPrecisionPlan {
  std::vector<TensorChoice> tensors;  // quantizable tensors, recipe order
  uint64_t budget_bytes = 0;
  uint64_t fixed_bytes = 0;           // tensors kept at their source type
  uint64_t total_bytes = 0;           // fixed + chosen
  uint64_t smallest_bytes = 0;        // fixed + every tensor at its smallest candidate
  int64_t parameters = 0;
  double estimated_damage = 0;
  bool exact = true;

  double bits_per_weight() const { return parameters ? 8.0 * double(total_bytes) / double(parameters) : 0; }
  std::map<std::string, std::string> TensorFormats() const;  // for RecipeOptions::tensor_formats
  std::string ToJson() const;   // written as the GGUF string lowbit.recipe
  std::string ToTable() const;
};

// Plans the per-tensor formats. Throws Error when neither budget is given,
// the budget is below the smallest candidate total, or a quantizable tensor
// has no measurement in `ranking`.
MixedPrecisionPlan PlanMixedPrecision(const Model& model, const SensitivityRanking& ranking,
                                      const MixedPrecisionOptions& options);

}  // namespace lowbit
