// bitsandbytes 4-bit formats: NF4 and FP4 with blocks of 64 and an absmax
// scale per block (QLoRA's storage), and their double-quantized variants
// nf4_dq / fp4_dq, in lowbit's row layout. Code books and the dynamic 8-bit
// map are in bnb_formats.cc.
//
// Datasheet, nf4 / fp4:
//   block of 64 = [f32 absmax][32 B codes], 36 B: 4.5 bits/weight
//   (bnb keeps absmax in a separate f32 tensor; here it leads its block).
//   Codes are 4-bit indices into a 16-value code book, two per byte, first
//   element in the HIGH nibble (bnb: packed = q[0::2] << 4 | q[1::2]).
//   x' = book[code] * absmax; the quantizer picks the nearest entry of
//   x / absmax (decision points at midpoints, ties to the lower entry, as
//   bnb's decision trees), so the absmax element is exact.
//   NF4 book (code 0..15, ascending): -1, -0.696, ..., 0 (code 7), ..., 1.
//   FP4 book: bnb's E2M1 with its own bias, sign in bit 3, magnitudes by
//   code 0..7: {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12. lowbit takes the sign
//   from the sign bit of x (bnb: x < 0), so -0 stays -0 (code 8) and
//   re-quantization is exact.
//
// Datasheet, nf4_dq / fp4_dq (double quantization, QLoRA §3):
//   row   = [f32 offset][f32 absmax2] then blocks of 64 = [u8 absmax code][32 B codes]
//   RowBytes(n) = 8 + 33 n / 64: 4.125 + 64/n bits/weight (4.1406 for n = 4096;
//   bnb: 4 + 8/64 + 32/(64*256) = 4.127 plus one f32 offset per tensor).
//   offset = mean of the row's block absmaxes; absmax2 = max |absmax - offset|;
//   absmax code = nearest entry of (absmax - offset) / absmax2 in bnb's signed
//   "dynamic" 8-bit map (create_dynamic_map(signed=True, 7, 8)); decoded
//   absmax = map[code] * absmax2 + offset.
//   Adaptation: bnb takes one offset per tensor and absmax2 per group of 256
//   blocks; lowbit takes both per row, so rows stay independent (a row of
//   <= 16384 elements is <= 256 blocks: bnb's grouping whenever the tensor
//   is one row; longer rows share absmax2 across more blocks). The 4-bit
//   codes are chosen against the *decoded* absmax (bnb: against the exact
//   one), which costs nothing in bits and lowers the error.
#pragma once

#include <cstdint>

#include "formats/float_formats.h"

namespace lowbit {

namespace bnb {

enum class Book4 { kNf4, kFp4 };

// Code book in code order (entry i is the value of code i).
const float* CodeBook(Book4 book);
// bnb's signed dynamic 8-bit map, ascending (256 entries; 0 at index 127, 1.0 at 255).
const float* DynamicMap();
// Nearest 4-bit code of y (y normally in [-1, 1]).
uint8_t Encode4(Book4 book, float y);

void QuantizeRows(Book4 book, bool double_quant, const float* x, int64_t rows, int64_t n, uint8_t* out);
void DequantizeRow(Book4 book, bool double_quant, const uint8_t* row, float* out, int64_t n);
// GPTQ's fixed-scale rounding (format.h RoundInPlaceFn): the nearest of the
// 16 book entries times the block's (decoded) absmax.
float RoundInPlace(Book4 book, bool double_quant, uint8_t* row, int64_t i, float x);

}  // namespace bnb

template <bnb::Book4 kBook, bool kDoubleQuant>
struct BnbFormat {
  static constexpr bool kIsNf4 = kBook == bnb::Book4::kNf4;
  static constexpr const char* kName = kIsNf4 ? (kDoubleQuant ? "nf4_dq" : "nf4") : (kDoubleQuant ? "fp4_dq" : "fp4");
  // lowbit-private, fixed forever.
  static constexpr uint32_t kGgufType = 1026 + (kIsNf4 ? 0 : 1) + (kDoubleQuant ? 2 : 0);
  static constexpr bool kGgmlNative = false;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 64;
  static constexpr int kBlockBytes = kDoubleQuant ? 33 : 36;
  static constexpr int kRowHeaderBytes = kDoubleQuant ? 8 : 0;
  // Re-quantizing double-quantized data moves the row's mean absmax (the
  // offset), hence the absmax codes: not idempotent, only stable in error.
  static constexpr bool kIdempotent = !kDoubleQuant;
  using Activation = F32Format;  // bnb dequantizes and multiplies in floating point
  // Measured on N(0,1) rows of 4096: nf4 0.0913, fp4 0.1216; double
  // quantization adds ~0.5% of that (nf4_dq 0.0918, fp4_dq 0.1219).
  static constexpr double kRmseLo = kIsNf4 ? 0.073 : 0.097;
  static constexpr double kRmseHi = kIsNf4 ? 0.114 : 0.152;
  static constexpr const char* kDatasheet =
      kIsNf4 ? (kDoubleQuant ? "bnb NF4, blocks of 64, absmax double-quantized to u8 per row: 4.125 + 64/n bits/weight"
                             : "bnb NF4 (normal-quantile code book), blocks of 64, f32 absmax: 4.5 bits/weight")
             : (kDoubleQuant
                    ? "bnb FP4 (e2m1), blocks of 64, absmax double-quantized to u8 per row: 4.125 + 64/n bits/weight"
                    : "bnb FP4 (e2m1, bnb bias), blocks of 64, f32 absmax: 4.5 bits/weight");
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    bnb::QuantizeRows(kBook, kDoubleQuant, x, rows, n, out);
  }
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    bnb::DequantizeRow(kBook, kDoubleQuant, row, out, n);
  }
  static float RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
    return bnb::RoundInPlace(kBook, kDoubleQuant, row, i, x);
  }
};

using Nf4Format = BnbFormat<bnb::Book4::kNf4, false>;
using Fp4Format = BnbFormat<bnb::Book4::kFp4, false>;
using Nf4DqFormat = BnbFormat<bnb::Book4::kNf4, true>;
using Fp4DqFormat = BnbFormat<bnb::Book4::kFp4, true>;

}  // namespace lowbit
