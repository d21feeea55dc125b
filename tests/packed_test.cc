// kernels/packed.h: the row-interleaved layouts of Q4_0, Q8_0 and Q4_K and
// their kernels. Packing is a byte permutation (unpacking restores every
// byte of random blocks); the SIMD kernel equals the layout's scalar reference
// bit for bit on every target; both match the row-major reference dot within
// the float bound of QuantKernelsMatchReference. Replayable: LOWBIT_SEED.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "core/half.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/matmul.h"
#include "kernels/packed.h"
#include "kernels/quant_dot_ref.h"
#include "test_random.h"
#include "test_targets.h"
#include "test_weights.h"

namespace lowbit {
namespace {

uint64_t Seed() { return testing::ReplayableSeed("packed_test"); }

const DType kTypes[] = {DTypeOf<Q4_0Format>(), DTypeOf<Q8_0Format>(), DTypeOf<Q4_KFormat>()};

std::vector<float> Gaussians(std::mt19937_64& rng, size_t count) {
  std::vector<float> v(count);
  for (float& x : v) x = float(testing::Gaussian(rng));
  return v;
}

TEST(Packed, OnlyWholeGroupsOfPackedTypes) {
  std::vector<uint8_t> bytes(1 << 16);
  ThreadPool pool(1);
  for (DType t : kTypes) {
    const int64_t in = GetFormat(t).block_size;
    EXPECT_TRUE(HasPackedLayout(t));
    EXPECT_NE(PackWeights({"w", t, {16, in}, bytes.data(), bytes.size()}, pool), nullptr);
    EXPECT_EQ(PackWeights({"w", t, {15, in}, bytes.data(), bytes.size()}, pool), nullptr);
    EXPECT_EQ(PackWeights({"w", t, {16, in + 1}, bytes.data(), bytes.size()}, pool), nullptr);
    EXPECT_EQ(PackWeights({"w", t, {16 * in}, bytes.data(), bytes.size()}, pool), nullptr);
  }
  EXPECT_FALSE(HasPackedLayout(DTypeOf<Q5_KFormat>()));
  EXPECT_EQ(PackWeights({"w", DType::kF32, {16, 32}, bytes.data(), bytes.size()}, pool), nullptr);
}

// Random bytes (every scale, min and code pattern, NaN scales included)
// survive pack + unpack unchanged.
TEST(Packed, UnpackRestoresEveryByte) {
  std::mt19937_64 rng(Seed() ^ 1);
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const FormatInfo& f = GetFormat(t);
    SCOPED_TRACE(std::string(f.name));
    for (int64_t rows : {16, 48})
      for (int64_t blocks : {1, 3, 8}) {
        const int64_t cols = blocks * f.block_size;
        std::vector<uint8_t> bytes(size_t(rows) * f.RowBytes(cols));
        for (uint8_t& b : bytes) b = uint8_t(rng());
        const auto p = PackWeights({"w", t, {rows, cols}, bytes.data(), bytes.size()}, pool);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(p->group_bytes % 64, 0);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p->data) % 64, 0u);
        std::vector<uint8_t> back(bytes.size(), 0xAA);
        UnpackWeights(*p, back.data());
        ASSERT_EQ(back, bytes) << rows << " x " << cols;
      }
  }
}

// Every target's kernel against the layout's reference, bit for bit; tokens
// 1..9 around the 4-token tile, 37 across a token chunk (8192 columns).
TEST(Packed, KernelEqualsLayoutReferenceBitForBit) {
  std::mt19937_64 rng(Seed() ^ 2);
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const FormatInfo& f = GetFormat(t);
    SCOPED_TRACE(std::string(f.name));
    for (int64_t cols : {f.block_size, 3 * f.block_size, 8192})
      for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 37}) {
        if (cols == 8192 && n < 9) continue;
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " n " << n);
        const int64_t rows = 32;
        const testing::Weights w = testing::MakeWeights(t, Gaussians(rng, size_t(rows * cols)), rows, cols);
        const auto p = PackWeights(w.view, pool);
        ASSERT_NE(p, nullptr);
        const std::vector<float> x = Gaussians(rng, size_t(n * cols));
        const PackedActivations a = QuantizePackedActivations(t, x.data(), n, cols, pool);
        std::vector<float> y_ref(size_t(n * rows), NAN);
        GemmPackedGroupsRef(*p, a, y_ref.data(), 0, rows / kPackRows);
        testing::ForEachTarget([&] {
          std::vector<float> y(size_t(n * rows), NAN);
          MatMulPacked(*p, x.data(), n, y.data(), pool);
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(y_ref[i]))
                << "output " << i << ": " << y[i] << " vs " << y_ref[i];
        });
      }
  }
}

