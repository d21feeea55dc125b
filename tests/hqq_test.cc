// HQQ (quant/hqq.h): the shrink operator and one zero-point step against a
// hand computation; lower lp (p = 0.7) error than rtn on INT asymmetric
// formats, never above rtn's per unit through the codec path (q4_1, q4_k,
// int4_sym, nf4); finite, thread-count independent output; constant groups;
// and end to end on stories260K, KLD against the f32 model no worse than rtn.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "formats/format.h"
#include "quant/hqq.h"
#include "quant/method.h"
#include "test_util.h"

namespace lowbit {
namespace {

constexpr float kP = 0.7f;

enum class Dist { kGaussian, kHeavyTailed };

// (rows, n) weights of LLM size (sigma 0.02); heavy-tailed: Student t, 3 dof.
std::vector<float> Weights(Dist dist, int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0f, 0.02f);
  std::student_t_distribution<float> t3(3.0f);
  std::vector<float> w(size_t(rows * n));
  for (float& v : w) v = dist == Dist::kGaussian ? gauss(rng) : 0.01f * t3(rng);
  return w;
}

const FormatInfo& Format(const char* name) {
  const FormatInfo* f = FindFormatByName(name);
  EXPECT_NE(f, nullptr) << name;
  return *f;
}

std::vector<float> QuantizeDecode(const char* method, const FormatInfo& fmt, const std::vector<float>& w,
                                  int64_t rows, int64_t n, ThreadPool* pool = nullptr,
                                  std::vector<uint8_t>* bytes = nullptr) {
  std::vector<uint8_t> out(size_t(rows) * fmt.RowBytes(n));
  MakeQuantMethod(method, pool)->QuantizeTensor("t", w.data(), rows, n, fmt, nullptr, out.data());
  std::vector<float> q(w.size());
  for (int64_t r = 0; r < rows; ++r) fmt.dequantize(out.data() + size_t(r) * fmt.RowBytes(n), q.data() + r * n, n);
  if (bytes) *bytes = out;
  return q;
}

double RelRms(const std::vector<float>& w, const std::vector<float>& q) {
  double e = 0, s = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    e += double(w[i] - q[i]) * double(w[i] - q[i]);
    s += double(w[i]) * double(w[i]);
  }
  return std::sqrt(e / s);
}

TEST(HqqTest, ShrinkLpIsTheGeneralizedSoftThreshold) {
  // sign(x) max(|x| - |x|^(p-1)/beta, 0): zero below |x|^(2-p) = 1/beta.
  EXPECT_EQ(ShrinkLp(0.0f, 10.0f, kP), 0.0f);
  EXPECT_EQ(ShrinkLp(0.1f, 10.0f, kP), 0.0f);  // 0.1^1.3 = 0.05 < 0.1
  EXPECT_NEAR(ShrinkLp(0.4f, 10.0f, kP), 0.4 - std::pow(0.4, -0.3) / 10, 1e-6);
  EXPECT_NEAR(ShrinkLp(-0.4f, 10.0f, kP), -(0.4 - std::pow(0.4, -0.3) / 10), 1e-6);
  EXPECT_NEAR(ShrinkLp(3.0f, 1.0f, 1.0f), 2.0, 1e-6);  // p = 1: the ordinary soft threshold
}

TEST(HqqTest, OneZeroStepMatchesAHandComputation) {
  // Group of 4, scale 0.1, zero 0.4, 4-bit codes, beta 10, p 0.7.
  // W/s + z = 0.7, 1.6, 3.1, 10.2 -> W_q = 1, 2, 3, 10
  // (W - W_r)/s = -0.3, -0.4, 0.1, 0.2
  // shrink: -(0.3 - 0.3^-0.3/10) = -0.15649, -(0.4 - 0.4^-0.3/10) = -0.26836,
  //         0 (0.1 is below the threshold), 0.2 - 0.2^-0.3/10 = 0.03793
  // z = mean(W_q - (W - W_e)/s) = mean(1 - 0.45649, 2 - 1.46836, 3 - 2.7, 10 - 9.76207)
  //   = (0.54351 + 0.53164 + 0.3 + 0.23793) / 4 = 0.40327
  const float w[4] = {0.03f, 0.12f, 0.27f, 0.98f};
  double by_hand = 0;
  const double code[4] = {1, 2, 3, 10};
  for (int i = 0; i < 4; ++i) {
    const double e = (w[i] - 0.1 * (code[i] - 0.4)) / 0.1;
    const double shrunk = std::fabs(e) > std::pow(0.1, 1 / 1.3) ? std::copysign(std::fabs(e) - std::pow(std::fabs(e), -0.3) / 10, e) : 0;
    by_hand += code[i] - (w[i] / 0.1 - shrunk);
  }
  by_hand /= 4;
  EXPECT_NEAR(by_hand, 0.40327, 2e-5);
  EXPECT_NEAR(HqqZeroStep(w, 4, 0.1f, 0.4f, 15, 10.0f, kP), by_hand, 1e-5);
  // Exact codes: no error to shrink, the zero stays where it is.
  const float exact[3] = {-0.2f, 0.0f, 0.5f};
  EXPECT_NEAR(HqqZeroStep(exact, 3, 0.1f, 2.0f, 15, 10.0f, kP), 2.0, 1e-5);
}

