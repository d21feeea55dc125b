// FP8 weight formats: OCP E4M3 and E5M2 codes (core/fp8.h) with one f32
// scale per row, the per-output-channel FP8 that vLLM / compressed-tensors
// call "channel" strategy.
//
// Datasheet (both):
//   row  = [f32 scale][n x u8 FP8 code]          RowBytes(n) = 4 + n
//   bits per weight = 8 + 32/n  (8.0078 for n = 4096)
//   scale = absmax(row) / max_finite, kept to 16 significant bits rounded
//           toward zero (quant_util.h: makes re-quantization exact); an
//           all-zero row has scale 0 and all codes 0.
//   code  = FP8(x / scale), round to nearest even, saturating at +-max_finite
//   x'    = scale * FP8ToF32(code)
//   E4M3: 3 mantissa bits, range +-448, relative step 2^-3 (for weights);
//   E5M2: 2 mantissa bits, range +-57344, more range and half the precision.
// Neither format needs the per-row scale for range; the scale puts the row's
// absmax on the largest code so the whole code book is used.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/fp8.h"
#include "formats/float_formats.h"
#include "formats/quant_util.h"
#include "formats/round_util.h"

namespace lowbit {

template <typename Codec>
struct Fp8RowCodec {
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * n;
      uint8_t* o = out + r * (4 + n);
      float amax = 0.0f;
      for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(xr[i]));
      const float scale = quant::RoundScaleToF32Bits16Down(amax / Codec::kMaxFinite);
      quant::StoreF32(o, scale);
      for (int64_t i = 0; i < n; ++i) o[4 + i] = scale > 0.0f ? Codec::Encode(xr[i] / scale) : uint8_t(0);
    }
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    const float scale = quant::LoadF32(row);
    for (int64_t i = 0; i < n; ++i) out[i] = scale * Codec::Decode(row[4 + i]);
  }
  // GPTQ's fixed-scale rounding: the finite codes as signed ordinals
  // -max..max, whose values ascend with the ordinal (NaN and E5M2's inf
  // codes are never written). Encode(x / scale) is within one ordinal of
  // the nearest (scale * value is exact: 16 by 4 significant bits).
  static float RoundInPlace(uint8_t* row, int64_t i, float x) {
    constexpr int kMaxOrdinal = Codec::kMaxFiniteCode;
    const float scale = quant::LoadF32(row);
    x = round_util::Target(x);
    auto code = [](int ordinal) { return uint8_t(ordinal < 0 ? 0x80 | -ordinal : ordinal); };
    auto value = [scale, code](int ordinal) { return scale * Codec::Decode(code(ordinal)); };
    const uint8_t guess = scale > 0.0f ? Codec::Encode(x / scale) : uint8_t(0);
    const int ordinal = round_util::NearestCodeAround(x, (guess & 0x80) ? -(guess & 0x7F) : guess, -kMaxOrdinal,
                                                      kMaxOrdinal, value);
    row[4 + i] = code(ordinal);
    return value(ordinal);
  }
};

struct Fp8E4M3Format {
  static constexpr const char* kName = "fp8_e4m3";
  static constexpr uint32_t kGgufType = 1024;  // lowbit-private, fixed forever
  static constexpr bool kGgmlNative = false;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 1;
  static constexpr int kBlockBytes = 1;
  static constexpr int kRowHeaderBytes = 4;  // f32 scale
  using Activation = Fp8E4M3Format;          // W8A8-FP8: activations per token in E4M3
  // Measured 0.0263 on N(0,1) rows of 4096: 3 mantissa bits give a relative
  // step 2^-3..2^-4 across a binade, RMS ~ step/sqrt(12) ~ 0.018..0.036.
  static constexpr double kRmseLo = 0.021, kRmseHi = 0.033;
  static constexpr const char* kDatasheet =
      "OCP FP8 E4M3 (bias 7, max 448, no inf) + f32 scale per row: 8 + 32/n bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    Fp8RowCodec<Fp8E4M3>::QuantizeRows(x, rows, n, out);
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    Fp8RowCodec<Fp8E4M3>::DequantizeRow(row, out, n);
  }
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    return Fp8RowCodec<Fp8E4M3>::RoundInPlace(row, i, x);
  }
};

struct Fp8E5M2Format {
  static constexpr const char* kName = "fp8_e5m2";
  static constexpr uint32_t kGgufType = 1025;  // lowbit-private, fixed forever
  static constexpr bool kGgmlNative = false;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 1;
  static constexpr int kBlockBytes = 1;
  static constexpr int kRowHeaderBytes = 4;  // f32 scale
  using Activation = Fp8E4M3Format;          // FP8 GEMMs take E4M3 activations against E5M2 weights
  // Measured 0.0531: one mantissa bit fewer than E4M3, twice the error.
  static constexpr double kRmseLo = 0.042, kRmseHi = 0.066;
  static constexpr const char* kDatasheet =
      "OCP FP8 E5M2 (bias 15, max 57344, inf/NaN) + f32 scale per row: 8 + 32/n bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    Fp8RowCodec<Fp8E5M2>::QuantizeRows(x, rows, n, out);
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    Fp8RowCodec<Fp8E5M2>::DequantizeRow(row, out, n);
  }
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    return Fp8RowCodec<Fp8E5M2>::RoundInPlace(row, i, x);
  }
};

}  // namespace lowbit
