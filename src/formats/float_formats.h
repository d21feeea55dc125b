// Plain float storage: F32, F16 (IEEE binary16), BF16. Also the model of a
// format traits struct: every format in formats/all_formats.h provides these
// members.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "formats/round_util.h"

namespace lowbit {

struct F32Format {
  static constexpr const char* kName = "f32";
  static constexpr uint32_t kGgufType = 0;     // GGML_TYPE_F32
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 1;
  static constexpr int kBlockBytes = 4;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = F32Format;                // dots are computed in f32
  static constexpr double kRmseLo = 0.0, kRmseHi = 0.0;
  static constexpr const char* kDatasheet = "IEEE binary32, 32 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    std::memcpy(out, x, size_t(rows * n) * sizeof(float));
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    std::memcpy(out, row, size_t(n) * sizeof(float));
  }
  // GPTQ's rounding (format.h RoundInPlaceFn): x itself (NaN -> 0, +-inf -> +-FLT_MAX).
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    x = round_util::Target(x);
    std::memcpy(row + 4 * i, &x, 4);
    return x;
  }
};

struct F16Format {
  static constexpr const char* kName = "f16";
  static constexpr uint32_t kGgufType = 1;     // GGML_TYPE_F16
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 1;
  static constexpr int kBlockBytes = 2;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = F32Format;
  // Relative error of round-to-nearest binary16 is uniform in +-2^-11 ulp-relative: RMS ~ 2^-11/sqrt(3) * ~1.
  static constexpr double kRmseLo = 1e-4, kRmseHi = 4e-4;
  static constexpr const char* kDatasheet = "IEEE binary16 (1-5-10), 16 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    for (int64_t i = 0; i < rows * n; ++i) {
      const uint16_t h = F32ToF16(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, row + 2 * i, 2);
      out[i] = F16ToF32(h);
    }
  }
  // x rounded to nearest even; beyond 65504 (where the conversion gives
  // inf) the largest finite value.
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    uint16_t h = F32ToF16(round_util::Target(x));
    if ((h & 0x7FFF) == 0x7C00) h = uint16_t((h & 0x8000) | 0x7BFF);
    std::memcpy(row + 2 * i, &h, 2);
    return F16ToF32(h);
  }
};

struct BF16Format {
  static constexpr const char* kName = "bf16";
  static constexpr uint32_t kGgufType = 30;    // GGML_TYPE_BF16
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 1;
  static constexpr int kBlockBytes = 2;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = F32Format;
  // 8-bit significand: relative RMS ~ 2^-8/sqrt(3) * ~0.8.
  static constexpr double kRmseLo = 8e-4, kRmseHi = 3e-3;
  static constexpr const char* kDatasheet = "bfloat16 (1-8-7), top half of binary32, 16 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    for (int64_t i = 0; i < rows * n; ++i) {
      const uint16_t h = F32ToBf16(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, row + 2 * i, 2);
      out[i] = Bf16ToF32(h);
    }
  }
  // x rounded to nearest even; beyond the largest finite bf16 (where the
  // conversion gives inf) that value.
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    uint16_t h = F32ToBf16(round_util::Target(x));
    if ((h & 0x7FFF) == 0x7F80) h = uint16_t((h & 0x8000) | 0x7F7F);
    std::memcpy(row + 2 * i, &h, 2);
    return Bf16ToF32(h);
  }
};

}  // namespace lowbit
