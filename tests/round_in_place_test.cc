// RoundInPlace (format.h RoundInPlaceFn, GPTQ's rounding of one element with
// the block's scales fixed), generated from the format list: every weight
// format has it; decoded values are fixed points; the returned value is what
// dequantize gives afterwards and nothing else moves; and it is the nearest
// of the values the element can take. That set is not taken from the
// format's code (which would be circular): it is swept from RoundInPlace's own
// answers over a fine grid and checked against properties any correct
// implementation has -- it holds every value the element's scale-sharing
// neighbours decode to, has at most 2^bits members, and for every x the answer
// is at least as near as every member (including x at the midpoints between
// members, where an off-by-one rounding shows).
//
// Random data is replayable: the seed is in every failure message; set
// LOWBIT_TEST_SEED to rerun with another base seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format.h"
#include "formats/round_util.h"
#include "test_random.h"

namespace lowbit {
namespace {

using testing::BaseSeed;
using testing::Gaussian;
using testing::Uniform;

// What the test must know about a format beyond FormatInfo: how many
// consecutive elements share element i's scales (the block, or the sub-block
// of the super-block formats; 0 = the whole row), and how many codes one
// element has (0 = not checked: f32). Written out here, independently of the
// codecs; a new format fails until it is added.
struct CodeFacts {
  int64_t group = -1;  // -1: unknown format
  double codes = 0;
};

CodeFacts FactsOf(std::string_view name) {
  struct Entry {
    std::string_view name;
    int64_t group;
    double codes;
  };
  static constexpr Entry kTable[] = {
      {"f32", 0, 0},       {"f16", 0, 65536},  {"bf16", 0, 65536}, {"q8_0", 32, 256},    {"q4_0", 32, 16},
      {"q4_1", 32, 16},    {"q5_0", 32, 32},   {"q5_1", 32, 32},   {"iq4_nl", 32, 16},   {"tq1_0", 256, 3},
      {"tq2_0", 256, 3},   {"q2_k", 16, 4},    {"q3_k", 16, 8},    {"q4_k", 32, 16},     {"q5_k", 32, 32},
      {"q6_k", 16, 64},    {"iq4_xs", 32, 16}, {"fp8_e4m3", 0, 256}, {"fp8_e5m2", 0, 256}, {"nf4", 64, 16},
      {"fp4", 64, 16},     {"nf4_dq", 64, 16}, {"fp4_dq", 64, 16}, {"log4", 32, 16}};
  for (const Entry& e : kTable)
    if (e.name == name) return {e.group, e.codes};
  // int{b}_{sym|asym}_{tensor|channel|gG}
  if (name.size() > 5 && name.substr(0, 3) == "int") {
    const int bits = name[3] - '0';
    const size_t g = name.rfind("_g");
    return {g == std::string_view::npos ? 0 : std::atoll(std::string(name.substr(g + 2)).c_str()), std::ldexp(1.0, bits)};
  }
  return {};
}

std::vector<float> Decode(const FormatInfo& f, const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  f.dequantize(row.data(), y.data(), n);
  return y;
}

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

double Distance(float x, float v) { return std::fabs(double(x) - double(v)); }

// Row data: Gaussian, Gaussian with +-30 sigma outliers, and Gaussian with a
// zeroed stretch (a block whose scale is 0, for the block formats).
enum class Data { kGaussian, kOutliers, kZeroStretch };
constexpr Data kAllData[] = {Data::kGaussian, Data::kOutliers, Data::kZeroStretch};

class RoundInPlaceTest : public ::testing::TestWithParam<const FormatInfo*> {
 protected:
  const FormatInfo& F() const { return *GetParam(); }
  // A few blocks, and at least 192 elements for the per-row formats.
  int64_t N() const {
    const int64_t b = F().block_size;
    return std::max<int64_t>(3 * b, (192 + b - 1) / b * b);
  }
  uint64_t Seed(Data data, uint64_t salt) const {
    return BaseSeed() * 1000003u + uint64_t(F().id) * 7919u + uint64_t(data) * 131u + salt;
  }
  std::string Trace(uint64_t seed) const {
    return std::string(F().name) + " seed=" + std::to_string(seed) +
           " (base LOWBIT_TEST_SEED=" + std::to_string(BaseSeed()) + ")";
  }
  std::vector<uint8_t> QuantizedRow(Data data, uint64_t seed) const {
    const int64_t n = N();
    std::mt19937_64 rng(seed);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = float(Gaussian(rng));
    if (data == Data::kOutliers) {
      for (int k = 0; k < 4; ++k) x[size_t(rng() % uint64_t(n))] = (k % 2 ? -30.0f : 30.0f) * float(1 + Uniform(rng));
    } else if (data == Data::kZeroStretch) {
      const int64_t len = std::min<int64_t>(n / 2, std::max(64, F().block_size));
      std::fill(x.begin(), x.begin() + len, 0.0f);
    }
    std::vector<uint8_t> row(F().RowBytes(n));
    F().quantize(x.data(), 1, n, row.data(), nullptr);
    return row;
  }
  void SetUp() override {
    if (F().round_in_place == nullptr) GTEST_SKIP() << F().name << " has no round_in_place";
  }
};

TEST(RoundInPlace, EveryWeightFormatHasIt) {
  std::string missing;
  for (const FormatInfo& f : AllFormats()) {
    if (f.weight_format && f.round_in_place == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(f.name);
  }
  EXPECT_TRUE(missing.empty()) << "weight formats without RoundInPlace: " << missing;
}

TEST(RoundInPlace, EveryWeightFormatHasCodeFacts) {
  for (const FormatInfo& f : AllFormats())
    if (f.weight_format) {
      EXPECT_GE(FactsOf(f.name).group, 0) << f.name << ": add it to FactsOf in this test";
    }
}

// The search every format's RoundInPlace uses, on monotone sequences with
// flats (equal neighbours, as float rounding of c * step + offset produces
// when the offset dwarfs the step), ascending and descending, against a
// brute-force nearest.
TEST(RoundUtil, NearestMonotoneCodeMatchesBruteForce) {
  const uint64_t seed = BaseSeed() + 17;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20000; ++trial) {
    const int count = 1 + int(rng() % 40);
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = float(int(rng() % 24) - 12) * 0.25f;  // few levels: many flats
    std::sort(values.begin(), values.end());
    if (rng() % 2) std::reverse(values.begin(), values.end());
    const int lo = int(rng() % 5) - 2;  // codes lo .. lo + count - 1
    auto value = [&](int c) { return values[size_t(c - lo)]; };
    const float x = rng() % 4 == 0 ? value(lo + int(rng() % uint64_t(count))) : float(Gaussian(rng) * 4.0);
    const int got = round_util::NearestMonotoneCode(x, lo, lo + count - 1, value);
    ASSERT_GE(got, lo);
    ASSERT_LT(got, lo + count);
    double best = INFINITY;
    for (float v : values) best = std::min(best, Distance(x, v));
    ASSERT_EQ(Distance(x, value(got)), best) << "trial " << trial << " x=" << x;
  }
}

// RoundInPlace(row, n, i, decoded[i]) returns decoded[i] and the row still
// decodes to the same values, for every i.
TEST_P(RoundInPlaceTest, DecodedValuesAreFixedPoints) {
  const int64_t n = N();
  for (Data data : kAllData) {
    const uint64_t seed = Seed(data, 1);
    SCOPED_TRACE(Trace(seed));
    std::vector<uint8_t> row = QuantizedRow(data, seed);
    const std::vector<float> decoded = Decode(F(), row, n);
    for (int64_t i = 0; i < n; ++i) {
      const float got = F().round_in_place(row.data(), n, i, decoded[size_t(i)]);
      ASSERT_EQ(got, decoded[size_t(i)]) << "element " << i;
      const std::vector<float> after = Decode(F(), row, n);
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(after[size_t(j)], decoded[size_t(j)]) << "element " << j << " after rounding " << i;
    }
  }
}

// Many calls on one row, at random elements with random targets across the
// row's range: after each, the row decodes to what is expected (element i to
// the returned value, the others as before). Reaches code combinations a
// quantizer rarely writes, e.g. most of TQ1_0's 243 five-trit bytes.
TEST_P(RoundInPlaceTest, RandomWalkMovesOnlyTheRoundedElement) {
  const int64_t n = N();
  for (Data data : {Data::kGaussian, Data::kOutliers}) {
    const uint64_t seed = Seed(data, 3);
    SCOPED_TRACE(Trace(seed));
    std::vector<uint8_t> row = QuantizedRow(data, seed);
    std::vector<float> expected = Decode(F(), row, n);
    const auto [lo, hi] = std::minmax_element(expected.begin(), expected.end());
    const double low = *lo, span = std::max(double(*hi) - double(*lo), 1e-6);
    std::mt19937_64 rng(seed ^ 0xa11);
    for (int step = 0; step < 2000; ++step) {
      const int64_t i = int64_t(rng() % uint64_t(n));
      const float x = float(low - 0.1 * span + 1.2 * span * Uniform(rng));
      expected[size_t(i)] = F().round_in_place(row.data(), n, i, x);
      const std::vector<float> after = Decode(F(), row, n);
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_TRUE(SameBits(after[size_t(j)], expected[size_t(j)]))
            << "step " << step << ": rounding element " << i << " to x=" << x << ", element " << j << " decodes to "
            << after[size_t(j)] << ", expected " << expected[size_t(j)];
      }
    }
  }
}

// The sweep: every value RoundInPlace returns for element i over a fine grid
// (uniform across the scale group's range and beyond, geometric towards 0
// for the floating-point and logarithmic codes, the group's decoded values,
// and +-inf), on a scratch copy of the row.
std::vector<float> ReachableValues(const FormatInfo& f, std::vector<uint8_t> row, int64_t n, int64_t i,
                                   const std::vector<float>& group_values) {
  float lo = 0.0f, hi = 0.0f;
  for (float v : group_values) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double span = std::max(double(hi) - double(lo), 1e-6);
  std::set<float> values;
  auto probe = [&](double x) { values.insert(f.round_in_place(row.data(), n, i, float(x))); };
  constexpr int kUniform = 4096;
  for (int k = 0; k <= kUniform; ++k) probe(double(lo) - 0.5 * span + 2.0 * span * k / kUniform);
  const double amax = std::max(std::fabs(double(lo)), std::fabs(double(hi)));
  for (int k = 0; k <= 32 * 40; ++k) {
    probe(amax * std::exp2(-k / 32.0));
    probe(-amax * std::exp2(-k / 32.0));
  }
  for (float v : group_values) probe(v);
  probe(0.0);
  probe(INFINITY);  // defined to give the extreme codes
  probe(-INFINITY);
  std::vector<float> out;
  for (float v : values)
    if (out.empty() || v != out.back()) out.push_back(v);  // +0 and -0 count once
  return out;
}

TEST_P(RoundInPlaceTest, NearestOfTheReachableValues) {
  const int64_t n = N();
  const CodeFacts facts = FactsOf(F().name);
  ASSERT_GE(facts.group, 0) << F().name << ": add it to FactsOf in this test";
  const int64_t group = facts.group == 0 ? n : facts.group;
  for (Data data : kAllData) {
    const uint64_t seed = Seed(data, 2);
    SCOPED_TRACE(Trace(seed));
    const std::vector<uint8_t> original = QuantizedRow(data, seed);
    const std::vector<float> decoded = Decode(F(), original, n);
    std::mt19937_64 rng(seed ^ 0x5eed);
    std::vector<int64_t> elements = {0, n - 1, n / 2};
    for (int k = 0; k < 3; ++k) elements.push_back(int64_t(rng() % uint64_t(n)));
    for (int64_t i : elements) {
      SCOPED_TRACE("element " + std::to_string(i));
      const int64_t first = i / group * group;
      const std::vector<float> group_values(decoded.begin() + first, decoded.begin() + first + group);
      const std::vector<float> reachable = ReachableValues(F(), original, n, i, group_values);
      // (c) the neighbours' values are reachable (they share the scales), (d) no more values than codes.
      for (float v : group_values)
        EXPECT_TRUE(std::binary_search(reachable.begin(), reachable.end(), v)) << "value " << v << " not reachable";
      if (facts.codes > 0) {
        EXPECT_LE(double(reachable.size()), facts.codes);
      }
      for (float v : reachable) ASSERT_TRUE(std::isfinite(v)) << "reachable value " << v;

      // The x to check: uniform over the group's range and beyond, near zero, the
      // midpoints between consecutive reachable values and their float
      // neighbours, the reachable values, and the special inputs.
      const auto [lo, hi] = std::minmax_element(group_values.begin(), group_values.end());
      const double low = std::min(0.0f, *lo), span = std::max(double(std::max(0.0f, *hi)) - low, 1e-6);
      std::vector<float> xs;
      for (int k = 0; k < 64; ++k) xs.push_back(float(low - 0.25 * span + 1.5 * span * Uniform(rng)));
      for (int k = 0; k < 16; ++k) xs.push_back(float(Gaussian(rng) * span * 1e-3));
      const size_t stride = std::max<size_t>(1, reachable.size() / 128);
      for (size_t k = rng() % stride; k + 1 < reachable.size(); k += stride) {
        const float mid = float((double(reachable[k]) + double(reachable[k + 1])) / 2);
        xs.insert(xs.end(), {mid, std::nextafter(mid, -INFINITY), std::nextafter(mid, INFINITY), reachable[k]});
      }
      xs.insert(xs.end(), {0.0f, -0.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 1e-30f, -1e-30f});

      std::vector<uint8_t> row = original;
      for (float x : xs) {
        const float got = F().round_in_place(row.data(), n, i, x);
        ASSERT_TRUE(std::isfinite(got)) << "x=" << x;
        double nearest = INFINITY;
        for (float v : reachable) nearest = std::min(nearest, Distance(x, v));
        ASSERT_LE(Distance(x, got), nearest) << "x=" << x << " got " << got << " not the nearest reachable value";
        // Beyond the extremes (where a double distance can no longer tell them apart): the extreme.
        if (x >= reachable.back()) {
          ASSERT_EQ(got, reachable.back()) << "x=" << x;
        }
        if (x <= reachable.front()) {
          ASSERT_EQ(got, reachable.front()) << "x=" << x;
        }
        const std::vector<float> after = Decode(F(), row, n);
        ASSERT_TRUE(SameBits(after[size_t(i)], got)) << "x=" << x << " returned " << got << ", dequantize gives "
                                                     << after[size_t(i)];
        for (int64_t j = 0; j < n; ++j) {
          if (j == i) continue;
          ASSERT_TRUE(SameBits(after[size_t(j)], decoded[size_t(j)])) << "x=" << x << " moved element " << j;
        }
      }
      // Infinities clamp to the extreme codes; NaN counts as 0.
      EXPECT_EQ(F().round_in_place(row.data(), n, i, INFINITY), reachable.back());
      EXPECT_EQ(F().round_in_place(row.data(), n, i, -INFINITY), reachable.front());
      const float at_zero = F().round_in_place(row.data(), n, i, 0.0f);
      EXPECT_EQ(F().round_in_place(row.data(), n, i, NAN), at_zero);
    }
  }
}

std::string FormatParamName(const ::testing::TestParamInfo<const FormatInfo*>& info) {
  return std::string(info.param->name);
}

std::vector<const FormatInfo*> WeightFormats() {
  std::vector<const FormatInfo*> out;
  for (const FormatInfo& f : AllFormats())
    if (f.weight_format) out.push_back(&f);
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, RoundInPlaceTest, ::testing::ValuesIn(WeightFormats()), FormatParamName);

}  // namespace
}  // namespace lowbit
