// kernels: every SIMD MatMul path against its scalar reference, on every
// Highway target compiled in and supported here. Random cases are replayable:
// the seed is printed, and LOWBIT_SEED=<seed> reruns them.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "formats/format.h"
#include "hwy/targets.h"
#include "formats/all_formats.h"
#include "kernels/dot_ref.h"
#include "kernels/fast_paths.h"
#include "kernels/quant_dot_ref.h"
#include "kernels/matmul.h"

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

// The generic path is "dequantize the row with the format's codec, then
// DotF32Ref", bit for bit, for every format.
TEST(KernelsTest, ReferencePathIsDequantizeThenDotF32Ref) {
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
    const std::vector<float> wf = ToF32(w.view);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t o = 0; o < out; ++o) y_ref[size_t(t * out + o)] = DotF32Ref(&wf[size_t(o * in)], &x[size_t(t * in)], in);
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


// The quantized kernels and their references. min_mag(w_row, i) bounds the
// size of element i's min/offset term beyond |w_i| (0 for symmetric formats).
struct QuantCase {
  DType type;
  float (*dot)(const uint8_t*, const uint8_t*, int64_t);
  void (*sums)(const uint8_t*, const uint8_t*, int64_t, int32_t*);
  float (*min_mag)(const uint8_t* w_row, int64_t i);
};

float NoMin(const uint8_t*, int64_t) { return 0.0f; }
float Q4KMin(const uint8_t* w, int64_t i) {
  Q4_KFormat::Block b;
  std::memcpy(&b, w + sizeof(b) * size_t(i / 256), sizeof(b));
  return 2 * 63 * std::fabs(F16ToF32(b.dmin));
}

std::vector<QuantCase> QuantCases() {
  return {{DTypeOf<Q4_0Format>(), VecDotQ4_0Q8_0Ref, BlockSumsQ4_0Q8_0Ref, NoMin},
          {DTypeOf<Q8_0Format>(), VecDotQ8_0Q8_0Ref, BlockSumsQ8_0Q8_0Ref, NoMin},
          {DTypeOf<Q4_KFormat>(), VecDotQ4_KQ8_KRef, BlockSumsQ4_KQ8_KRef, Q4KMin}};
}

// Activations quantized with the reference quantizer of the pairing format.
std::vector<uint8_t> QuantizeActivations(DType weight_type, const std::vector<float>& x, int64_t n, int64_t in) {
  const FormatInfo& af = GetFormat(GetFormat(weight_type).activation);
  std::vector<uint8_t> a(af.RowBytes(in) * size_t(n));
  af.quantize(x.data(), n, in, a.data(), nullptr);
  return a;
}

TEST(KernelsTest, EveryQuantKernelHasACase) {
  for (const FormatInfo& f : AllFormats()) {
    if (!HasMatMulQuant(f.id)) continue;
    bool found = false;
    for (const QuantCase& c : QuantCases()) found |= c.type == f.id;
    EXPECT_TRUE(found) << f.name;
  }
}

// The *_ref dots are the dequantized dots: sum_i w_i a_i over the formats'
// own decoders, within the rounding of both summations.
TEST(KernelsTest, QuantRefsMatchDequantizedDot) {
  std::mt19937_64 rng(Seed() ^ 5);
  for (const QuantCase& c : QuantCases()) {
    const FormatInfo& wf = GetFormat(c.type);
    const FormatInfo& af = GetFormat(wf.activation);
    SCOPED_TRACE(std::string(wf.name));
    for (int64_t nb = 1; nb <= 4; ++nb) {
      const int64_t in = nb * wf.block_size;
      Weights w = MakeWeights(c.type, RandomValues(rng, size_t(in), 1.0f), 1, in);
      const auto x = RandomValues(rng, size_t(in), 1.0f);
      const auto a = QuantizeActivations(c.type, x, 1, in);
      std::vector<float> wf32(static_cast<size_t>(in)), af32(static_cast<size_t>(in));
      wf.dequantize(w.bytes.data(), wf32.data(), in);
      af.dequantize(a.data(), af32.data(), in);
      double exact = 0, bound = 0;
      for (int64_t i = 0; i < in; ++i) {
        exact += double(wf32[size_t(i)]) * double(af32[size_t(i)]);
        bound += (std::fabs(double(wf32[size_t(i)])) + c.min_mag(w.bytes.data(), i)) * std::fabs(double(af32[size_t(i)]));
      }
      EXPECT_NEAR(c.dot(w.bytes.data(), a.data(), in), exact, (2 * in + 16) * (FLT_EPSILON / 2) * bound + FLT_MIN);
    }
  }
}

