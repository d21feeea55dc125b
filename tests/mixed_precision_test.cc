// Mixed precision from measurement: the multiple-choice knapsack against
// brute force on replayable random instances, exact budgets, budgets too
// small; per-tensor sensitivity and a --target-bpw file on stories260K whose
// bits/weight respects the target and whose KLD is no worse than the uniform
// format of the same size.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "quant/mixed_precision.h"
#include "quant/pipeline.h"
#include "quant/sensitivity.h"
#include "test_util.h"

namespace lowbit {
namespace {

using testing::SharedPath;

constexpr const char* kStoriesGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kStoriesText = "data/tinystories/validation-head.txt";

using Items = std::vector<std::vector<KnapsackOption>>;

// Least summed damage over every choice with total bytes <= budget (inf if none).
double BruteForce(const Items& items, uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> pick(items.size(), 0);
  while (true) {
    uint64_t bytes = 0;
    double damage = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      bytes += items[i][pick[i]].bytes;
      damage += items[i][pick[i]].damage;
    }
    if (bytes <= budget) best = std::min(best, damage);
    size_t i = 0;
    while (i < items.size() && ++pick[i] == items[i].size()) pick[i++] = 0;
    if (i == items.size()) return best;
  }
}

TEST(Knapsack, MatchesBruteForceOnRandomInstances) {
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    std::mt19937 rng(seed);
    Items items(1 + rng() % 5);
    uint64_t lo = 0, hi = 0;
    for (auto& item : items) {
      item.resize(1 + rng() % 4);
      uint64_t mn = ~uint64_t(0), mx = 0;
      for (KnapsackOption& o : item) {
        // Sizes on a grid of 6 (like block sizes) plus odd ones, damage falling with size or not.
        o.bytes = (seed % 3 == 0) ? 6 * (1 + rng() % 20) : 1 + rng() % 97;
        o.damage = double(rng() % 1000) / 997.0;
        mn = std::min(mn, o.bytes);
        mx = std::max(mx, o.bytes);
      }
      lo += mn;
      hi += mx;
    }
    const uint64_t budget = lo + rng() % (hi - lo + 2);
    const KnapsackSolution s = SolveMultipleChoiceKnapsack(items, budget);
    SCOPED_TRACE(::testing::Message() << "seed " << seed << ", budget " << budget);
    EXPECT_TRUE(s.exact);
    EXPECT_LE(s.bytes, budget);
    EXPECT_NEAR(s.damage, BruteForce(items, budget), 1e-9);
    uint64_t bytes = 0;
    double damage = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      bytes += items[i][size_t(s.choice[i])].bytes;
      damage += items[i][size_t(s.choice[i])].damage;
    }
    EXPECT_EQ(bytes, s.bytes);
    EXPECT_DOUBLE_EQ(damage, s.damage);
  }
}

TEST(Knapsack, SpendsTheBudgetExactlyWhenThatIsBest) {
  // Damage falls with size; the only fit of 300 bytes is 100 + 200.
  const Items items = {{{50, 4.0}, {100, 1.0}, {180, 0.5}}, {{60, 3.0}, {200, 1.0}, {230, 0.2}}};
  KnapsackSolution s = SolveMultipleChoiceKnapsack(items, 300);
  EXPECT_EQ(s.bytes, 300u);
  EXPECT_EQ(s.choice, (std::vector<int>{1, 1}));
  EXPECT_DOUBLE_EQ(s.damage, 2.0);
  s = SolveMultipleChoiceKnapsack(items, 299);  // one byte less: the next best
  EXPECT_LE(s.bytes, 299u);
  EXPECT_DOUBLE_EQ(s.damage, BruteForce(items, 299));
  s = SolveMultipleChoiceKnapsack(items, 410);
  EXPECT_EQ(s.bytes, 410u);
  EXPECT_DOUBLE_EQ(s.damage, 0.7);
  s = SolveMultipleChoiceKnapsack(items, 110);  // the smallest total exactly
  EXPECT_EQ(s.bytes, 110u);
  EXPECT_EQ(s.choice, (std::vector<int>{0, 0}));
}

TEST(Knapsack, TiesGoToFewerBytes) {
  const Items items = {{{10, 1.0}, {20, 1.0}}, {{5, 0.0}, {40, 0.0}}};
  const KnapsackSolution s = SolveMultipleChoiceKnapsack(items, 1000);
  EXPECT_EQ(s.bytes, 15u);
}