// The activations the packed kernels read are the reference quantizer's
// Q8_0 / Q8_K blocks, split into arrays: codes, scales and sums equal on
// every target, for Gaussian rows with a zero block, a block of huge values,
// a NaN block (the reference path) and blocks whose largest magnitude occurs
// twice with opposite signs (Q8_K's scale takes the first one's sign).
TEST(Packed, ActivationsAreTheReferenceBlocksSplit) {
  std::mt19937_64 rng(Seed() ^ 5);
  for (DType t : kTypes) {
    const FormatInfo& af = GetFormat(GetFormat(t).activation);
    SCOPED_TRACE(std::string(GetFormat(t).name));
    const int64_t cols = 1024, n = 3, bs = af.block_size, nblk = cols / bs;
    std::vector<float> x = Gaussians(rng, size_t(n * cols));
    std::fill(x.begin() + bs, x.begin() + 2 * bs, 0.0f);           // token 0, block 1: zeros
    for (int64_t i = 0; i < bs; ++i) x[size_t(cols + i)] *= 1e30f;  // token 1, block 0: beyond f16
    x[size_t(2 * cols + 3 * bs + 5)] = NAN;                         // token 2, block 3: NaN
    x[size_t(2 * bs + 3)] = -50.0f, x[size_t(3 * bs - 2)] = 50.0f;  // token 0, block 2: the first of two maxima sets the sign
    x[size_t(3 * bs + 1)] = 50.0f, x[size_t(3 * bs + 6)] = -50.0f;  // block 3: the other way round
    std::vector<uint8_t> blocks(af.RowBytes(cols) * size_t(n));
    af.quantize(x.data(), n, cols, blocks.data(), nullptr);
    testing::ForEachTarget([&] {
      ThreadPool pool(2);
      const PackedActivations a = QuantizePackedActivations(t, x.data(), n, cols, pool);
      for (int64_t tok = 0; tok < n; ++tok)
        for (int64_t b = 0; b < nblk; ++b) {
          const uint8_t* blk = blocks.data() + size_t(tok) * af.RowBytes(cols) + size_t(b) * af.block_bytes;
          const float* scale = a.scale.get() + tok * nblk + b;
          const int8_t* codes = a.codes.get() + tok * cols + b * bs;
          const int32_t* sums = a.sums.get() + tok * a.sums_per_row;
          SCOPED_TRACE(::testing::Message() << "token " << tok << " block " << b);
          if (t == DTypeOf<Q4_KFormat>()) {  // Q8_K: f32 d, 256 codes, 16 i16 sums of 16
            float d;
            std::memcpy(&d, blk, 4);
            ASSERT_EQ(std::bit_cast<uint32_t>(*scale), std::bit_cast<uint32_t>(d));
            ASSERT_EQ(std::memcmp(codes, blk + 4, 256), 0);
            int16_t bsums[16];
            std::memcpy(bsums, blk + 260, sizeof(bsums));
            for (int p = 0; p < 4; ++p) {
              ASSERT_EQ(int16_t(sums[4 * b + p] & 0xffff), bsums[4 * p] + bsums[4 * p + 1]);
              ASSERT_EQ(int16_t(uint32_t(sums[4 * b + p]) >> 16), bsums[4 * p + 2] + bsums[4 * p + 3]);
            }
          } else {  // Q8_0: f16 d, 32 codes; sums = (-8 or -128) x code sum
            uint16_t dh;
            std::memcpy(&dh, blk, 2);
            const float d = F16ToF32(dh);
            ASSERT_TRUE(std::bit_cast<uint32_t>(*scale) == std::bit_cast<uint32_t>(d) || (std::isnan(d) && std::isnan(*scale)));
            ASSERT_EQ(std::memcmp(codes, blk + 2, 32), 0);
            int32_t sum = 0;
            for (int j = 0; j < 32; ++j) sum += int8_t(blk[2 + j]);
            ASSERT_EQ(sums[b], (t == DTypeOf<Q4_0Format>() ? -8 : -128) * sum);
          }
        }
    });
  }
}

