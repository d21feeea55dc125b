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
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/fp8.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "test_util.h"
#include "formats/quant_util.h"

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
  double Gaussian() {                                          // Box-Muller
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
// type list. kIdempotent (default true): quantize(dequantize(q)) == q byte
// for byte; formats whose quantizer searches (k-quants) or re-derives shared
// statistics (double quantization) declare it false and are held to
// "re-quantization costs at most one Gaussian-window error" instead.
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
  return std::string(f.name) + " seed=" + std::to_string(seed) +
         " (base LOWBIT_TEST_SEED=" + std::to_string(BaseSeed()) + ")";
}

TEST_P(FormatTest, GaussianErrorInsideWindow) {
  const uint64_t seed = Seed(1);
  SCOPED_TRACE(Trace(F(), seed));
  const std::vector<float> x = GaussianData(seed);
  const std::vector<float> y = Dequantize(F(), Quantize(F(), x, kRows, kCols), kRows, kCols);
  ASSERT_TRUE(AllFinite(y));
  const double err = RelRmse(x, y);
  std::printf("[ measured ] %-20s rel_rmse %.5f  window [%.4f, %.4f]  %.4f bits/weight\n",
              std::string(F().name).c_str(), err, F().rmse_lo, F().rmse_hi, F().BitsPerWeight(kCols));
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
                                     << first_diff / F().RowBytes(kCols)
                                     << "); a quantizer that searches (not idempotent by design) declares "
                                        "`static constexpr bool kIdempotent = false;` in its traits";
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
  const std::pair<const char*, uint32_t> pinned[] = {{"fp8_e4m3", 1024},
                                                     {"fp8_e5m2", 1025},
                                                     {"nf4", 1026},
                                                     {"fp4", 1027},
                                                     {"nf4_dq", 1028},
                                                     {"fp4_dq", 1029},
                                                     {"log4", 1030},
                                                     {"int2_sym_tensor", 1120},
                                                     {"int3_asym_g64", 1138},
                                                     {"int4_sym_g128", 1144},
                                                     {"int4_asym_g128", 1149},
                                                     {"int4_sym_channel", 1141},
                                                     {"int8_sym_tensor", 1180},
                                                     {"int8_asym_channel", 1186},
                                                     {"int8_asym_g128", 1189}};
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

// `lowbit formats --json` lists exactly the format table (skips when the
// binary has not been built, e.g. when only this test target was built).
TEST(FormatsCommand, JsonListsEveryFormat) {
  if (!std::filesystem::exists(LOWBIT_BINARY)) GTEST_SKIP() << LOWBIT_BINARY << " not built";
  const ::lowbit::testing::CommandResult r = ::lowbit::testing::RunLowbit("formats --json", /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string& out = r.output;
  const nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), AllFormats().size());
  for (const FormatInfo& f : AllFormats()) {
    const nlohmann::json& e = j[size_t(f.id)];
    EXPECT_EQ(e["name"], std::string(f.name));
    EXPECT_EQ(e["gguf_type"], f.gguf_type);
    EXPECT_EQ(e["block_bytes"], f.block_bytes);
    EXPECT_DOUBLE_EQ(e["bits_per_weight"].get<double>(), f.BitsPerWeight(4096));
  }
}

// ---------------------------------------------------------------------------
// Exhaustive code tests for the small code spaces.

template <typename Codec>
void CheckAllFp8Codes(int expected_nans) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    SCOPED_TRACE("code " + std::to_string(c));
    const float v = Codec::Decode(uint8_t(c));
    if (std::isnan(v)) {
      ++nans;
      EXPECT_EQ(Codec::Encode(v), Codec::kNanCode);
      continue;
    }
    EXPECT_EQ(std::signbit(v), (c & 0x80) != 0);
    if (std::isinf(v)) {  // E5M2 only: saturating encode maps inf to the largest finite code
      EXPECT_EQ(Codec::Encode(v), uint8_t((c & 0x80) | Codec::kMaxFiniteCode));
      continue;
    }
    EXPECT_EQ(Codec::Encode(v), uint8_t(c));
  }
  EXPECT_EQ(nans, expected_nans);
}