// Fast kernels on every target: integer block sums equal the reference's
// exactly; float results within K u sum_i (|w_i| + min_i)|a_i|, K = 2 nb + 16
// (block-sequential reference vs 8-lane kernel, a few roundings per term).
// Every leftover: 1..3 blocks, rows around the 4-row tile, tokens 1..9.
TEST(KernelsTest, QuantKernelsMatchReference) {
  std::mt19937_64 rng(Seed() ^ 6);
  ThreadPool pool(2);
  const int64_t outs[] = {1, 2, 3, 4, 5, 7, 9};
  ForEachTarget([&](const KernelTarget&) {
    for (const QuantCase& c : QuantCases()) {
      const FormatInfo& wf = GetFormat(c.type);
      const FormatInfo& af = GetFormat(wf.activation);
      SCOPED_TRACE(std::string(wf.name));
      ASSERT_TRUE(HasFastMatMul(c.type));
      for (int64_t nb = 1; nb <= 3; ++nb)
        for (int64_t out : outs)
          for (int64_t n = 1; n <= 9; ++n) {
            SCOPED_TRACE(testing::Message() << "blocks " << nb << " out " << out << " n " << n);
            const int64_t in = nb * wf.block_size;
            Weights w = MakeWeights(c.type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
            const auto x = RandomValues(rng, size_t(n * in), 1.0f);
            const auto a = QuantizeActivations(c.type, x, n, in);
            std::vector<float> y(size_t(n * out), NAN);
            MatMul(w.view, x.data(), n, y.data(), pool, false);
            const size_t w_row = wf.RowBytes(in), a_row = af.RowBytes(in);
            std::vector<float> wf32(static_cast<size_t>(in)), af32(static_cast<size_t>(in));
            for (int64_t o = 0; o < out; ++o) {
              const uint8_t* wr = w.bytes.data() + size_t(o) * w_row;
              wf.dequantize(wr, wf32.data(), in);
              for (int64_t t = 0; t < n; ++t) {
                const uint8_t* ar = a.data() + size_t(t) * a_row;
                std::vector<int32_t> got(size_t(2 * nb)), want(size_t(2 * nb));
                ASSERT_TRUE(QuantBlockSums(c.type, wr, ar, in, got.data()));
                c.sums(wr, ar, in, want.data());
                ASSERT_EQ(got, want) << "row " << o << " token " << t;
                af.dequantize(ar, af32.data(), in);
                double bound = 0;
                for (int64_t i = 0; i < in; ++i)
                  bound += (std::fabs(double(wf32[size_t(i)])) + c.min_mag(wr, i)) * std::fabs(double(af32[size_t(i)]));
                const float ref = c.dot(wr, ar, in);
                ASSERT_NEAR(y[size_t(t * out + o)], ref, (2 * nb + 16) * (FLT_EPSILON / 2) * bound + FLT_MIN)
                    << "row " << o << " token " << t;
              }
            }
          }
    }
  });
}

// Edge blocks: all-zero weights (scale 0) and all-zero activations give 0;
// extreme codes (q8_0 -128 written by hand) stay exact.
TEST(KernelsTest, QuantEdgeBlocks) {
  ThreadPool pool(1);
  ForEachTarget([&](const KernelTarget&) {
    for (const QuantCase& c : QuantCases()) {
      const FormatInfo& wf = GetFormat(c.type);
      SCOPED_TRACE(std::string(wf.name));
      const int64_t in = 2 * wf.block_size, out = 5, n = 5;
      Weights zero_w = MakeWeights(c.type, std::vector<float>(size_t(out * in), 0.0f), out, in);
      std::vector<float> x(size_t(n * in), 1.5f), y(size_t(n * out), NAN);
      MatMul(zero_w.view, x.data(), n, y.data(), pool, false);
      for (float v : y) EXPECT_EQ(v, 0.0f);
      std::mt19937_64 rng(Seed() ^ 7);
      Weights w = MakeWeights(c.type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
      std::vector<float> zero_x(size_t(n * in), 0.0f);
      MatMul(w.view, zero_x.data(), n, y.data(), pool, false);
      for (float v : y) EXPECT_EQ(v, 0.0f);
    }
  });
  // Q8_0 weight codes of -128 (never written by the quantizer, legal in files).
  const FormatInfo& q8 = GetFormat(DTypeOf<Q8_0Format>());
  Weights w = MakeWeights(q8.id, std::vector<float>(64, 1.0f), 1, 64);
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 32; ++j) w.bytes[size_t(34 * b + 2 + j)] = 0x80;
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[size_t(i)] = (i % 3 == 0) ? -1.0f : 1.0f;
  const auto a = QuantizeActivations(q8.id, x, 1, 64);
  ForEachTarget([&](const KernelTarget&) {
    int32_t got[4], want[4];
    QuantBlockSums(q8.id, w.bytes.data(), a.data(), 64, got);
    BlockSumsQ8_0Q8_0Ref(w.bytes.data(), a.data(), 64, want);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], want[i]);
  });
}

}  // namespace
}  // namespace lowbit
