// K-quant and IQ4_XS checks against llama.cpp itself: dequantization bit for
// bit against llama.cpp's own dequantized dump, reference quantization byte
// for byte against llama-quantize's files (tiny-llama-random in ../shared),
// plus edge cases (zero, constant, tiny, huge, outlier blocks) and the effect
// of an importance vector. The generic per-format checks (round trips, RMSE
// windows, sizes) live in formats_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/format.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lowbit {
namespace {

const std::string kModelDir = "models/tiny-llama-random/";

// One K-quant type and the llama.cpp file (written by llama-quantize --pure,
// no imatrix) whose 2-D tensors all have that type.
struct KQuantCase {
  const char* format;  // lowbit format name
  const char* file;    // tiny-llama-<file>.gguf
};

const KQuantCase kCases[] = {
    {"q2_k", "q2_k"},   {"q3_k", "q3_k_s"}, {"q4_k", "q4_k_s"},
    {"q5_k", "q5_k_s"}, {"q6_k", "q6_k"},   {"iq4_xs", "iq4_xs"},
};

std::string CaseName(const ::testing::TestParamInfo<KQuantCase>& info) { return info.param.format; }

const FormatInfo& Format(const char* name) {
  const FormatInfo* f = FindFormatByName(name);
  if (f == nullptr) throw std::runtime_error(std::string("format not registered: ") + name);
  return *f;
}

std::vector<float> ReadRawF32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const std::streamsize bytes = in.tellg();
  in.seekg(0);
  std::vector<float> out(size_t(bytes) / sizeof(float));
  in.read(reinterpret_cast<char*>(out.data()), std::streamsize(out.size() * sizeof(float)));
  return out;
}

// Sum of (importance-weighted) squared errors of a dequantized row set.
double SquaredError(const std::vector<float>& x, const std::vector<float>& y, int64_t n, const float* importance) {
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = double(x[i]) - double(y[i]);
    sum += (importance ? importance[i % size_t(n)] : 1.0) * e * e;
  }
  return sum;
}

std::vector<float> Dequantize(const FormatInfo& f, const std::vector<uint8_t>& q, int64_t rows, int64_t n) {
  std::vector<float> out(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r) f.dequantize(q.data() + size_t(r) * f.RowBytes(n), out.data() + r * n, n);
  return out;
}

std::vector<uint8_t> Quantize(const FormatInfo& f, const std::vector<float>& x, int64_t rows, int64_t n,
                              const float* importance) {
  std::vector<uint8_t> q(size_t(rows) * f.RowBytes(n));
  f.quantize(x.data(), rows, n, q.data(), importance);
  return q;
}

class KQuantFileTest : public ::testing::TestWithParam<KQuantCase> {};

// Our dequantizer gives llama.cpp's floats exactly (bit patterns compared,
// so -0 vs 0 would count as a difference too).
TEST_P(KQuantFileTest, DequantizesBitExactly) {
  const KQuantCase& c = GetParam();
  const std::string gguf = kModelDir + "tiny-llama-" + c.file + ".gguf";
  const std::string expected = kModelDir + "expected/" + c.file + ".blk.0.attn_q.weight.f32";
  LOWBIT_REQUIRE_SHARED(gguf);
  LOWBIT_REQUIRE_SHARED(expected);
  const FormatInfo& f = Format(c.format);
  GgufFile file(testing::SharedPath(gguf));
  const GgufTensorInfo* info = file.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(info, nullptr);
  const TensorView view = file.View(*info);
  ASSERT_EQ(view.type, f.id);
  const std::vector<float> got = ToF32(view);
  const std::vector<float> want = ReadRawF32(testing::SharedPath(expected));
  ASSERT_EQ(got.size(), want.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && mismatches++ < 5)
      ADD_FAILURE() << c.format << " element " << i << ": got " << got[i] << ", llama.cpp " << want[i];
  }
  EXPECT_EQ(mismatches, 0u);
}