// Encode against a brute-force nearest search over all finite codes (ties to
// the even code, saturation past the largest), on random magnitudes across
// the whole range, every exact midpoint (the ties) and its neighbours.
template <typename Codec>
void CheckFp8RoundingAgainstBruteForce(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<float> values;
  for (int c = 0; c <= Codec::kMaxFiniteCode; ++c) values.push_back(Codec::Decode(uint8_t(c)));
  auto nearest = [&](float a) {
    if (a >= Codec::kMaxFinite) return Codec::kMaxFiniteCode;  // saturation
    int best = 0;
    for (int c = 1; c < int(values.size()); ++c) {
      const double d = std::fabs(double(a) - values[size_t(c)]), bd = std::fabs(double(a) - values[size_t(best)]);
      if (d < bd || (d == bd && c % 2 == 0)) best = c;
    }
    return uint8_t(best);
  };
  std::vector<float> probes;
  for (size_t c = 0; c + 1 < values.size(); ++c) {
    const float mid = (values[c] + values[c + 1]) / 2;
    probes.insert(probes.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)});
  }
  Rng rng(seed);
  for (int i = 0; i < 20000; ++i)
    probes.push_back(float(std::exp2(rng.Uniform() * 40.0 - 24.0) * (Codec::kMaxFinite / 256.0)));
  probes.insert(probes.end(), {Codec::kMaxFinite * 1.01f, Codec::kMaxFinite * 1e6f, INFINITY, 0.0f});
  for (float a : probes) {
    const uint8_t want = nearest(a);
    EXPECT_EQ(Codec::Encode(a), want) << "x=" << a;
    EXPECT_EQ(Codec::Encode(-a), uint8_t(0x80 | want)) << "x=" << -a;
  }
}

TEST(Fp8, E4M3AllCodesAndKnownValues) {
  CheckAllFp8Codes<Fp8E4M3>(2);
  EXPECT_EQ(Fp8E4M3::kMaxFinite, 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x7E), 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Fp8E4M3ToF32(0x38), 1.0f);                  // exponent field 7 = bias
  EXPECT_EQ(F32ToFp8E4M3(-0.0f), 0x80);
}