TEST(Knapsack, BudgetBelowTheSmallestTotalIsAnError) {
  const Items items = {{{50, 4.0}, {100, 1.0}}, {{60, 3.0}, {200, 1.0}}};
  try {
    SolveMultipleChoiceKnapsack(items, 109);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below the smallest"), std::string::npos) << e.what();
  }
}

TEST(Knapsack, CoarseUnitsStillRespectTheBudget) {
  std::mt19937 rng(7);
  Items items(40);
  uint64_t lo = 0;
  for (auto& item : items) {
    for (int j = 0; j < 5; ++j) item.push_back({1000 + rng() % 100000, double(rng() % 1000)});
    lo += std::min_element(item.begin(), item.end(), [](auto& a, auto& b) { return a.bytes < b.bytes; })->bytes;
  }
  const uint64_t budget = lo + 500000;
  const KnapsackSolution fine = SolveMultipleChoiceKnapsack(items, budget);
  const KnapsackSolution coarse = SolveMultipleChoiceKnapsack(items, budget, 1000);
  EXPECT_FALSE(coarse.exact);
  EXPECT_GT(coarse.unit, 1u);
  EXPECT_LE(coarse.bytes, budget);
  EXPECT_LE(fine.bytes, budget);
  EXPECT_LE(fine.damage, coarse.damage + 1e-9);
}

// stories260K: sensitivities for every candidate, then a budget the size of a
// uniform file.
class Stories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(SharedPath(kStoriesGguf)) || !std::filesystem::exists(SharedPath(kStoriesText)))
      return;
    model_ = LoadModel(SharedPath(kStoriesGguf)).release();
    const std::string text = ReadFileToString(SharedPath(kStoriesText));
    probe_ = new KldProbe(MakeCalibrationProbe(*model_, text, kStoriesText, 8, 64, 0, {}));
    heldout_ = new KldProbe(MakeCalibrationProbe(*model_, text, kStoriesText, 8, 64, 1, {}));
    ranking_ = new SensitivityRanking(
        MeasureSensitivity(*model_, *probe_, DefaultMixedPrecisionCandidates(), 0, false));
  }
  static void TearDownTestSuite() {
    delete ranking_;
    delete heldout_;
    delete probe_;
    delete model_;
  }
  void SetUp() override {
    LOWBIT_REQUIRE_SHARED(kStoriesGguf);
    LOWBIT_REQUIRE_SHARED(kStoriesText);
  }

  static QuantizeReport Quantize(const QuantizeOptions& options) { return QuantizeModel(*model_, options, nullptr); }

  static Model* model_;
  static KldProbe* probe_;
  static KldProbe* heldout_;
  static SensitivityRanking* ranking_;
};
Model* Stories::model_ = nullptr;
KldProbe* Stories::probe_ = nullptr;
KldProbe* Stories::heldout_ = nullptr;
SensitivityRanking* Stories::ranking_ = nullptr;

TEST_F(Stories, RankingCoversEveryQuantizedTensorAndRoundTrips) {
  RecipeOptions ro;
  ro.format = "q4_k";
  ro.pure = true;
  const Recipe r = PlanModelRecipe(*model_, ro);
  for (const TensorPlan& p : r.tensors) {
    if (!p.weight) continue;
    const SensitivityEntry* e = ranking_->Find(p.name, std::string(p.format->name));
    ASSERT_NE(e, nullptr) << p.name;
    EXPECT_EQ(e->bytes_at_format, p.bytes()) << p.name;  // the fallback's bytes (rows of 172 -> f16)
    EXPECT_GE(e->kld, 0);
  }
  for (size_t i = 1; i < ranking_->entries.size(); ++i)
    EXPECT_GE(ranking_->entries[i - 1].kld, ranking_->entries[i].kld);
  const SensitivityRanking back = SensitivityRanking::FromJson(ranking_->ToJson(), "ranking");
  ASSERT_EQ(back.entries.size(), ranking_->entries.size());
  EXPECT_EQ(back.entries.front().tensor, ranking_->entries.front().tensor);
  EXPECT_DOUBLE_EQ(back.entries.front().kld, ranking_->entries.front().kld);
  // The unmodified model has no KLD against itself; a coarser format hurts more than a finer one.
  EXPECT_LT(probe_->MeanKld(*model_), 1e-9);
  const SensitivityEntry* q8 = ranking_->Find("blk.0.attn_q.weight", "q8_0");
  ASSERT_NE(q8, nullptr);
  for (const SensitivityEntry& e : ranking_->entries)
    if (e.tensor == "blk.0.attn_q.weight" && e.stored_format != "q8_0") {
      EXPECT_GT(e.kld, q8->kld) << e.stored_format;
    }
}