// Quantizing llama.cpp's F32 source tensors with importance = null gives
// llama-quantize's bytes. Where a block differs, the test reports how many and
// requires our error to be no worse than llama.cpp's.
TEST_P(KQuantFileTest, QuantizesLikeLlamaQuantize) {
  const KQuantCase& c = GetParam();
  const std::string src_path = kModelDir + "tiny-llama-f32.gguf";
  const std::string ref_path = kModelDir + "tiny-llama-" + c.file + ".gguf";
  LOWBIT_REQUIRE_SHARED(src_path);
  LOWBIT_REQUIRE_SHARED(ref_path);
  const FormatInfo& f = Format(c.format);
  GgufFile src(testing::SharedPath(src_path));
  GgufFile ref(testing::SharedPath(ref_path));
  for (const char* name : {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "token_embd.weight"}) {
    SCOPED_TRACE(name);
    const GgufTensorInfo* si = src.FindTensor(name);
    const GgufTensorInfo* ri = ref.FindTensor(name);
    ASSERT_NE(si, nullptr);
    ASSERT_NE(ri, nullptr);
    ASSERT_EQ(ri->ggml_type, f.gguf_type);
    const TensorView sv = src.View(*si);
    const int64_t rows = sv.Rows(), n = sv.RowLength();
    const float* data = static_cast<const float*>(sv.data);
    const std::vector<float> x(data, data + rows * n);
    const std::vector<uint8_t> ours = Quantize(f, x, rows, n, nullptr);
    ASSERT_EQ(ours.size(), ri->bytes);
    const int64_t blocks = int64_t(ours.size()) / f.block_bytes;
    int64_t differing = 0;
    for (int64_t b = 0; b < blocks; ++b)
      differing += std::memcmp(ours.data() + b * f.block_bytes, ri->data + b * f.block_bytes, f.block_bytes) != 0;
    EXPECT_EQ(differing, 0) << c.format << " " << name << ": " << differing << " of " << blocks
                            << " blocks differ from llama-quantize";
    if (differing != 0) {
      const std::vector<uint8_t> theirs(ri->data, ri->data + ri->bytes);
      EXPECT_LE(SquaredError(x, Dequantize(f, ours, rows, n), n, nullptr),
                SquaredError(x, Dequantize(f, theirs, rows, n), n, nullptr));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, KQuantFileTest, ::testing::ValuesIn(kCases), CaseName);

// --- Edge cases, on every K-quant type (Q8_K included). ---------------------

const char* const kAllTypes[] = {"q8_k", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs"};

struct RoundTrip {
  std::vector<float> y;
  bool finite = true;
  double rel_rms = 0;  // ||y - x|| / ||x|| (0 when x is all zero)
  double max_err = 0;  // max |y - x|
};

RoundTrip RunRoundTrip(const FormatInfo& f, const std::vector<float>& x, const float* importance = nullptr) {
  const int64_t n = int64_t(x.size());
  RoundTrip r;
  r.y = Dequantize(f, Quantize(f, x, 1, n, importance), 1, n);
  double se = 0, ss = 0;
  for (int64_t i = 0; i < n; ++i) {
    r.finite = r.finite && std::isfinite(r.y[i]);
    const double e = double(r.y[i]) - double(x[i]);
    se += e * e;
    ss += double(x[i]) * double(x[i]);
    r.max_err = std::max(r.max_err, std::fabs(e));
  }
  r.rel_rms = ss > 0 ? std::sqrt(se / ss) : 0;
  return r;
}

std::vector<float> Gaussian(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng) * scale;
  return x;
}

class KQuantEdgeTest : public ::testing::TestWithParam<const char*> {};

TEST_P(KQuantEdgeTest, ZeroBlocksDecodeToZero) {
  const FormatInfo& f = Format(GetParam());
  const RoundTrip r = RunRoundTrip(f, std::vector<float>(512, 0.f));
  for (float v : r.y) ASSERT_EQ(v, 0.f);
}

// A constant block is the degenerate case of every scale search (max == min,
// zero variance); the error must stay within the format's Gaussian window.
TEST_P(KQuantEdgeTest, ConstantBlocks) {
  const FormatInfo& f = Format(GetParam());
  for (float c : {1.f, -2.5f, 0.01f, 300.f}) {
    SCOPED_TRACE(c);
    const RoundTrip r = RunRoundTrip(f, std::vector<float>(512, c));
    EXPECT_TRUE(r.finite);
    EXPECT_LE(r.rel_rms, f.rmse_hi);
  }
}

// Tiny blocks underflow the f16 super-scale (as in llama.cpp) and may decode
// to zero, but never to anything farther from x than zero is.
TEST_P(KQuantEdgeTest, TinyBlocks) {
  const FormatInfo& f = Format(GetParam());
  for (float scale : {1e-4f, 1e-8f, 1e-30f}) {
    SCOPED_TRACE(scale);
    const RoundTrip r = RunRoundTrip(f, Gaussian(1024, 11, scale));
    EXPECT_TRUE(r.finite);
    EXPECT_LE(r.rel_rms, 1.0);
  }
}

// Up to ~1e6 the super-scales fit f16 and the error is the usual one; far
// beyond, llama.cpp writes inf scales, we saturate them: still finite.
TEST_P(KQuantEdgeTest, HugeBlocks) {
  const FormatInfo& f = Format(GetParam());
  for (float scale : {1e4f, 1e5f}) {
    SCOPED_TRACE(scale);
    const RoundTrip r = RunRoundTrip(f, Gaussian(1024, 12, scale));
    EXPECT_TRUE(r.finite);
    EXPECT_LE(r.rel_rms, f.rmse_hi);
  }
  for (float scale : {1e7f, 1e9f, 1e15f}) {
    SCOPED_TRACE(scale);
    const RoundTrip r = RunRoundTrip(f, Gaussian(1024, 13, scale));
    EXPECT_TRUE(r.finite);
    EXPECT_LE(r.rel_rms, 1.0);
  }
}

// One outlier 100x the typical weight: it must survive (within 10%); its
// super-block is coarsened (the sub-block scales are quantized against the
// outlier's: Q2_K's 4-bit scales leave the neighbours an error larger than
// the neighbours themselves, in llama.cpp too) but every error stays below a
// tenth of the block's range; the other super-blocks are unaffected.
TEST_P(KQuantEdgeTest, OneOutlier) {
  const FormatInfo& f = Format(GetParam());
  std::vector<float> x = Gaussian(1024, 14);
  x[300] = 100.f;
  const RoundTrip r = RunRoundTrip(f, x);
  EXPECT_TRUE(r.finite);
  EXPECT_NEAR(r.y[300], 100.f, 10.f);
  EXPECT_LE(r.max_err, 10.0);
  double se = 0, ss = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (i / 256 == 1) continue;  // the outlier's super-block
    se += (double(r.y[i]) - x[i]) * (double(r.y[i]) - x[i]);
    ss += double(x[i]) * x[i];
  }
  EXPECT_LE(std::sqrt(se / ss), f.rmse_hi);
  std::printf("%s: outlier super-block max error %.3f\n", std::string(f.name).c_str(), r.max_err);
}

INSTANTIATE_TEST_SUITE_P(KQuants, KQuantEdgeTest, ::testing::ValuesIn(kAllTypes),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

// With a strongly non-uniform importance vector (log-normal, one weight per
// column), the imatrix path must lower the importance-weighted error below
// what the importance-blind reference path gets on the same rows.
TEST_P(KQuantFileTest, ImportanceLowersWeightedError) {
  const FormatInfo& f = Format(GetParam().format);
  const int64_t rows = 16, n = 1024;
  const std::vector<float> x = Gaussian(rows * n, 21);
  std::vector<float> importance = Gaussian(n, 22);
  for (float& w : importance) w = std::exp(2.f * w);
  const double blind = SquaredError(x, Dequantize(f, Quantize(f, x, rows, n, nullptr), rows, n), n, importance.data());
  const double aware =
      SquaredError(x, Dequantize(f, Quantize(f, x, rows, n, importance.data()), rows, n), n, importance.data());
  EXPECT_LT(aware, blind) << f.name;
  std::printf("%s: importance-weighted error with / without importance: %.4g / %.4g (%.2fx)\n",
              std::string(f.name).c_str(), aware, blind, blind / aware);
}

// Q8_K's block sums are what K-quant dot kernels subtract min offsets with.
TEST(Q8KTest, BlockSumsAndCodeRange) {
  const FormatInfo& f = Format("q8_k");
  const std::vector<float> x = Gaussian(1024, 31);
  const std::vector<uint8_t> q = Quantize(f, x, 1, 1024, nullptr);
  for (int b = 0; b < 4; ++b) {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
    const uint8_t* block = q.data() + b * f.block_bytes;
    std::memcpy(&d, block, 4);
    std::memcpy(qs, block + 4, 256);
    std::memcpy(bsums, block + 260, 32);
    float amax = 0;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[256 * b + i]));
    EXPECT_FLOAT_EQ(std::fabs(d), amax / 127);
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) {
        EXPECT_GE(qs[16 * j + i], -127);
        sum += qs[16 * j + i];
      }
      EXPECT_EQ(bsums[j], sum);
    }
  }
}

}  // namespace
}  // namespace lowbit
