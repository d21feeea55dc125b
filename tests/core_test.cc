// core: f16/bf16 conversions (exhaustive against the CPU's F16C instructions),
// thread pool partitioning, tensor helpers.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "core/half.h"
#include "core/tensor.h"
#include "formats/format.h"
#include "core/thread_pool.h"

namespace lowbit {
namespace {

// Hardware conversions (F16C, round to nearest even) as the independent reference.
__attribute__((target("f16c"))) float HwF16ToF32(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t HwF32ToF16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

TEST(Half, F16ToF32MatchesHardwareForAllCodes) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float expect = HwF16ToF32(uint16_t(h));
    const float got = F16ToF32(uint16_t(h));
    if (std::isnan(expect)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(expect)) << "code " << h;
    }
  }
}

TEST(Half, F32ToF16RoundsToNearestEvenLikeHardware) {
  std::mt19937 rng(1234);
  std::vector<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) bits.push_back(rng());
  // Edges: halfway cases, overflow threshold, subnormal boundary, zeros.
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    const uint32_t f = std::bit_cast<uint32_t>(F16ToF32(uint16_t(h)));
    bits.push_back(f);
    bits.push_back(f + 0x1000);  // exactly half an f16 ulp above (normal range)
    bits.push_back(f | 0x80000000u);
  }
  bits.insert(bits.end(), {0x477FEFFFu, 0x477FF000u, 0x38800000u, 0x387FFFFFu, 0x33000000u, 0x33000001u, 0u,
                           0x80000000u, 0x7F800000u, 0xFF800000u});
  for (uint32_t b : bits) {
    const float f = std::bit_cast<float>(b);
    if (std::isnan(f)) continue;
    const uint16_t expect = HwF32ToF16(f);
    ASSERT_EQ(F32ToF16(f), expect) << "float bits 0x" << std::hex << b;
  }
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(std::nanf("")))));
}

TEST(Half, Bf16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToF32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(f))));
      continue;
    }
    EXPECT_EQ(F32ToBf16(f), h);
  }
  // 1 + 2^-8 is exactly halfway between two bf16 values: rounds to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + 0x1p-8f), F32ToBf16(1.0f));
  EXPECT_EQ(F32ToBf16(1.0f + 0x1p-8f + 0x1p-20f), F32ToBf16(1.0f) + 1);
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 3; ++rep)
        pool.ParallelFor(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 3) << threads << " " << n << " " << i;
    }
  }
}

TEST(Tensor, ShapesAndConversion) {
  std::vector<uint16_t> data = {F32ToF16(1.5f), F32ToF16(-2.0f), F32ToF16(0.25f), F32ToF16(8.0f),
                                F32ToF16(3.0f), F32ToF16(-0.5f)};
  TensorView v{"t", DType::kF16, {2, 3}, data.data(), data.size() * 2};
  EXPECT_EQ(v.NumElements(), 6);
  EXPECT_EQ(v.Rows(), 2);
  EXPECT_EQ(v.RowLength(), 3);
  EXPECT_EQ(v.ShapeString(), "(2, 3)");
  EXPECT_EQ(ToF32(v), (std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f, 3.0f, -0.5f}));
}

}  // namespace
}  // namespace lowbit
