// llama.cpp's non-linear 4-bit IQ4_NL and its ternary TQ1_0 / TQ2_0 (BitNet
// b1.58 / TriLM weights), bit-exact ggml layouts. The reference quantizers
// follow ggml-quants.c step for step (quantize_iq4_nl, quantize_row_tq*_ref),
// so our bytes equal llama-quantize's. Codecs in ggml_nl_ternary.cc; full
// datasheets in docs/FORMATS.md.
#pragma once

#include <cstdint>

#include "formats/ggml_kquants.h"
#include "formats/ggml_legacy.h"

namespace lowbit {

// IQ4_NL (ggml type 20). 32 weights in 18 bytes = 4.5 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-17  qs[16] 4-bit indices, packed as Q4_0 (byte j: element j low,
//                      element j+16 high)
// x = d * kIq4NlValues[q], a 16-level table in [-127, 113] denser near zero
// (iq4_table.h). Quantizer (llama.cpp's quantize_iq4_nl, used by
// llama-quantize with or without an imatrix): 16 candidate inverse scales
// (127/m and (t - 127)/m for t in [-7, 7], m the signed extreme), nearest
// table entry per weight, the weighted least-squares d of each, keep the
// best; then re-index at that d.
// Weights: x^2, or imatrix_j * sqrt(2 mean(x^2 over the block) + x_j^2).
struct IQ4_NLFormat {
  struct Block {
    uint16_t d;
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 18);
  static constexpr const char* kName = "iq4_nl";
  static constexpr uint32_t kGgufType = 20;  // GGML_TYPE_IQ4_NL
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 18;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_0Format;
  // The scale search can settle elsewhere on the decoded block.
  static constexpr bool kIdempotent = false;
  static constexpr double kRmseLo = 0.065, kRmseHi = 0.088;  // measured 0.0759
  static constexpr const char* kDatasheet =
      "ggml IQ4_NL: 32 x 4-bit index into a 16-level non-linear table + f16 scale, 4.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// TQ1_0 (ggml type 34). 256 weights in 54 bytes = 1.6875 bits/weight.
//   bytes 0-47  qs[48] 5 trits per byte: byte m < 32 holds elements m + 32 i,
//                      byte 32 + m (m < 16) elements 160 + m + 16 i, i = 0..4
//   bytes 48-51 qh[4]  4 trits per byte: byte m holds elements 240 + m + 4 i
//   bytes 52-53 d      f16 scale
// A byte's trits t_0..t_4 (t_0 first) form v = sum t_i 3^(4-i) < 243, stored
// as ceil(v * 256 / 243) so that trit i is the top base-3 digit of the
// byte times 3^i: ((uint8(byte * 3^i)) * 3) >> 8 -- no division to decode.
// qh bytes carry a fifth trit of 0. x = d * (t - 1), t in {0, 1, 2}.
// Quantizer: d = max|x| over the 256, t = round-half-away(x / d) + 1.
struct TQ1_0Format {
  struct Block {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 54);
  static constexpr const char* kName = "tq1_0";
  static constexpr uint32_t kGgufType = 34;  // GGML_TYPE_TQ1_0
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = 54;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.807: N(0,1) is far from ternary; with d = amax (~2.9 sigma
  // over 256) most weights round to 0. The format is for BitNet weights.
  static constexpr double kRmseLo = 0.75, kRmseHi = 0.87;
  static constexpr const char* kDatasheet =
      "ggml TQ1_0: 256 ternary weights, 5 trits/byte + f16 scale, 1.6875 bits/weight";
  // Ternary formats hold already-ternary (BitNet) weights: the importance
  // vector is ignored, as in llama.cpp.
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// TQ2_0 (ggml type 35). 256 weights in 66 bytes = 2.0625 bits/weight.
//   bytes 0-63  qs[64] 2-bit codes: byte 32 h + m (h = 0, 1; m < 32) holds
//                      element 128 h + m + 32 i in bits 2i..2i+1, i = 0..3
//   bytes 64-65 d      f16 scale
// x = d * (q - 1); the quantizer writes q in {0, 1, 2} (q = 3 decodes to 2d).
// Quantizer as TQ1_0.
struct TQ2_0Format {
  struct Block {
    uint8_t qs[64];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 66);
  static constexpr const char* kName = "tq2_0";
  static constexpr uint32_t kGgufType = 35;  // GGML_TYPE_TQ2_0
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = 66;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  static constexpr double kRmseLo = 0.75, kRmseHi = 0.87;  // same codes as TQ1_0
  static constexpr const char* kDatasheet =
      "ggml TQ2_0: 256 ternary weights as 2-bit codes + f16 scale, 2.0625 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

}  // namespace lowbit
