// llama.cpp compatibility of the ggml block formats (ggml_legacy.h,
// ggml_nl_ternary.h): our dequantized floats equal llama.cpp's bit for bit,
// our reference quantizer writes llama-quantize's bytes, plus the edge cases
// (zero, constant, tiny, huge, outlier blocks) and exhaustive code decodes.
// The generic round-trip windows of every format are in formats_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "formats/format.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lowbit {
namespace {

using testing::SharedPath;

constexpr const char* kModelDir = "models/tiny-llama-random/";

// Our ggml formats that have a llama-quantize fixture file, and the largest
// per-element decode error of a block as a fraction of its max |x| (edge
// tests; derived from the code spacing, measured with margin).
struct GgmlCase {
  const char* name;
  double max_err_of_amax;
};
constexpr GgmlCase kWeightCases[] = {
    {"q8_0", 0.0045},  // half a step of amax/127, plus f16 rounding of d
    {"q4_0", 0.126},   // the side opposite the block's extreme saturates at +7d = 7/8 amax
    {"q4_1", 0.07},    // half a step of (max - min)/15 <= 2 amax/30
    {"q5_0", 0.065},   // as q4_0 with 16 levels a side: 1/16 amax
    {"q5_1", 0.035},   // half a step of (max - min)/31
    {"iq4_nl", 0.2},   // half the widest table gap (24/127), plus a least-squares d below amax/127
    {"tq1_0", 0.51},   // ternary at d = amax: |x| just under amax/2 decodes to 0
    {"tq2_0", 0.51},
};

const FormatInfo& Format(const char* name) {
  const FormatInfo* f = FindFormatByName(name);
  if (f == nullptr) throw std::runtime_error(std::string("format not registered: ") + name);
  return *f;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<float> Decode(const FormatInfo& f, const std::vector<uint8_t>& bytes, int64_t rows, int64_t n) {
  std::vector<float> out(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r) f.dequantize(bytes.data() + size_t(r) * f.RowBytes(n), out.data() + r * n, n);
  return out;
}

std::vector<uint8_t> Encode(const FormatInfo& f, const std::vector<float>& x, int64_t rows, int64_t n,
                            const float* importance = nullptr) {
  std::vector<uint8_t> out(size_t(rows) * f.RowBytes(n));
  f.quantize(x.data(), rows, n, out.data(), importance);
  return out;
}

double RelativeRmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    ref += double(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

std::vector<float> Gaussian(size_t count, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(count);
  for (float& v : x) v = dist(rng);
  return x;
}

class GgmlFormatTest : public ::testing::TestWithParam<GgmlCase> {};

// 1. Our dequantizer equals llama.cpp's (gguf-py) output bit for bit.
TEST_P(GgmlFormatTest, DequantizeIsBitExact) {
  const std::string name = GetParam().name;
  const std::string model = std::string(kModelDir) + "tiny-llama-" + name + ".gguf";
  const std::string expected_path = std::string(kModelDir) + "expected/" + name + ".blk.0.attn_q.weight.f32";
  LOWBIT_REQUIRE_SHARED(model);
  LOWBIT_REQUIRE_SHARED(expected_path);
  GgufFile file(SharedPath(model));
  const GgufTensorInfo* info = file.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(info, nullptr);
  const TensorView view = file.View(*info);
  ASSERT_EQ(view.type, Format(name.c_str()).id);
  const std::vector<float> ours = ToF32(view);
  const std::vector<uint8_t> expected = ReadFile(SharedPath(expected_path));
  ASSERT_EQ(expected.size(), ours.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(ours.data(), expected.data(), expected.size()), 0);
}

// 2. Our reference quantizer (no importance) writes llama-quantize --pure's
// bytes, for every 2-D tensor of the model.
TEST_P(GgmlFormatTest, QuantizeMatchesLlamaQuantize) {
  const std::string name = GetParam().name;
  const std::string model = std::string(kModelDir) + "tiny-llama-" + name + ".gguf";
  const std::string source = std::string(kModelDir) + "tiny-llama-f32.gguf";
  LOWBIT_REQUIRE_SHARED(model);
  LOWBIT_REQUIRE_SHARED(source);
  const FormatInfo& f = Format(name.c_str());
  GgufFile quantized(SharedPath(model));
  GgufFile original(SharedPath(source));
  int tensors = 0;
  for (const GgufTensorInfo& info : original.tensors()) {
    if (info.ne.size() != 2) continue;
    const GgufTensorInfo* theirs = quantized.FindTensor(info.name);
    ASSERT_NE(theirs, nullptr) << info.name;
    ASSERT_EQ(theirs->ggml_type, f.gguf_type) << info.name;
    const int64_t n = int64_t(info.ne[0]), rows = int64_t(info.ne[1]);
    const std::vector<float> x = ToF32(original.View(info));
    const std::vector<uint8_t> ours = Encode(f, x, rows, n);
    ASSERT_EQ(ours.size(), theirs->bytes) << info.name;
    int64_t differing = 0;
    const int64_t blocks = int64_t(ours.size()) / f.block_bytes;
    for (int64_t b = 0; b < blocks; ++b)
      differing += std::memcmp(ours.data() + b * f.block_bytes, theirs->data + b * f.block_bytes, f.block_bytes) != 0;
    EXPECT_EQ(differing, 0) << name << " " << info.name << ": " << differing << " of " << blocks << " blocks differ";
    ++tensors;
  }
  EXPECT_GE(tensors, 3);
}

// 3. Edge blocks: no NaN/inf and every element within the format's bound.
void ExpectBlockBounded(const FormatInfo& f, const std::vector<float>& x, double max_err_of_amax) {
  const int64_t n = int64_t(x.size());
  const std::vector<float> y = Decode(f, Encode(f, x, 1, n), 1, n);
  for (int64_t b = 0; b < n; b += f.block_size) {
    float amax = 0;
    for (int64_t j = b; j < b + f.block_size; ++j) amax = std::max(amax, std::fabs(x[size_t(j)]));
    // Where the f16 scale is subnormal it is rounded to a multiple of 2^-24:
    // up to 2^-25 * (largest code, <= 128) more per element, and never more
    // than amax (a scale rounded to zero decodes the block to zeros).
    const double f16_floor = std::min(double(amax), 128.0 * 0x1p-25);
    for (int64_t j = b; j < b + f.block_size; ++j) {
      ASSERT_TRUE(std::isfinite(y[size_t(j)])) << f.name << " element " << j << " x=" << x[size_t(j)];
      ASSERT_LE(std::fabs(double(y[size_t(j)]) - x[size_t(j)]), max_err_of_amax * amax + f16_floor)
          << f.name << " element " << j << " x=" << x[size_t(j)];
    }
  }
}

TEST_P(GgmlFormatTest, EdgeBlocks) {
  const FormatInfo& f = Format(GetParam().name);
  const double bound = GetParam().max_err_of_amax;
  const size_t n = size_t(f.block_size) * 4;
  // All zero: decodes to exact zeros.
  const std::vector<float> zero(n, 0.0f);
  const std::vector<float> y0 = Decode(f, Encode(f, zero, 1, int64_t(n)), 1, int64_t(n));
  for (float v : y0) EXPECT_EQ(v, 0.0f) << f.name;
  // Constant blocks of either sign: only the f16 scale's rounding remains.
  for (float c : {0.37f, -2.5f, 1000.0f}) {
    const std::vector<float> x(n, c);
    const std::vector<float> y = Decode(f, Encode(f, x, 1, int64_t(n)), 1, int64_t(n));
    for (float v : y) EXPECT_NEAR(v, c, 2e-3 * std::fabs(c)) << f.name << " constant " << c;
  }
  // Tiny (below the f16 scale range: decodes to ~0), normal and huge magnitudes.
  for (float scale : {1e-30f, 1e-6f, 1.0f, 1e3f}) {
    std::vector<float> x = Gaussian(n, 7);
    for (float& v : x) v *= scale;
    ExpectBlockBounded(f, x, bound);
  }
  // A single outlier per block, 100x the rest.
  std::vector<float> x = Gaussian(n, 11, 0.01f);
  for (size_t b = 0; b < n; b += size_t(f.block_size)) x[b + 5] = (b % 2 ? -1.0f : 1.0f);
  ExpectBlockBounded(f, x, bound);
  // Beyond the f16 scale range llama.cpp writes inf scales; we saturate and
  // stay finite.
  std::vector<float> huge = Gaussian(n, 13);
  for (float& v : huge) v *= 1e30f;
  const std::vector<float> yh = Decode(f, Encode(f, huge, 1, int64_t(n)), 1, int64_t(n));
  for (float v : yh) ASSERT_TRUE(std::isfinite(v)) << f.name;
}

// With an importance vector the quantizer follows llama.cpp's weighted
// search: never worse than RTN on the weighted error, on average.
TEST_P(GgmlFormatTest, ImportanceLowersWeightedError) {
  const FormatInfo& f = Format(GetParam().name);
  const int64_t rows = 16, n = 4096;
  const std::vector<float> x = Gaussian(size_t(rows * n), 21);
  std::vector<float> importance(static_cast<size_t>(n));
  std::mt19937 rng(5);
  std::exponential_distribution<float> expo(1.0f);
  for (float& w : importance) w = expo(rng);
  const std::vector<float> plain = Decode(f, Encode(f, x, rows, n), rows, n);
  const std::vector<float> weighted = Decode(f, Encode(f, x, rows, n, importance.data()), rows, n);
  double err_plain = 0, err_weighted = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double w = importance[i % size_t(n)];
    err_plain += w * (x[i] - plain[i]) * (x[i] - plain[i]);
    err_weighted += w * (x[i] - weighted[i]) * (x[i] - weighted[i]);
  }
  EXPECT_LE(err_weighted, err_plain * 1.0001) << f.name;
  // Measured relative RMSE on N(0,1) rows of 4096, inside the format's window.
  const double rmse = RelativeRmse(x, plain);
  std::printf("%s: relative RMSE %.5f (window %.4f..%.4f)\n", f.name.data(), rmse, f.rmse_lo, f.rmse_hi);
  EXPECT_GT(rmse, f.rmse_lo) << f.name;
  EXPECT_LT(rmse, f.rmse_hi) << f.name;
}

// A block whose importance is all zero (a column never activated) has no
// error to minimise; llama.cpp stores a NaN IQ4_NL scale there, we must not.
TEST_P(GgmlFormatTest, ZeroImportanceBlockStaysFinite) {
  const FormatInfo& f = Format(GetParam().name);
  const int64_t n = 1024;
  const std::vector<float> x = Gaussian(size_t(n), 31);
  std::vector<float> importance(static_cast<size_t>(n), 1.0f);
  std::fill(importance.begin(), importance.begin() + f.block_size, 0.0f);
  const std::vector<float> y = Decode(f, Encode(f, x, 1, n, importance.data()), 1, n);
  for (float v : y) ASSERT_TRUE(std::isfinite(v)) << f.name;
  // The zero-weight block itself may decode to anything finite (Q4_0/Q5_0
  // store d = 0 there, as llama.cpp does); the others are unaffected.
  const std::vector<float> x_rest(x.begin() + f.block_size, x.end()), y_rest(y.begin() + f.block_size, y.end());
  EXPECT_LT(RelativeRmse(x_rest, y_rest), f.rmse_hi * 1.5) << f.name;
}

INSTANTIATE_TEST_SUITE_P(Ggml, GgmlFormatTest, ::testing::ValuesIn(kWeightCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Exhaustive decodes -------------------------------------------------------

TEST(GgmlLegacyTest, Q8_0DecodesEveryCode) {
  const FormatInfo& f = Format("q8_0");
  // 8 blocks cover all 256 int8 codes, d = 1 (f16 0x3C00).
  std::vector<uint8_t> row(8 * 34);
  for (int b = 0; b < 8; ++b) {
    row[size_t(b) * 34] = 0x00;
    row[size_t(b) * 34 + 1] = 0x3C;
    for (int j = 0; j < 32; ++j) row[size_t(b) * 34 + 2 + size_t(j)] = uint8_t(b * 32 + j);
  }
  std::vector<float> y(256);
  f.dequantize(row.data(), y.data(), 256);
  for (int c = 0; c < 256; ++c) EXPECT_EQ(y[size_t(c)], float(int8_t(uint8_t(c))));
}

TEST(GgmlLegacyTest, Q4_0DecodesEveryNibble) {
  const FormatInfo& f = Format("q4_0");
  // Byte j holds element j (low nibble) and j + 16 (high nibble); d = 1.
  uint8_t block[18] = {0x00, 0x3C};
  for (int j = 0; j < 16; ++j) block[2 + j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  f.dequantize(block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], float(j - 8));
    EXPECT_EQ(y[j + 16], float(7 - j));
  }
}

TEST(GgmlLegacyTest, Q4_1DecodesEveryNibble) {
  const FormatInfo& f = Format("q4_1");
  // d = 1, m = 0.5 (f16 0x3800).
  uint8_t block[20] = {0x00, 0x3C, 0x00, 0x38};
  for (int j = 0; j < 16; ++j) block[4 + j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  f.dequantize(block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], float(j) + 0.5f);
    EXPECT_EQ(y[j + 16], float(15 - j) + 0.5f);
  }
}

// Every 5-bit code, with its high bit taken from qh bit e for element e.
TEST(GgmlLegacyTest, Q5DecodesEveryCode) {
  for (const char* name : {"q5_0", "q5_1"}) {
    const FormatInfo& f = Format(name);
    const bool has_min = f.block_bytes == 24;
    uint8_t block[24] = {0x00, 0x3C, 0x00, 0x00};  // d = 1, m = 0
    uint8_t* qh = block + (has_min ? 4 : 2);
    uint8_t* qs = qh + 4;
    // Element e gets code (e * 7 + 3) % 32: a permutation, so all 32 appear.
    uint32_t bits = 0;
    for (int e = 0; e < 32; ++e) {
      const int code = (e * 7 + 3) % 32;
      bits |= uint32_t(code >> 4) << e;
      qs[e % 16] |= uint8_t((code & 15) << (e < 16 ? 0 : 4));
    }
    std::memcpy(qh, &bits, 4);
    float y[32];
    f.dequantize(block, y, 32);
    for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], float((e * 7 + 3) % 32 - (has_min ? 0 : 16))) << name << " " << e;
  }
}

