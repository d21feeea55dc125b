// Conformance tests generated from the format list (formats/all_formats.h):
// every format, including ones added later, gets round trips on Gaussian,
// heavy-tailed, constant, all-zero and tiny data with error windows bounded
// on both sides, idempotence, 1/2/3-block rows with guard bytes, and table
// consistency. Then exhaustive code tests for the small code spaces (FP8,
// NF4, FP4, log4, every INT level of all 40 INT formats).
//
// Random data is replayable: the seed is printed on failure; set
// LOWBIT_TEST_SEED to rerun with another base seed.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "core/fp8.h"
#include "formats/all_formats.h"
#include "formats/format.h"

namespace lowbit {
namespace {

uint64_t BaseSeed() {
  if (const char* env = std::getenv("LOWBIT_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return 20240611;
}

// splitmix64: tiny, fast, identical on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return double(Next() >> 11) * 0x1p-53; }  // [0, 1)
  double Gaussian() {                                            // Box-Muller
    const double u = 1.0 - Uniform(), v = Uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  // Student-t with `nu` degrees of freedom scaled to unit variance (nu > 2).
  double StudentT(int nu) {
    double chi2 = 0.0;
    for (int i = 0; i < nu; ++i) {
      const double g = Gaussian();
      chi2 += g * g;
    }
    return Gaussian() / std::sqrt(chi2 / nu) * std::sqrt((nu - 2.0) / nu);
  }

 private:
  uint64_t state_;
};

// Facts the typed traits may declare beyond FormatInfo, collected from the
// type list. kIdempotent (default true): quantize(dequantize(q)) == q.
template <typename F>
constexpr bool IsIdempotent() {
  if constexpr (requires { F::kIdempotent; }) {
    return F::kIdempotent;
  } else {
    return true;
  }
}
template <typename... Fs>
std::vector<bool> IdempotenceTable(TypeList<Fs...>) {
  return {IsIdempotent<Fs>()...};
}
bool Idempotent(const FormatInfo& f) {
  static const std::vector<bool> table = IdempotenceTable(AllFormatTypes{});
  return table[size_t(f.id)];
}

std::vector<uint8_t> Quantize(const FormatInfo& f, const std::vector<float>& x, int64_t rows, int64_t n) {
  std::vector<uint8_t> q(size_t(rows) * f.RowBytes(n));
  f.quantize(x.data(), rows, n, q.data(), nullptr);
  return q;
}

std::vector<float> Dequantize(const FormatInfo& f, const std::vector<uint8_t>& q, int64_t rows, int64_t n) {
  std::vector<float> y(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r) f.dequantize(q.data() + size_t(r) * f.RowBytes(n), y.data() + r * n, n);
  return y;
}

// sqrt(sum (x - y)^2 / sum x^2), in double; 0 when x and y are all zero.
double RelRmse(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(x[i]) * x[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

bool AllFinite(const std::vector<float>& y) {
  for (float v : y)
    if (!std::isfinite(v)) return false;
  return true;
}

bool AllZero(const std::vector<float>& y) {
  for (float v : y)
    if (v != 0.0f) return false;
  return true;
}

// Shape of every random test tensor: 16 rows of 4096 (a multiple of every
// block size, and the row length the rmse windows are specified for).
constexpr int64_t kRows = 16, kCols = 4096;

// Heavy tails: Student-t(4) plus kOutliers values at +-30 sigma. An outlier
// stretches a per-row (or per-tensor) scale from the Gaussian absmax of a
// 4096 row, >= ~3.5 sigma, to 30 sigma: the error of such formats grows by up
// to 30 / 3.5 ~ 8.6 (rounded up to 10); block formats grow far less. An
// error can never exceed 1 by much when 0 is a code (|q(x) - x| <= |x|).
constexpr double kOutlierSigma = 30.0;
constexpr int kOutliers = 8;
constexpr double kHeavyGrowth = 10.0;

class FormatTest : public ::testing::TestWithParam<const FormatInfo*> {
 protected:
  const FormatInfo& F() const { return *GetParam(); }
  uint64_t Seed(uint64_t salt) const { return BaseSeed() * 1000003u + uint64_t(F().id) * 7919u + salt; }
  std::vector<float> GaussianData(uint64_t seed, double sigma = 1.0) const {
    Rng rng(seed);
    std::vector<float> x(size_t(kRows * kCols));
    for (float& v : x) v = float(sigma * rng.Gaussian());
    return x;
  }
};

std::string Trace(const FormatInfo& f, uint64_t seed) {
  return std::string(f.name) + " seed=" + std::to_string(seed) + " (base LOWBIT_TEST_SEED=" +
         std::to_string(BaseSeed()) + ")";
}

TEST_P(FormatTest, GaussianErrorInsideWindow) {
  const uint64_t seed = Seed(1);
  SCOPED_TRACE(Trace(F(), seed));
  const std::vector<float> x = GaussianData(seed);
  const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
  ASSERT_TRUE(AllFinite(y));
  const double err = RelRmse(x, y);
  std::printf("[ measured ] %-20s rel_rmse %.5f  window [%.4f, %.4f]  %.4f bits/weight\n", std::string(F().name).c_str(),
              err, F().rmse_lo, F().rmse_hi, F().BitsPerWeight(kCols));
  EXPECT_GE(err, F().rmse_lo);
  EXPECT_LE(err, F().rmse_hi);
}

TEST_P(FormatTest, HeavyTailedErrorBounded) {
  const uint64_t seed = Seed(2);
  SCOPED_TRACE(Trace(F(), seed));
  Rng rng(seed);
  std::vector<float> x(size_t(kRows * kCols));
  for (float& v : x) v = float(rng.StudentT(4));
  for (int i = 0; i < kOutliers; ++i) x[size_t(rng.Next() % x.size())] = float((i % 2 ? -1 : 1) * kOutlierSigma);
  const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
  ASSERT_TRUE(AllFinite(y));
  const double err = RelRmse(x, y);
  EXPECT_GE(err, F().rmse_lo / 4);
  EXPECT_LE(err, std::min(1.0, kHeavyGrowth * F().rmse_hi));
}

TEST_P(FormatTest, ConstantRowsNoWorseThanGaussian) {
  for (float c : {0.37f, -2.5f, 1000.0f}) {
    SCOPED_TRACE(std::string(F().name) + " constant " + std::to_string(c));
    const std::vector<float> x(size_t(kRows * kCols), c);
    const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
    ASSERT_TRUE(AllFinite(y));
    EXPECT_LE(RelRmse(x, y), F().rmse_hi);
  }
}

TEST_P(FormatTest, AllZeroIsExactlyZero) {
  const std::vector<float> x(size_t(kRows * kCols), 0.0f);
  const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
  EXPECT_TRUE(AllZero(y)) << F().name;
}

// 1e-30 is below every f16 scale (min subnormal 6e-8): such formats flush to
// zero; f32-scaled ones must keep the Gaussian accuracy. Never NaN/inf.
TEST_P(FormatTest, TinyDataFlushesOrKeepsAccuracy) {
  const uint64_t seed = Seed(3);
  SCOPED_TRACE(Trace(F(), seed));
  const std::vector<float> x = GaussianData(seed, 1e-30);
  const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
  ASSERT_TRUE(AllFinite(y));
  if (!AllZero(y)) {
    EXPECT_LE(RelRmse(x, y), F().rmse_hi);
  }
}

TEST_P(FormatTest, RequantizationIsIdempotent) {
  const uint64_t seed = Seed(4);
  SCOPED_TRACE(Trace(F(), seed));
  const std::vector<float> x = GaussianData(seed);
  const std::vector<uint8_t> q1 = Quantize(F(), x, kRows, kCols);
  const std::vector<float> y1 = Dequantize(F(), q1, kRows, kCols);
  const std::vector<uint8_t> q2 = Quantize(F(), y1, kRows, kCols);
  if (Idempotent(F())) {
    size_t first_diff = q1.size();
    for (size_t i = 0; i < q1.size() && first_diff == q1.size(); ++i)
      if (q1[i] != q2[i]) first_diff = i;
    EXPECT_EQ(first_diff, q1.size()) << "re-quantized bytes differ first at byte " << first_diff << " (row "
                                     << first_diff / F().RowBytes(kCols) << ")";
  } else {  // stable: re-quantization costs at most one more Gaussian-sized error
    EXPECT_LE(RelRmse(y1, Dequantize(F(), q2, kRows, kCols)), F().rmse_hi);
  }
}

// Rows of 1, 2 and 3 blocks: the quantizer writes every byte of
// rows * RowBytes(n) (two different fills give the same bytes) and nothing
// past it; the dequantizer writes n floats per row and nothing past them.
TEST_P(FormatTest, OneTwoThreeBlockRowsWriteExactlyRowBytes) {
  constexpr size_t kGuard = 64;
  constexpr int64_t rows = 3;
  for (int64_t blocks = 1; blocks <= 3; ++blocks) {
    const int64_t n = blocks * F().block_size;
    const uint64_t seed = Seed(10 + uint64_t(blocks));
    SCOPED_TRACE(Trace(F(), seed) + " n=" + std::to_string(n));
    Rng rng(seed);
    std::vector<float> x(size_t(rows * n));
    for (float& v : x) v = float(rng.Gaussian());
    const size_t bytes = size_t(rows) * F().RowBytes(n);
    EXPECT_EQ(F().RowBytes(n), size_t(F().row_header_bytes) + size_t(blocks) * size_t(F().block_bytes));
    EXPECT_DOUBLE_EQ(F().BitsPerWeight(n) * double(n) / 8.0, double(F().RowBytes(n)));
    std::vector<uint8_t> a(bytes + kGuard, 0xA5), b(bytes + kGuard, 0x5A);
    F().quantize(x.data(), rows, n, a.data(), nullptr);
    F().quantize(x.data(), rows, n, b.data(), nullptr);
    EXPECT_TRUE(std::equal(a.begin(), a.begin() + std::ptrdiff_t(bytes), b.begin())) << "unwritten bytes";
    for (size_t i = bytes; i < bytes + kGuard; ++i) ASSERT_EQ(a[i], 0xA5) << "wrote past RowBytes at " << i;
    std::vector<float> y(size_t(rows * n) + 16, -7.0f);
    for (int64_t r = 0; r < rows; ++r) F().dequantize(a.data() + size_t(r) * F().RowBytes(n), y.data() + r * n, n);
    for (size_t i = size_t(rows * n); i < y.size(); ++i) ASSERT_EQ(y[i], -7.0f) << "wrote past n";
    y.resize(size_t(rows * n));
    ASSERT_TRUE(AllFinite(y));
    EXPECT_LE(RelRmse(x, y), 1.0);

    // The seam's DequantizeRows (stride RowBytes) agrees with the codec.
    TensorView view;
    view.type = F().id;
    view.shape = {rows, n};
    view.data = a.data();
    view.bytes = bytes;
    std::vector<float> z(size_t(rows * n));
    DequantizeRows(view, 0, rows, z.data());
    EXPECT_EQ(std::memcmp(z.data(), y.data(), z.size() * sizeof(float)), 0);
  }
}

std::string FormatParamName(const ::testing::TestParamInfo<const FormatInfo*>& info) {
  return std::string(info.param->name);
}

std::vector<const FormatInfo*> AllFormatPointers() {
  std::vector<const FormatInfo*> out;
  for (const FormatInfo& f : AllFormats()) out.push_back(&f);
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, FormatTest, ::testing::ValuesIn(AllFormatPointers()), FormatParamName);

TEST(FormatTable, NamesIdsAndFactsAreConsistent) {
  std::set<std::string> names;
  std::set<uint32_t> gguf_ids;
  for (const FormatInfo& f : AllFormats()) {
    SCOPED_TRACE(std::string(f.name));
    EXPECT_EQ(&GetFormat(f.id), &f);
    EXPECT_TRUE(names.insert(std::string(f.name)).second) << "duplicate name";
    EXPECT_TRUE(gguf_ids.insert(f.gguf_type).second) << "duplicate GGUF type " << f.gguf_type;
    EXPECT_EQ(FindFormatByName(f.name), &f);
    EXPECT_EQ(FindFormatByGgufType(f.gguf_type), &f);
    EXPECT_EQ(f.ggml_native, f.gguf_type < 1024);
    for (char c : f.name) {
      EXPECT_TRUE(std::islower(c) || std::isdigit(c) || c == '_') << f.name;
    }
    EXPECT_FALSE(f.datasheet.empty());
    EXPECT_LE(f.rmse_lo, f.rmse_hi);
    EXPECT_LT(size_t(f.activation), AllFormats().size());
  }
}

// The lowbit-private GGUF ids are a file format: they must never change.
TEST(FormatTable, PrivateGgufIdsArePinned) {
  const std::pair<const char*, uint32_t> pinned[] = {
      {"fp8_e4m3", 1024},         {"fp8_e5m2", 1025},        {"nf4", 1026},           {"fp4", 1027},
      {"nf4_dq", 1028},           {"fp4_dq", 1029},          {"log4", 1030},          {"int2_sym_tensor", 1120},
      {"int3_asym_g64", 1138},    {"int4_sym_g128", 1144},   {"int4_asym_g128", 1149}, {"int4_sym_channel", 1141},
      {"int8_sym_tensor", 1180},  {"int8_asym_channel", 1186}, {"int8_asym_g128", 1189}};
  for (const auto& [name, id] : pinned) {
    const FormatInfo* f = FindFormatByName(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->gguf_type, id) << name;
  }
  EXPECT_DOUBLE_EQ(FindFormatByName("int4_sym_g128")->BitsPerWeight(4096), 4.125);
  EXPECT_DOUBLE_EQ(FindFormatByName("int4_asym_g128")->BitsPerWeight(4096), 4.1875);
  EXPECT_DOUBLE_EQ(FindFormatByName("int3_asym_g64")->BitsPerWeight(4096), 3.375);
  EXPECT_DOUBLE_EQ(FindFormatByName("nf4")->BitsPerWeight(4096), 4.5);
  EXPECT_DOUBLE_EQ(FindFormatByName("nf4_dq")->BitsPerWeight(4096), 4.140625);
}

}  // namespace
}  // namespace lowbit