// Products that share their input in one call (q/k/v, gate/up) give each
// product's MatMulPacked bits, for mixed types and row counts, 1-3 threads
// (the balanced loop's chunks land on either thread) and 1 or 5 tokens.
TEST(Packed, SharedInputProductsEqualSeparateCalls) {
  std::mt19937_64 rng(Seed() ^ 4);
  const int64_t cols = 512;
  const std::pair<DType, int64_t> shapes[] = {
      {DTypeOf<Q4_0Format>(), 160}, {DTypeOf<Q4_KFormat>(), 32}, {DTypeOf<Q8_0Format>(), 48}, {DTypeOf<Q4_0Format>(), 16}};
  std::vector<testing::Weights> weights;
  for (const auto& [t, rows] : shapes) weights.push_back(testing::MakeWeights(t, Gaussians(rng, size_t(rows * cols)), rows, cols));
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<std::unique_ptr<PackedWeights>> packed;
    for (const auto& w : weights) packed.push_back(PackWeights(w.view, pool));
    for (int64_t n : {1, 5}) {
      SCOPED_TRACE(::testing::Message() << threads << " threads, n " << n);
      const std::vector<float> x = Gaussians(rng, size_t(n * cols));
      std::vector<std::vector<float>> y(packed.size()), y_one(packed.size());
      std::vector<PackedProduct> products;
      for (size_t i = 0; i < packed.size(); ++i) {
        y[i].assign(size_t(n * packed[i]->rows), NAN);
        y_one[i].assign(y[i].size(), NAN);
        products.push_back({packed[i].get(), y[i].data()});
        MatMulPacked(*packed[i], x.data(), n, y_one[i].data(), pool);
      }
      MatMulPackedMany(products, x.data(), n, pool);
      for (size_t i = 0; i < packed.size(); ++i)
        for (size_t j = 0; j < y[i].size(); ++j)
          ASSERT_EQ(std::bit_cast<uint32_t>(y[i][j]), std::bit_cast<uint32_t>(y_one[i][j]))
              << "product " << i << " output " << j;
    }
  }
}

// Packed results against the row-major reference dot of the same blocks,
// within (2 nb + 24) u sum|terms| as for the row-major kernels; through
// MatMul with a view that carries the packed copy.
TEST(Packed, MatMulMatchesRowMajorReference) {
  std::mt19937_64 rng(Seed() ^ 3);
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const FormatInfo& wf = GetFormat(t);
    const FormatInfo& af = GetFormat(wf.activation);
    const QuantDotRef& ref = *FindQuantDotRef(t);
    SCOPED_TRACE(std::string(wf.name));
    const int64_t rows = 48, nb = 5, cols = nb * wf.block_size, n = 6;
    testing::Weights w = testing::MakeWeights(t, Gaussians(rng, size_t(rows * cols)), rows, cols);
    const auto p = PackWeights(w.view, pool);
    ASSERT_NE(p, nullptr);
    TensorView view = w.view;
    view.packed = p.get();
    const std::vector<float> x = Gaussians(rng, size_t(n * cols));
    std::vector<float> y(size_t(n * rows), NAN);
    MatMul(view, x.data(), n, y.data(), pool, false);
    std::vector<uint8_t> a(af.RowBytes(cols) * size_t(n));
    af.quantize(x.data(), n, cols, a.data(), nullptr);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t tok = 0; tok < n; ++tok) {
        const uint8_t* wr = w.bytes.data() + size_t(r) * wf.RowBytes(cols);
        const uint8_t* ar = a.data() + size_t(tok) * af.RowBytes(cols);
        const double bound = (2 * nb + 24) * (FLT_EPSILON / 2) * VecDotAbsRef(ref, wr, ar, cols) + FLT_MIN;
        ASSERT_NEAR(y[size_t(tok * rows + r)], VecDotRef(ref, wr, ar, cols), bound) << "row " << r << " token " << tok;
      }
    // The reference flag ignores the packed copy.
    std::vector<float> y_ref(size_t(n * rows));
    MatMul(view, x.data(), n, y_ref.data(), pool, true);
    std::vector<float> y_plain(size_t(n * rows));
    MatMulDequantRef(w.view, x.data(), n, y_plain.data(), pool);
    EXPECT_EQ(y_ref, y_plain);
  }
}

}  // namespace
}  // namespace lowbit
