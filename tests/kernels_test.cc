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
#include "test_random.h"
#include "test_targets.h"
#include "test_weights.h"

namespace lowbit {
namespace {

uint64_t Seed() { return testing::ReplayableSeed("kernels_test"); }

using testing::MakeWeights;
using testing::Weights;

std::vector<float> RandomValues(std::mt19937_64& rng, size_t count, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  // Edge values: exact zeros of both signs.
  if (count > 2) v[0] = 0.0f, v[count / 2] = -0.0f;
  return v;
}

using testing::ForEachTarget;

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

// Random (out, in) weights of `type` times n random tokens through MatMul
// equal the reference path within twice the f32 dot bound of each output.
void ExpectMatMulNearReference(DType type, std::mt19937_64& rng, int64_t out, int64_t in, int64_t n,
                               ThreadPool& pool) {
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
            SCOPED_TRACE(::testing::Message() << "in " << in << " out " << out << " n " << n);
            ExpectMatMulNearReference(type, rng, out, in, n, pool);
            if (::testing::Test::HasFatalFailure()) return;
          }
    }
  });
}

// Formats without a fused kernel (lowbit's INT, NF4/FP4, FP8, log4) go
// through codec-decoded panels of 256 rows and the f32 GEMM: equal to the
// reference within the f32 dot bound, across panel boundaries.
TEST(KernelsTest, DecodedPanelsMatchReference) {
  std::mt19937_64 rng(Seed() ^ 5);
  ThreadPool pool(2);
  int checked = 0;
  for (const FormatInfo& f : AllFormats()) {
    if (!f.weight_format || HasFastMatMul(f.id)) continue;
    SCOPED_TRACE(std::string(f.name));
    const int64_t in = 2 * std::max<int64_t>(f.block_size, 64);
    for (int64_t out : {int64_t(1), int64_t(7), int64_t(256), int64_t(300)})
      for (int64_t n : {int64_t(1), int64_t(5)}) {
        SCOPED_TRACE(::testing::Message() << "out " << out << " n " << n);
        ExpectMatMulNearReference(f.id, rng, out, in, n, pool);
        if (::testing::Test::HasFatalFailure()) return;
      }
    ++checked;
  }
  EXPECT_GT(checked, 40);  // the INT family alone has 40 formats
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


// Activations quantized with the reference quantizer of the pairing format.
std::vector<uint8_t> QuantizeActivations(DType weight_type, const std::vector<float>& x, int64_t n, int64_t in) {
  const FormatInfo& af = GetFormat(GetFormat(weight_type).activation);
  std::vector<uint8_t> a(af.RowBytes(in) * size_t(n));
  af.quantize(x.data(), n, in, a.data(), nullptr);
  return a;
}

// The weight formats with a quantized kernel (each must have a reference).
std::vector<DType> QuantKernelTypes() {
  std::vector<DType> types;
  for (const FormatInfo& f : AllFormats())
    if (HasMatMulQuant(f.id)) types.push_back(f.id);
  return types;
}

TEST(KernelsTest, EveryQuantKernelHasAReference) {
  const auto types = QuantKernelTypes();
  EXPECT_GE(types.size(), 14u);  // all 14 ggml block weight formats
  for (DType t : types) {
    const QuantDotRef* ref = FindQuantDotRef(t);
    ASSERT_NE(ref, nullptr) << DTypeName(t);
    const FormatInfo& f = GetFormat(t);
    EXPECT_EQ(ref->block_size, f.block_size);
    EXPECT_EQ(size_t(ref->w_block_bytes), f.RowBytes(f.block_size));
    EXPECT_EQ(size_t(ref->a_block_bytes), GetFormat(f.activation).RowBytes(f.block_size));
  }
}

// The references are the dequantized dots: sum_i w_i a_i over the formats'
// own decoders, within the rounding of both sums (|error| <= (2 in + 16) u abs).
TEST(KernelsTest, QuantRefsMatchDequantizedDot) {
  std::mt19937_64 rng(Seed() ^ 5);
  for (DType type : QuantKernelTypes()) {
    const FormatInfo& wf = GetFormat(type);
    const FormatInfo& af = GetFormat(wf.activation);
    const QuantDotRef& ref = *FindQuantDotRef(type);
    SCOPED_TRACE(std::string(wf.name));
    for (int64_t nb = 1; nb <= 4; ++nb) {
      const int64_t in = nb * wf.block_size;
      Weights w = MakeWeights(type, RandomValues(rng, size_t(in), 1.0f), 1, in);
      const auto x = RandomValues(rng, size_t(in), 1.0f);
      const auto a = QuantizeActivations(type, x, 1, in);
      std::vector<float> wf32(static_cast<size_t>(in)), af32(static_cast<size_t>(in));
      wf.dequantize(w.bytes.data(), wf32.data(), in);
      af.dequantize(a.data(), af32.data(), in);
      double exact = 0;
      for (int64_t i = 0; i < in; ++i) exact += double(wf32[size_t(i)]) * double(af32[size_t(i)]);
      const double abs = VecDotAbsRef(ref, w.bytes.data(), a.data(), in);
      // Q8_1's s field is d * sum(q) rounded to f16 (relative 2^-11), which
      // the format's dot uses for the min term and the dequantized dot does not.
      const double s_rounding = wf.activation == DTypeOf<Q8_1Format>() ? 0x1p-11 * abs : 0.0;
      EXPECT_NEAR(VecDotRef(ref, w.bytes.data(), a.data(), in), exact,
                  (2 * in + 16) * (FLT_EPSILON / 2) * abs + s_rounding + FLT_MIN);
    }
  }
}

// Fast kernels on every target: integer block sums equal the reference's
// exactly; float results within K u abs with K = 2 nb + 24 (the reference
// adds nb block terms in order, a kernel nb terms per lane and 8 lanes, each
// term a few roundings). Every leftover: 1..3 blocks, rows around the 4-row
// tile, tokens 1..9 around the 2- and 4-token tiles.
TEST(KernelsTest, QuantKernelsMatchReference) {
  std::mt19937_64 rng(Seed() ^ 6);
  ThreadPool pool(2);
  const int64_t outs[] = {1, 2, 3, 4, 5, 7, 9};
  ForEachTarget([&](const KernelTarget&) {
    for (DType type : QuantKernelTypes()) {
      const FormatInfo& wf = GetFormat(type);
      const FormatInfo& af = GetFormat(wf.activation);
      const QuantDotRef& ref = *FindQuantDotRef(type);
      SCOPED_TRACE(std::string(wf.name));
      ASSERT_TRUE(HasFastMatMul(type));
      for (int64_t nb = 1; nb <= 3; ++nb)
        for (int64_t out : outs)
          for (int64_t n = 1; n <= 9; ++n) {
            SCOPED_TRACE(::testing::Message() << "blocks " << nb << " out " << out << " n " << n);
            const int64_t in = nb * wf.block_size;
            Weights w = MakeWeights(type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
            const auto x = RandomValues(rng, size_t(n * in), 1.0f);
            const auto a = QuantizeActivations(type, x, n, in);
            std::vector<float> y(size_t(n * out), NAN);
            MatMul(w.view, x.data(), n, y.data(), pool, false);
            const size_t w_row = wf.RowBytes(in), a_row = af.RowBytes(in);
            std::vector<int32_t> got(size_t(2 * nb)), want(size_t(2 * nb));
            for (int64_t o = 0; o < out; ++o) {
              const uint8_t* wr = w.bytes.data() + size_t(o) * w_row;
              for (int64_t t = 0; t < n; ++t) {
                const uint8_t* ar = a.data() + size_t(t) * a_row;
                ASSERT_TRUE(QuantBlockSums(type, wr, ar, in, got.data()));
                BlockSumsRef(ref, wr, ar, in, want.data());
                ASSERT_EQ(got, want) << "row " << o << " token " << t;
                const double bound = (2 * nb + 24) * (FLT_EPSILON / 2) * VecDotAbsRef(ref, wr, ar, in) + FLT_MIN;
                ASSERT_NEAR(y[size_t(t * out + o)], VecDotRef(ref, wr, ar, in), bound) << "row " << o << " token " << t;
              }
            }
          }
    }
  });
}

// Prompt-sized batches cross the GEMM's token chunks (kChunkBytes of
// activations each: 16 f32 tokens or 56 q8_k tokens of 4096) with leftovers.
TEST(KernelsTest, LargeBatchesCrossTokenChunks) {
  std::mt19937_64 rng(Seed() ^ 8);
  ThreadPool pool(2);
  const int64_t in = 4096, out = 6, n = 61;
  const auto x = RandomValues(rng, size_t(n * in), 1.0f);
  for (DType type : {DType::kF16, DTypeOf<Q4_KFormat>(), DTypeOf<Q4_0Format>()}) {
    SCOPED_TRACE(std::string(DTypeName(type)));
    Weights w = MakeWeights(type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
    std::vector<float> y(size_t(n * out), NAN);
    MatMul(w.view, x.data(), n, y.data(), pool, false);
    const FormatInfo& wf = GetFormat(type);
    if (wf.block_size == 1) {
      const std::vector<float> wf32 = ToF32(w.view);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t o = 0; o < out; ++o)
          ASSERT_NEAR(y[size_t(t * out + o)], DotF32Ref(&wf32[size_t(o * in)], &x[size_t(t * in)], in),
                      2 * FloatDotBound(&wf32[size_t(o * in)], &x[size_t(t * in)], in));
      continue;
    }
    const FormatInfo& af = GetFormat(wf.activation);
    const QuantDotRef& ref = *FindQuantDotRef(type);
    const auto a = QuantizeActivations(type, x, n, in);
    const int64_t nb = in / wf.block_size;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t o = 0; o < out; ++o) {
        const uint8_t* wr = w.bytes.data() + size_t(o) * wf.RowBytes(in);
        const uint8_t* ar = a.data() + size_t(t) * af.RowBytes(in);
        const double bound = (2 * nb + 24) * (FLT_EPSILON / 2) * VecDotAbsRef(ref, wr, ar, in) + FLT_MIN;
        ASSERT_NEAR(y[size_t(t * out + o)], VecDotRef(ref, wr, ar, in), bound) << "row " << o << " token " << t;
      }
  }
}

// The SIMD activation quantizers write the reference quantizers' bytes, on
// every target: random rows plus ties (k + 0.5 after scaling), zeros, blocks
// past the f16 range, tiny blocks whose 1/d overflows, and non-finite values.
TEST(KernelsTest, ActivationQuantizersMatchReference) {
  std::mt19937_64 rng(Seed() ^ 9);
  const int64_t n = 32 * 12;
  std::vector<float> x = RandomValues(rng, size_t(n), 3.0f);
  for (int j = 0; j < 32; ++j) x[size_t(32 + j)] = float(j - 16) * 0.5f;       // ties at amax 8: x*id = k/2 * 127/8
  for (int j = 0; j < 32; ++j) x[size_t(64 + j)] = float(j % 2 ? 127 : -127);  // codes exactly +-127
  for (int j = 0; j < 32; ++j) x[size_t(96 + j)] = 0.0f;                       // scale 0
  for (int j = 0; j < 32; ++j) x[size_t(128 + j)] = 1e9f * float(j - 7);       // beyond f16: saturated scale
  for (int j = 0; j < 32; ++j) x[size_t(160 + j)] = 1e-42f * float(j);         // subnormal d: 1/d overflows
  for (int j = 0; j < 32; ++j) x[size_t(192 + j)] = (float(j) + 0.5f) * (127.0f / 31.5f);  // x*id near k + 0.5
  x[size_t(224 + 3)] = INFINITY;
  x[size_t(256 + 5)] = -INFINITY;
  for (DType act : {DTypeOf<Q8_0Format>(), DTypeOf<Q8_1Format>()}) {
    const FormatInfo& af = GetFormat(act);
    SCOPED_TRACE(std::string(af.name));
    std::vector<uint8_t> want(af.RowBytes(n));
    af.quantize(x.data(), 1, n, want.data(), nullptr);
    ForEachTarget([&](const KernelTarget&) {
      std::vector<uint8_t> got(want.size(), 0xAA);
      ASSERT_TRUE(QuantizeActivations(act, x.data(), 1, n, got.data()));
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "byte " << i << " block " << i / size_t(af.block_bytes);
    });
  }
  // Q8_K (blocks of 256): the rows above plus a block whose largest
  // magnitude occurs with both signs (the first decides the scale's sign)
  // and one of exact half-integer products (round half to even).
  const DType q8k = DTypeOf<Q8_KFormat>();
  std::vector<float> xk = RandomValues(rng, 256 * 6, 2.0f);
  std::copy(x.begin(), x.end(), xk.begin());
  for (int j = 0; j < 256; ++j) xk[size_t(512 + j)] = float((j * 37) % 101 - 50) * 0.01f;
  xk[size_t(512 + 10)] = -0.75f, xk[size_t(512 + 200)] = 0.75f;
  for (int j = 0; j < 256; ++j) xk[size_t(768 + j)] = float(j % 254 - 127) + 0.5f;  // x * -1 = ties k + 0.5
  xk[size_t(768 + 3)] = 127.0f;                                                    // the max: iscale -1
  for (int j = 0; j < 256; ++j) xk[size_t(1024 + j)] = 0.0f;
  xk[size_t(1280 + 7)] = NAN;
  const FormatInfo& kf = GetFormat(q8k);
  std::vector<uint8_t> want_k(kf.RowBytes(int64_t(xk.size())));
  kf.quantize(xk.data(), 1, int64_t(xk.size()), want_k.data(), nullptr);
  ForEachTarget([&](const KernelTarget&) {
    std::vector<uint8_t> got(want_k.size(), 0xAA);
    ASSERT_TRUE(QuantizeActivations(q8k, xk.data(), 1, int64_t(xk.size()), got.data()));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want_k[i]) << "q8_k byte " << i << " block " << i / size_t(kf.block_bytes);
  });
}