struct IntCase {
  const char* format;
  Dist dist;
};

class HqqIntAsymTest : public ::testing::TestWithParam<IntCase> {};

// HQQ's objective: mean |W - Q|^0.7 at least 3% below rtn's (measured 6-11%),
// group by group never above it. The L2 error may rise a little: p = 0.7
// trades a few large errors (clipped outliers) for many smaller ones, which
// L2 charges for. Measured rel-RMS ratio hqq/rtn: 0.92-0.96 on Gaussian
// weights, up to 1.04 on Student-t (3 dof) weights; bound 1.10.
TEST_P(HqqIntAsymTest, LowerLpErrorThanRtn) {
  const IntCase c = GetParam();
  const FormatInfo& fmt = Format(c.format);
  constexpr int64_t kRows = 32, kN = 512;
  const auto w = Weights(c.dist, kRows, kN, 1234);
  const auto rtn = QuantizeDecode("rtn", fmt, w, kRows, kN);
  const auto hqq = QuantizeDecode("hqq", fmt, w, kRows, kN);
  const int64_t g = fmt.block_size;
  for (int64_t i = 0; i < kRows * kN; i += g)
    ASSERT_LE(MeanLpError(w.data() + i, hqq.data() + i, g, kP), MeanLpError(w.data() + i, rtn.data() + i, g, kP))
        << "group at " << i;
  const double lp_rtn = MeanLpError(w.data(), rtn.data(), kRows * kN, kP);
  const double lp_hqq = MeanLpError(w.data(), hqq.data(), kRows * kN, kP);
  const double l2_rtn = RelRms(w, rtn), l2_hqq = RelRms(w, hqq);
  std::printf("%-16s %-6s lp: rtn %.5g hqq %.5g (%.3f)  rel rms: rtn %.4f hqq %.4f (%.3f)\n", c.format,
              c.dist == Dist::kGaussian ? "gauss" : "t3", lp_rtn, lp_hqq, lp_hqq / lp_rtn, l2_rtn, l2_hqq,
              l2_hqq / l2_rtn);
  EXPECT_LT(lp_hqq, 0.97 * lp_rtn);
  EXPECT_LT(l2_hqq, 1.10 * l2_rtn);
}

INSTANTIATE_TEST_SUITE_P(Formats, HqqIntAsymTest,
                         ::testing::Values(IntCase{"int4_asym_g64", Dist::kGaussian},
                                           IntCase{"int4_asym_g64", Dist::kHeavyTailed},
                                           IntCase{"int4_asym_g128", Dist::kGaussian},
                                           IntCase{"int4_asym_g128", Dist::kHeavyTailed},
                                           IntCase{"int3_asym_g64", Dist::kGaussian},
                                           IntCase{"int3_asym_g64", Dist::kHeavyTailed}));

// The codec path: per block (per row for row-header formats) the lp error is
// never above rtn's, since rtn's encoding is the first candidate.
TEST(HqqTest, CodecPathIsNeverWorseThanRtn) {
  constexpr int64_t kRows = 16, kN = 512;
  for (const char* name : {"q4_1", "q4_k", "q4_0", "int4_sym_g64", "nf4", "int4_asym_tensor"}) {
    const FormatInfo& fmt = Format(name);
    for (Dist dist : {Dist::kGaussian, Dist::kHeavyTailed}) {
      const auto w = Weights(dist, kRows, kN, 99);
      const auto rtn = QuantizeDecode("rtn", fmt, w, kRows, kN);
      const auto hqq = QuantizeDecode("hqq", fmt, w, kRows, kN);
      const int64_t unit = RowsIndependent(fmt) ? (fmt.row_header_bytes > 0 ? kN : fmt.block_size) : kRows * kN;
      for (int64_t i = 0; i < kRows * kN; i += unit)
        ASSERT_LE(MeanLpError(w.data() + i, hqq.data() + i, unit, kP),
                  MeanLpError(w.data() + i, rtn.data() + i, unit, kP) * (1 + 1e-12))
            << name << " unit at " << i;
      const double lp_rtn = MeanLpError(w.data(), rtn.data(), kRows * kN, kP);
      const double lp_hqq = MeanLpError(w.data(), hqq.data(), kRows * kN, kP);
      std::printf("%-16s %-6s lp: rtn %.5g hqq %.5g (%.3f)  rel rms: rtn %.4f hqq %.4f\n", name,
                  dist == Dist::kGaussian ? "gauss" : "t3", lp_rtn, lp_hqq, lp_hqq / lp_rtn, RelRms(w, rtn),
                  RelRms(w, hqq));
    }
  }
}