TEST(Fp8, E5M2AllCodesAndKnownValues) {
  CheckAllFp8Codes<Fp8E5M2>(6);
  EXPECT_EQ(Fp8E5M2::kMaxFinite, 57344.0f);
  EXPECT_EQ(Fp8E5M2ToF32(0x7B), 57344.0f);
  EXPECT_EQ(Fp8E5M2ToF32(0x7C), INFINITY);
  EXPECT_EQ(Fp8E5M2ToF32(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(Fp8E5M2ToF32(0x3C), 1.0f);
}

TEST(Fp8, RoundToNearestEvenWithSaturation) {
  CheckFp8RoundingAgainstBruteForce<Fp8E4M3>(BaseSeed() + 1);
  CheckFp8RoundingAgainstBruteForce<Fp8E5M2>(BaseSeed() + 2);
}

// A row holding every finite code times an exact scale comes back bit for
// bit, with the codes in place.
template <typename Codec>
void CheckFp8RowHoldsEveryCode(const FormatInfo& f) {
  SCOPED_TRACE(std::string(f.name));
  std::vector<uint8_t> codes;
  for (int c = 0; c < 256; ++c)
    if ((c & 0x7F) <= Codec::kMaxFiniteCode) codes.push_back(uint8_t(c));
  const int64_t n = int64_t(codes.size());
  std::vector<float> x;
  for (uint8_t c : codes) x.push_back(0.75f * Codec::Decode(c));
  const std::vector<uint8_t> q = Quantize(f, x, 1, n);
  EXPECT_EQ(std::bit_cast<uint32_t>(quant::LoadF32(q.data())), std::bit_cast<uint32_t>(0.75f));
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(q[size_t(4 + i)], codes[size_t(i)]) << i;
  const std::vector<float> y = Dequantize(f, q, 1, n);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>(y[size_t(i)]), std::bit_cast<uint32_t>(x[size_t(i)])) << i;
}

TEST(Fp8, FormatRowsHoldEveryCodeExactly) {
  CheckFp8RowHoldsEveryCode<Fp8E4M3>(GetFormat(DTypeOf<Fp8E4M3Format>()));
  CheckFp8RowHoldsEveryCode<Fp8E5M2>(GetFormat(DTypeOf<Fp8E5M2Format>()));
}

TEST(Bnb, Nf4BookIsBitsandbytesVerbatim) {
  const float nf4[16] = {-1.0f,
                         -0.6961928009986877f,
                         -0.5250730514526367f,
                         -0.39491748809814453f,
                         -0.28444138169288635f,
                         -0.18477343022823334f,
                         -0.09105003625154495f,
                         0.0f,
                         0.07958029955625534f,
                         0.16093020141124725f,
                         0.24611230194568634f,
                         0.33791524171829224f,
                         0.44070982933044434f,
                         0.5626170039176941f,
                         0.7229568362236023f,
                         1.0f};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(bnb::CodeBook(bnb::Book4::kNf4)[c], nf4[c]);
  // bnb's first decision point (dQuantizeNF4): x > 0.03979014977812767 -> code 8.
  EXPECT_EQ(bnb::Encode4(bnb::Book4::kNf4, 0.03979014977812767f), 7);
  EXPECT_EQ(bnb::Encode4(bnb::Book4::kNf4, 0.0397902f), 8);
  const float fp4[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(bnb::CodeBook(bnb::Book4::kFp4)[c], fp4[c] / 12) << c;
  // bnb's dQuantizeFP4 decision points: 0.29166667 (between 3/12 and 4/12), 0.8333333 (8/12 .. 12/12).
  EXPECT_EQ(bnb::Encode4(bnb::Book4::kFp4, 0.2916f), 7);
  EXPECT_EQ(bnb::Encode4(bnb::Book4::kFp4, 0.2917f), 4);
  EXPECT_EQ(bnb::Encode4(bnb::Book4::kFp4, -0.84f), 11);
}

TEST(Bnb, DynamicMapIsCreateDynamicMapSigned) {
  const float* map = bnb::DynamicMap();
  for (int i = 0; i + 1 < 256; ++i) EXPECT_LT(map[i], map[i + 1]) << i;
  EXPECT_EQ(map[127], 0.0f);
  EXPECT_EQ(map[255], 1.0f);
  EXPECT_FLOAT_EQ(map[0], -(1.0f - 0.9f / 128));  // 10^0 * last midpoint of linspace(0.1, 1, 65)
  EXPECT_FLOAT_EQ(map[128], 0.55e-6f);            // 10^-6 * midpoint of linspace(0.1, 1, 2)
  EXPECT_FLOAT_EQ(map[254], 1.0f - 0.9f / 128);
}

// Every 4-bit code of nf4, fp4 (and their _dq rows: one block, so the
// decoded absmax is the offset, exact) and log4 round-trips bit for bit.
TEST(FourBitBooks, EveryCodeRoundTripsInPlace) {
  struct Case {
    const char* name;
    int group;
    int codes_at;     // offset of the first code byte of block 0
    bool high_first;  // first element in the high nibble
    float (*decode)(uint8_t);
  };
  const Case cases[] = {
      {"nf4", 64, 4, true, [](uint8_t c) { return bnb::CodeBook(bnb::Book4::kNf4)[c]; }},
      {"fp4", 64, 4, true, [](uint8_t c) { return bnb::CodeBook(bnb::Book4::kFp4)[c]; }},
      {"nf4_dq", 64, 9, true, [](uint8_t c) { return bnb::CodeBook(bnb::Book4::kNf4)[c]; }},
      {"fp4_dq", 64, 9, true, [](uint8_t c) { return bnb::CodeBook(bnb::Book4::kFp4)[c]; }},
      {"log4", 32, 2, false, Log4Format::DecodeCode},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const FormatInfo& f = *FindFormatByName(c.name);
    std::vector<float> x(size_t(c.group));
    for (int i = 0; i < c.group; ++i) x[size_t(i)] = c.decode(uint8_t(i % 16)) * 0.75f;
    const std::vector<uint8_t> q = Quantize(f, x, 1, c.group);
    for (int i = 0; i < c.group; i += 2) {
      const uint8_t byte = q[size_t(c.codes_at + i / 2)];
      const uint8_t first = c.high_first ? byte >> 4 : byte & 15, second = c.high_first ? byte & 15 : byte >> 4;
      EXPECT_EQ(first, i % 16) << i;
      EXPECT_EQ(second, (i + 1) % 16) << i;
    }
    const std::vector<float> y = Dequantize(f, q, 1, c.group);
    for (int i = 0; i < c.group; ++i)
      EXPECT_EQ(std::bit_cast<uint32_t>(y[size_t(i)]), std::bit_cast<uint32_t>(x[size_t(i)])) << i;
  }
}

TEST(IntFormats, PackingLayout) {
  uint8_t out[3];
  const uint8_t int3[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  quant::PackCodes<3>(int3, 8, out);
  uint32_t word = 0;
  for (int i = 0; i < 8; ++i) word |= uint32_t(i) << (3 * i);
  EXPECT_EQ(out[0] | out[1] << 8 | out[2] << 16, int(word));
  const uint8_t int4[2] = {1, 2};
  quant::PackCodes<4>(int4, 2, out);
  EXPECT_EQ(out[0], 0x21);
  const uint8_t int2[4] = {1, 2, 3, 0};
  quant::PackCodes<2>(int2, 4, out);
  EXPECT_EQ(out[0], 0x39);
  Rng rng(BaseSeed());
  for (int bits : {2, 3, 4}) {
    uint8_t codes[24], packed[12], back[24];
    for (uint8_t& c : codes) c = uint8_t(rng.Next() % (1u << bits));
    if (bits == 2) quant::PackCodes<2>(codes, 24, packed), quant::UnpackCodes<2>(packed, 24, back);
    if (bits == 3) quant::PackCodes<3>(codes, 24, packed), quant::UnpackCodes<3>(packed, 24, back);
    if (bits == 4) quant::PackCodes<4>(codes, 24, packed), quant::UnpackCodes<4>(packed, 24, back);
    EXPECT_EQ(std::memcmp(codes, back, 24), 0) << bits;
  }
}

// Every level of an INT format, in every group with its own exact scale and
// zero (each group pins both extremes so the quantizer recovers them), comes
// back bit for bit with the codes in place.
template <typename F>
void CheckEveryIntLevel() {
  const FormatInfo& f = GetFormat(DTypeOf<F>());
  SCOPED_TRACE(std::string(f.name));
  using Codec = typename F::Codec;
  constexpr int64_t rows = 2, n = 512;
  constexpr int kLevels = Codec::kMaxCode - Codec::kMinCode + 1;
  const int64_t group = F::kGrouped ? F::kGroupSize : n;
  std::vector<float> x(size_t(rows * n));
  std::vector<uint8_t> want(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < n / group; ++g) {
      const int64_t id = F::kGroupSize == kPerTensor ? 0 : r * (n / group) + g;
      const float scale = std::ldexp(1.0f + float(id % 8) / 8, -int(id % 5) - 2);  // exact in f16
      const int zero = F::kAsymmetric ? int((id * 37 + 5) % (Codec::kMaxCode + 1)) : Codec::kSymZero;
      for (int64_t i = 0; i < group; ++i) {
        const int64_t at = r * n + g * group + i;
        const int u = i == 0 ? Codec::kMinCode : i == 1 ? Codec::kMaxCode : Codec::kMinCode + int(at % kLevels);
        want[size_t(at)] = uint8_t(u);
        x[size_t(at)] = scale * float(u - zero);
      }
    }
  }
  const std::vector<uint8_t> q = Quantize(f, x, rows, n);
  const std::vector<float> y = Dequantize(f, q, rows, n);
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(x[i])) << "element " << i;
  std::vector<uint8_t> got(static_cast<size_t>(group));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = q.data() + size_t(r) * f.RowBytes(n);
    for (int64_t g = 0; g < n / group; ++g) {
      const uint8_t* codes = F::kGrouped ? row + g * F::kBlockBytes + F::kScaleBytes : row + F::kRowHeaderBytes;
      quant::UnpackCodes<F::kBitsPerCode>(codes, group, got.data());
      for (int64_t i = 0; i < group; ++i) ASSERT_EQ(got[size_t(i)], want[size_t(r * n + g * group + i)]) << i;
    }
  }
  EXPECT_EQ(Quantize(f, y, rows, n), q);
}

template <typename F>
int CheckIfIntFormat() {
  if constexpr (requires { F::kBitsPerCode; }) {
    CheckEveryIntLevel<F>();
    return 1;
  } else {
    return 0;
  }
}
template <typename... Fs>
int CheckIntFormats(TypeList<Fs...>) {
  return (CheckIfIntFormat<Fs>() + ...);
}

TEST(IntFormats, EveryLevelOfAllFortyFormatsRoundTrips) {
  EXPECT_EQ(CheckIntFormats(AllFormatTypes{}), 40);
  EXPECT_EQ((IntFormat<2, false, 32>::Codec::kSymMax), 1);  // int2 symmetric is ternary
}

}  // namespace
}  // namespace lowbit
