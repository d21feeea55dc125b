// log4: a 4-bit logarithmic (power-of-two) code with a scale per group of 32.
// Power-of-two levels turn multiplications into shifts and spend the code
// book where weight density is highest (near zero); the price is coarse
// steps near the absmax (1/2 -> 1).
//
// Datasheet:
//   block of 32 = [f16 scale][16 B codes], 18 B: 4.5 bits/weight
//   code = s eee (bit 3 sign, bits 0-2 exponent field e), two per byte,
//   element 2j in the LOW nibble (lowbit's dense LSB-first packing).
//   value = 0 for e = 0, else (-1)^s * 2^(e-7), i.e. magnitudes
//   {0, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2, 1}; x' = scale * value.
//   scale = absmax of the group rounded toward zero to f16 (quant_util.h);
//   the code is the nearest level of x / scale in linear distance (decision
//   points at the arithmetic midpoints 1.5 * 2^(e-8) and 2^-7), sign taken
//   from x's sign bit; levels clip at 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "formats/float_formats.h"
#include "formats/quant_util.h"
#include "formats/round_util.h"

namespace lowbit {

struct Log4Format {
  static constexpr const char* kName = "log4";
  static constexpr uint32_t kGgufType = 1030;  // lowbit-private, fixed forever
  static constexpr bool kGgmlNative = false;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 18;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = F32Format;
  // Measured 0.1814 on N(0,1) rows of 4096: the 1/2 -> 1 step dominates.
  static constexpr double kRmseLo = 0.145, kRmseHi = 0.227;
  static constexpr const char* kDatasheet =
      "sign + 3-bit power-of-two exponent {0, 2^-6..1}, f16 scale per 32: 4.5 bits/weight";

  // Magnitude of exponent field e, ascending in e.
  static constexpr float kMagnitudes[8] = {0.0f, 1.0f / 64, 1.0f / 32, 1.0f / 16, 1.0f / 8, 1.0f / 4, 1.0f / 2, 1.0f};

  static float DecodeCode(uint8_t code) {
    const float m = kMagnitudes[code & 7];
    return (code & 8) ? -m : m;
  }
  static uint8_t EncodeCode(float y) {
    const uint8_t sign = std::signbit(y) ? 8 : 0;
    return uint8_t(sign | quant::NearestIndex(kMagnitudes, 8, std::fabs(y)));
  }

  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    for (int64_t g = 0; g < rows * (n / kBlockSize); ++g) {  // rows have no header: groups run on
      const float* xg = x + g * kBlockSize;
      uint8_t* block = out + g * kBlockBytes;
      float amax = 0.0f;
      for (int i = 0; i < kBlockSize; ++i) amax = std::max(amax, std::fabs(xg[i]));
      const float scale = quant::RoundScaleToF16Down(amax);
      quant::StoreF16(block, scale);
      for (int i = 0; i < kBlockSize; i += 2) {
        const float y0 = scale > 0.0f ? xg[i] / scale : std::copysign(0.0f, xg[i]);
        const float y1 = scale > 0.0f ? xg[i + 1] / scale : std::copysign(0.0f, xg[i + 1]);
        block[2 + i / 2] = uint8_t(EncodeCode(y0) | EncodeCode(y1) << 4);
      }
    }
  }
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn): the nearest of
  // the levels times the group's scale, searched over signed ordinals -7..7
  // (sign and exponent field; values ascend with them; 0 is +0).
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    uint8_t* block = row + (i / kBlockSize) * kBlockBytes;
    const float scale = quant::LoadF16(block);
    auto code = [](int ordinal) { return uint8_t(ordinal < 0 ? 8 | -ordinal : ordinal); };
    auto value = [scale, code](int ordinal) { return scale * DecodeCode(code(ordinal)); };
    const int ordinal = round_util::NearestMonotoneCode(round_util::Target(x), -7, 7, value);
    quant::SetCode<4>(block + 2, i % kBlockSize, code(ordinal));
    return value(ordinal);
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    for (int64_t g = 0; g < n / kBlockSize; ++g) {
      const uint8_t* block = row + g * kBlockBytes;
      const float scale = quant::LoadF16(block);
      for (int i = 0; i < kBlockSize; i += 2) {
        out[g * kBlockSize + i] = scale * DecodeCode(block[2 + i / 2] & 15);
        out[g * kBlockSize + i + 1] = scale * DecodeCode(block[2 + i / 2] >> 4);
      }
    }
  }
};

}  // namespace lowbit