TEST(GgmlLegacyTest, Q8_1MatchesQ8_0AndStoresScaledSum) {
  const FormatInfo& q80 = Format("q8_0");
  const FormatInfo& q81 = Format("q8_1");
  EXPECT_FALSE(q81.weight_format);
  const std::vector<float> x = Gaussian(256, 3);
  const std::vector<uint8_t> a = Encode(q80, x, 1, 256), b = Encode(q81, x, 1, 256);
  for (int blk = 0; blk < 8; ++blk) {
    const uint8_t* pa = a.data() + blk * 34;
    const uint8_t* pb = b.data() + blk * 36;
    EXPECT_EQ(std::memcmp(pa, pb, 2), 0);           // d
    EXPECT_EQ(std::memcmp(pa + 2, pb + 4, 32), 0);  // qs
    uint16_t d, s;
    std::memcpy(&d, pb, 2);
    std::memcpy(&s, pb + 2, 2);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += int8_t(pb[4 + j]);
    // s is f16(sum * d) with d the unrounded f32 scale, so compare loosely.
    EXPECT_NEAR(F16ToF32(s), sum * F16ToF32(d), 2e-3 * std::fabs(sum * F16ToF32(d)) + 1e-6);
  }
  EXPECT_EQ(Decode(q80, a, 1, 256), Decode(q81, b, 1, 256));
}

