// kernels: every SIMD MatMul path against its scalar reference, on every
// Highway target compiled in and supported here. Random cases are replayable:
// the seed is printed, and LOWBIT_SEED=<seed> reruns them.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "formats/format.h"
#include "hwy/targets.h"
#include "kernels/dot_ref.h"
#include "kernels/matmul.h"
#include "runtime/ops.h"

namespace lowbit {
namespace {

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("LOWBIT_SEED");
    const uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("kernels_test seed: %llu (LOWBIT_SEED=%llu replays)\n", (unsigned long long)s, (unsigned long long)s);
    return s;
  }();
  return seed;
}

// A weight tensor in format `type`, quantized from `values` (out, in) with
// the format's reference quantizer.
struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};
Weights MakeWeights(DType type, const std::vector<float>& values, int64_t out, int64_t in) {
  const FormatInfo& f = GetFormat(type);
  Weights w;
  w.bytes.resize(f.RowBytes(in) * size_t(out));
  f.quantize(values.data(), out, in, w.bytes.data(), nullptr);
  w.view.name = "w";
  w.view.type = type;
  w.view.shape = {out, in};
  w.view.data = w.bytes.data();
  w.view.bytes = w.bytes.size();
  return w;
}

std::vector<float> RandomValues(std::mt19937_64& rng, size_t count, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  // Edge values: exact zeros of both signs.
  if (count > 2) v[0] = 0.0f, v[count / 2] = -0.0f;
  return v;
}

// Runs body once per SIMD target, with MatMul dispatching to that target.
template <typename Body>
void ForEachTarget(const Body& body) {
  for (const KernelTarget& t : KernelTargets()) {
    SCOPED_TRACE("target " + t.name);
    hwy::SetSupportedTargetsForTest(t.bits);
    body(t);
    hwy::SetSupportedTargetsForTest(0);
  }
}

TEST(KernelsTest, TargetsIncludeTheBest) {
  const auto targets = KernelTargets();
  ASSERT_FALSE(targets.empty());
  for (const auto& t : targets) std::printf("target %s\n", t.name.c_str());
}

// The generic path is runtime's MatMulRef, bit for bit, for every format.
TEST(KernelsTest, ReferencePathMatchesMatMulRef) {
  std::mt19937_64 rng(Seed() ^ 1);
  ThreadPool pool(2);
  for (const FormatInfo& f : AllFormats()) {
    if (!f.weight_format) continue;
    SCOPED_TRACE(std::string(f.name));
    const int64_t in = 2 * std::max<int64_t>(f.block_size, 16), out = 7, n = 3;
    Weights w = MakeWeights(f.id, RandomValues(rng, size_t(out * in), 1.0f), out, in);
    const std::vector<float> x = RandomValues(rng, size_t(n * in), 1.0f);
    std::vector<float> y(size_t(n * out)), y_ref(size_t(n * out));
    MatMul(w.view, x.data(), n, y.data(), pool, /*reference=*/true);
    MatMulRef(w.view, x.data(), n, y_ref.data(), pool);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(y_ref[i]));
  }
}

// |fast - ref| <= K * u * sum|w||x| with K the adds of both orders: the
// reference's 8 partials (in/8 + 8) and a SIMD kernel's >= 4 lanes
// (in/4 + log2(lanes) + 1), plus the product roundings.
float FloatDotBound(const float* w, const float* x, int64_t in) {
  double abs_sum = 0;
  for (int64_t i = 0; i < in; ++i) abs_sum += std::fabs(double(w[i]) * double(x[i]));
  const double k = double(in) / 8 + double(in) / 4 + 16;
  return float(k * (FLT_EPSILON / 2) * abs_sum) + FLT_MIN;
}