// Edge blocks: all-zero weights (scale 0) and all-zero activations give 0;
// extreme codes written by hand (q8_0 -128, every code at its maximum) stay exact.
TEST(KernelsTest, QuantEdgeBlocks) {
  ThreadPool pool(1);
  std::mt19937_64 rng(Seed() ^ 7);
  ForEachTarget([&](const KernelTarget&) {
    for (DType type : QuantKernelTypes()) {
      const FormatInfo& wf = GetFormat(type);
      SCOPED_TRACE(std::string(wf.name));
      const int64_t in = 2 * wf.block_size, out = 5, n = 5;
      Weights zero_w = MakeWeights(type, std::vector<float>(size_t(out * in), 0.0f), out, in);
      std::vector<float> x(size_t(n * in), 1.5f), y(size_t(n * out), NAN);
      MatMul(zero_w.view, x.data(), n, y.data(), pool, false);
      for (float v : y) EXPECT_EQ(v, 0.0f);
      Weights w = MakeWeights(type, RandomValues(rng, size_t(out * in), 1.0f), out, in);
      std::vector<float> zero_x(size_t(n * in), 0.0f);
      MatMul(w.view, zero_x.data(), n, y.data(), pool, false);
      for (float v : y) EXPECT_EQ(v, 0.0f);
      // Every byte 0xFF except the f16/f32 scales' top bytes kept small:
      // the largest codes, scales and masks of each layout.
      Weights big = MakeWeights(type, RandomValues(rng, size_t(in), 1.0f), 1, in);
      std::vector<uint8_t> saved = big.bytes;
      for (size_t i = 0; i < big.bytes.size(); ++i) big.bytes[i] = 0xFF;
      std::vector<float> ones(size_t(in), -1.0f);
      const auto a = QuantizeActivations(type, ones, 1, in);
      std::vector<int32_t> got(4), want(4);
      const QuantDotRef& ref = *FindQuantDotRef(type);
      ASSERT_TRUE(QuantBlockSums(type, big.bytes.data(), a.data(), in, got.data()));
      BlockSumsRef(ref, big.bytes.data(), a.data(), in, want.data());
      EXPECT_EQ(got, want);
    }
  });
}

}  // namespace
}  // namespace lowbit