TEST(GgmlNlTernaryTest, Iq4NlDecodesEveryIndex) {
  const FormatInfo& f = Format("iq4_nl");
  constexpr int kTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  uint8_t block[18] = {0x00, 0x3C};  // d = 1
  for (int j = 0; j < 16; ++j) block[2 + j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  f.dequantize(block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], float(kTable[j]));
    EXPECT_EQ(y[j + 16], float(kTable[15 - j]));
  }
}

// Every one of the 3^5 trit patterns of a qs byte, and 3^4 of a qh byte,
// survives encode -> decode; every byte value decodes to trits in {0,1,2}.
TEST(GgmlNlTernaryTest, Tq1_0RoundTripsEveryTritPattern) {
  const FormatInfo& f = Format("tq1_0");
  for (int pattern = 0; pattern < 243; ++pattern) {
    // Element e of the block gets trit digit (e's slot in its byte) of the
    // pattern, so every byte of the block carries the same 5 (or 4) trits.
    std::vector<float> x(256);
    auto digit = [&](int slot) { return (pattern / int(std::pow(3, 4 - slot))) % 3; };
    for (int e = 0; e < 256; ++e) {
      const int slot = e < 160 ? e / 32 : e < 240 ? (e - 160) / 16 : (e - 240) / 4;
      x[size_t(e)] = float(digit(slot) - 1);
    }
    x[0] = 1.0f;  // d = 1 whatever the pattern
    ASSERT_EQ(Decode(f, Encode(f, x, 1, 256), 1, 256), x) << "pattern " << pattern;
  }
  uint8_t block[54] = {};
  block[52] = 0x00;
  block[53] = 0x3C;
  for (int v = 0; v < 256; ++v) {
    std::memset(block, v, 52);
    float y[256];
    f.dequantize(block, y, 256);
    for (float t : y) ASSERT_TRUE(t == -1.0f || t == 0.0f || t == 1.0f) << "byte " << v;
  }
}

TEST(GgmlNlTernaryTest, Tq2_0DecodesEveryCode) {
  const FormatInfo& f = Format("tq2_0");
  uint8_t block[66] = {};
  block[64] = 0x00;
  block[65] = 0x3C;
  // Byte 32 h + m holds elements 128 h + m + 32 i in bits 2i: give element
  // e the code e % 4 (code 3 is never written; it decodes to 2d).
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, m = e % 32, i = (e % 128) / 32;
    block[32 * h + m] = uint8_t(block[32 * h + m] | ((e % 4) << (2 * i)));
  }
  float y[256];
  f.dequantize(block, y, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], float(e % 4 - 1)) << e;
}

TEST(GgmlLegacyTest, RejectsPartialBlocks) {
  const std::vector<float> x(172, 1.0f);
  std::vector<uint8_t> out(1024);
  EXPECT_THROW(Format("q4_0").quantize(x.data(), 1, 172, out.data(), nullptr), Error);
}

}  // namespace
}  // namespace lowbit