TEST(HqqTest, FiniteAndIndependentOfTheThreadCount) {
  constexpr int64_t kRows = 13, kN = 256;
  const auto w = Weights(Dist::kHeavyTailed, kRows, kN, 7);
  ThreadPool pool3(3), pool8(8);
  for (const char* name : {"int4_asym_g64", "int3_asym_channel", "int4_asym_tensor", "q4_1", "q4_k", "int8_sym_g32"}) {
    const FormatInfo& fmt = Format(name);
    std::vector<uint8_t> b1, b3, b8;
    const auto q = QuantizeDecode("hqq", fmt, w, kRows, kN, nullptr, &b1);
    QuantizeDecode("hqq", fmt, w, kRows, kN, &pool3, &b3);
    QuantizeDecode("hqq", fmt, w, kRows, kN, &pool8, &b8);
    EXPECT_EQ(b1, b3) << name;
    EXPECT_EQ(b1, b8) << name;
    for (float v : q) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

TEST(HqqTest, ConstantAndZeroGroups) {
  constexpr int64_t kRows = 3, kN = 256;
  std::vector<float> w(size_t(kRows * kN), 0.0f);
  for (int64_t i = kN; i < 2 * kN; ++i) w[size_t(i)] = 0.25f;   // row 1: constant
  for (int64_t i = 2 * kN; i < 3 * kN; ++i) w[size_t(i)] = -3.0f;  // row 2: negative constant
  for (const char* name : {"int4_asym_g64", "int3_asym_g128", "int2_asym_channel", "int4_asym_tensor", "q4_1",
                           "q4_k", "q4_0", "nf4", "int4_sym_g32"}) {
    const FormatInfo& fmt = Format(name);
    const auto q = QuantizeDecode("hqq", fmt, w, kRows, kN);
    const auto rtn = QuantizeDecode("rtn", fmt, w, kRows, kN);
    for (size_t i = 0; i < q.size(); ++i) {
      ASSERT_TRUE(std::isfinite(q[i])) << name << " at " << i;
      if (i < size_t(kN)) {
        ASSERT_EQ(q[i], 0.0f) << name << " at " << i;  // zeros stay exact
      }
    }
    EXPECT_LE(MeanLpError(w.data(), q.data(), kRows * kN, kP), MeanLpError(w.data(), rtn.data(), kRows * kN, kP))
        << name;
  }
}

// Every weight format goes through one of the two paths (or the plain codec
// for f32/f16/bf16): finite output, and rtn's lp error as the upper bound.
TEST(HqqTest, EveryWeightFormat) {
  constexpr int64_t kRows = 4, kN = 256;
  const auto w = Weights(Dist::kHeavyTailed, kRows, kN, 5);
  for (const FormatInfo& fmt : AllFormats()) {
    if (!fmt.weight_format || kN % fmt.block_size != 0) continue;
    const auto rtn = QuantizeDecode("rtn", fmt, w, kRows, kN);
    const auto hqq = QuantizeDecode("hqq", fmt, w, kRows, kN);
    for (float v : hqq) ASSERT_TRUE(std::isfinite(v)) << fmt.name;
    EXPECT_LE(MeanLpError(w.data(), hqq.data(), kRows * kN, kP), MeanLpError(w.data(), rtn.data(), kRows * kN, kP))
        << fmt.name;
  }
}

// End to end: quantize stories260K with hqq and rtn into the same formats
// and compare KLD against the f32 model (the numbers are printed).
TEST(HqqTest, EndToEndKldNoWorseThanRtn) {
  using testing::RunLowbit;
  using testing::SharedPath;
  LOWBIT_REQUIRE_SHARED("models/stories260K/stories260K-f32.llamacpp.gguf");
  LOWBIT_REQUIRE_SHARED("data/tinystories/validation-head.txt");
  const std::string model = SharedPath("models/stories260K/stories260K-f32.llamacpp.gguf");
  const auto dir = std::filesystem::temp_directory_path() / ("lowbit_hqq_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string base = (dir / "base.kld").string();
  auto r = RunLowbit("kld " + model + " --save-base " + base + " -f " +
                     SharedPath("data/tinystories/validation-head.txt") + " -c 128 --chunks 100 -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto kld = [&](const std::string& format, const std::string& method) {
    const std::string out = (dir / (format + "-" + method + ".gguf")).string();
    const auto q = RunLowbit("quantize " + model + " -o " + out + " --format " + format + " --method " + method +
                             " -t 2 --json", false);
    EXPECT_EQ(q.exit_code, 0) << q.output;
    const auto k = RunLowbit("kld " + out + " --base " + base + " -t 2 --json", false);
    EXPECT_EQ(k.exit_code, 0) << k.output;
    return nlohmann::json::parse(k.output).at("kld_mean").get<double>();
  };
  for (const char* format : {"int4_asym_g64", "int3_asym_g64"}) {
    const double rtn = kld(format, "rtn"), hqq = kld(format, "hqq");
    std::printf("stories260K %-14s KLD vs f32: rtn %.5f hqq %.5f\n", format, rtn, hqq);
    EXPECT_LE(hqq, rtn) << format;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lowbit