// Every leftover: rows around the row tile, tokens around the token tile,
// lengths around every vector width (4..16 floats) and odd ones.
TEST(KernelsTest, FloatWeightsMatchReference) {
  std::mt19937_64 rng(Seed() ^ 2);
  ThreadPool pool(2);
  const int64_t ins[] = {1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257};
  const int64_t outs[] = {1, 2, 3, 4, 5, 7, 8, 9, 13};
  ForEachTarget([&](const KernelTarget&) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(std::string(DTypeName(type)));
      ASSERT_TRUE(HasFastMatMul(type));
      for (int64_t in : ins)
        for (int64_t out : outs)
          for (int64_t n = 1; n <= 9; ++n) {
            SCOPED_TRACE(testing::Message() << "in " << in << " out " << out << " n " << n);
            Weights w = MakeWeights(type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
            const std::vector<float> wf = ToF32(w.view);
            const std::vector<float> x = RandomValues(rng, size_t(n * in), 1.0f);
            std::vector<float> y(size_t(n * out), NAN), y_ref(size_t(n * out));
            MatMul(w.view, x.data(), n, y.data(), pool, false);
            MatMulDequantRef(w.view, x.data(), n, y_ref.data(), pool);
            for (int64_t t = 0; t < n; ++t)
              for (int64_t o = 0; o < out; ++o) {
                const float bound = 2 * FloatDotBound(&wf[size_t(o * in)], &x[size_t(t * in)], in);
                ASSERT_NEAR(y[size_t(t * out + o)], y_ref[size_t(t * out + o)], bound) << "row " << o << " token " << t;
              }
          }
    }
  });
}

// Special values propagate as in the reference: inf and NaN inputs give
// non-finite outputs in the same places.
TEST(KernelsTest, FloatWeightsPropagateNonFinite) {
  ThreadPool pool(1);
  const int64_t out = 5, in = 37, n = 5;
  std::vector<float> wv(size_t(out * in), 0.5f);
  wv[size_t(2 * in + 3)] = INFINITY;
  wv[size_t(4 * in + 36)] = NAN;
  std::vector<float> x(size_t(n * in), 0.25f);
  ForEachTarget([&](const KernelTarget&) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      Weights w = MakeWeights(type, wv, out, in);
      std::vector<float> y(size_t(n * out)), y_ref(size_t(n * out));
      MatMul(w.view, x.data(), n, y.data(), pool, false);
      MatMulDequantRef(w.view, x.data(), n, y_ref.data(), pool);
      for (size_t i = 0; i < y.size(); ++i) {
        EXPECT_EQ(std::isnan(y[i]), std::isnan(y_ref[i])) << i;
        EXPECT_EQ(std::isinf(y[i]), std::isinf(y_ref[i])) << i;
        if (std::isfinite(y_ref[i])) {
          EXPECT_NEAR(y[i], y_ref[i], 1e-5f) << i;
        }
      }
    }
  });
}

// Results do not depend on the thread count (each output row is computed by
// one thread with the same code).
TEST(KernelsTest, ThreadCountInvariant) {
  std::mt19937_64 rng(Seed() ^ 3);
  ThreadPool one(1), two(2), three(3);
  for (const FormatInfo& f : AllFormats()) {
    if (!f.weight_format || !HasFastMatMul(f.id)) continue;
    SCOPED_TRACE(std::string(f.name));
    const int64_t in = 4 * std::max<int64_t>(f.block_size, 32), out = 23, n = 6;
    Weights w = MakeWeights(f.id, RandomValues(rng, size_t(out * in), 1.0f), out, in);
    const std::vector<float> x = RandomValues(rng, size_t(n * in), 1.0f);
    std::vector<float> y1(size_t(n * out)), y2(y1.size()), y3(y1.size());
    MatMul(w.view, x.data(), n, y1.data(), one, false);
    MatMul(w.view, x.data(), n, y2.data(), two, false);
    MatMul(w.view, x.data(), n, y3.data(), three, false);
    for (size_t i = 0; i < y1.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(y1[i]), std::bit_cast<uint32_t>(y2[i])) << i;
      ASSERT_EQ(std::bit_cast<uint32_t>(y1[i]), std::bit_cast<uint32_t>(y3[i])) << i;
    }
  }
}

TEST(KernelsTest, DotF32RefIsRuntimeDotRef) {
  std::mt19937_64 rng(Seed() ^ 4);
  for (int64_t n : {0, 1, 7, 8, 9, 100}) {
    const auto a = RandomValues(rng, size_t(n), 1.0f), b = RandomValues(rng, size_t(n), 1.0f);
    EXPECT_EQ(std::bit_cast<uint32_t>(DotF32Ref(a.data(), b.data(), n)),
              std::bit_cast<uint32_t>(DotRef(a.data(), b.data(), n)));
  }
}

}  // namespace
}  // namespace lowbit