TEST_F(Stories, TargetBpwBeatsTheUniformFormatOfTheSameSize) {
  const std::string dir = ::testing::TempDir();
  // q3_k is the smallest candidate total on this model (q2_k and q3_k fall back alike).
  for (const char* uniform : {"q3_k", "q4_k", "q5_k"}) {
    SCOPED_TRACE(uniform);
    QuantizeOptions u;
    u.output = dir + "/mp_uniform.gguf";
    u.recipe.format = uniform;
    u.recipe.pure = true;
    u.progress = false;
    const QuantizeReport ur = Quantize(u);
    const auto um = LoadModel(u.output);

    MixedPrecisionOptions mo;
    mo.target_bpw = ur.bits_per_weight;
    const MixedPrecisionPlan plan = PlanMixedPrecision(*model_, *ranking_, mo);
    EXPECT_LE(plan.total_bytes, plan.budget_bytes);
    QuantizeOptions m = u;
    m.output = dir + "/mp_mixed.gguf";
    m.recipe.tensor_formats = plan.TensorFormats();
    m.metadata.emplace_back("lowbit.recipe", plan.ToJson());
    const QuantizeReport mr = Quantize(m);
    EXPECT_EQ(mr.total_bytes, plan.total_bytes);
    EXPECT_LE(mr.bits_per_weight, mo.target_bpw);
    const auto mm = LoadModel(m.output);

    const double ku = probe_->MeanKld(*um), km = probe_->MeanKld(*mm);
    const double hu = heldout_->MeanKld(*um), hm = heldout_->MeanKld(*mm);
    std::printf("%s: uniform %.4f bpw KLD %.5f (held-out %.5f); mixed %.4f bpw KLD %.5f (held-out %.5f), "
                "estimated %.5f\n",
                uniform, ur.bits_per_weight, ku, hu, mr.bits_per_weight, km, hm, plan.estimated_damage);
    EXPECT_LE(km, ku * 1.05);  // on the calibration windows the plan was chosen on
    EXPECT_LE(hm, hu * 1.25);  // and on other windows of the same text

    const GgufFile f(m.output);
    const nlohmann::json recipe = nlohmann::json::parse(f.GetString("lowbit.recipe"));
    EXPECT_EQ(recipe["tensors"].size(), plan.tensors.size());
    for (const auto& t : recipe["tensors"])
      EXPECT_EQ(std::string(GetFormat(mm->Get(t["tensor"].get<std::string>()).type).name),
                t["format"].get<std::string>());
  }
}

TEST_F(Stories, BudgetBelowTheSmallestCandidateIsAClearError) {
  MixedPrecisionOptions mo;
  mo.target_bpw = 2.0;  // rows of 172 fall back to f16 and the norms stay f32: far above 2 bits
  try {
    PlanMixedPrecision(*model_, *ranking_, mo);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below the smallest"), std::string::npos) << e.what();
  }
  mo.target_bpw = 0;
  EXPECT_THROW(PlanMixedPrecision(*model_, *ranking_, mo), Error);
}

TEST_F(Stories, KeptTensorsStayOutOfThePlan) {
  MixedPrecisionOptions mo;
  mo.target_bpw = 11.0;  // output.weight (128 KiB of f32) stays f32
  mo.keep = {"^output\\."};
  const MixedPrecisionPlan plan = PlanMixedPrecision(*model_, *ranking_, mo);
  for (const TensorChoice& t : plan.tensors) EXPECT_NE(t.name, "output.weight");
  EXPECT_LE(plan.total_bytes, plan.budget_bytes);
  EXPECT_GE(plan.fixed_bytes, model_->Get("output.weight").bytes);
}

TEST_F(Stories, UnmeasuredFormatsAreScaledByRelativeMse) {
  // Keep only the q8_0 measurements (and f16, all that rows of 172 can store):
  // the other candidates are estimated.
  SensitivityRanking only_q8 = *ranking_;
  std::erase_if(only_q8.entries,
                [](const SensitivityEntry& e) { return e.stored_format != "q8_0" && e.stored_format != "f16"; });
  MixedPrecisionOptions mo;
  mo.target_bpw = 7.6;
  const MixedPrecisionPlan plan = PlanMixedPrecision(*model_, only_q8, mo);
  EXPECT_LE(plan.total_bytes, plan.budget_bytes);
  bool scaled = false;
  for (const TensorChoice& t : plan.tensors) scaled |= !t.measured;
  EXPECT_TRUE(scaled);
}

}  // namespace
}  // namespace lowbit
