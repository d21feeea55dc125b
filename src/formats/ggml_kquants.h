// llama.cpp's K-quant family (Q2_K ... Q6_K, the Q8_K activation format) and
// IQ4_XS, bit-compatible with ggml: the same block bytes, the same
// dequantized floats, and reference quantizers that reproduce
// llama-quantize's bytes (without an importance vector) and follow its
// imatrix-weighted path (with one). Full datasheets: docs/FORMATS.md,
// "llama.cpp K-quants and IQ4_XS".
//
// All of them are super-block formats: 256 weights per block (QK_K), split
// into sub-blocks of 16 or 32 whose scales are themselves quantized against
// one or two fp16 super-scales. Blocks are stored back to back, no row header.
// Multi-byte fields are little-endian; fp16 fields hold IEEE binary16 bits.
#pragma once

#include <cstdint>

namespace lowbit {

// Q8_K: the activation side of every K-quant dot product (never a weight
// format; llama.cpp has no file type for it).
//   float d; int8 qs[256]; int16 bsums[16]
//   x[i] = d * qs[i]; d = -max/127 with max the signed value of largest |x|
//   (so qs is in [-127, 127]); bsums[j] = sum of qs[16j .. 16j+15], which lets
//   a dot with a min-offset format subtract m * bsums without a second pass.
//   292 bytes / 256 = 9.125 bits per value.
struct Q8_KFormat {
  struct Block {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
  };
  static_assert(sizeof(Block) == 292);
  static constexpr const char* kName = "q8_k";
  static constexpr uint32_t kGgufType = 15;  // GGML_TYPE_Q8_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = false;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.0069 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.005, kRmseHi = 0.009;
  static constexpr const char* kDatasheet =
      "K-quant activations: f32 d + 256 x int8 + 16 x int16 block sums, 9.125 bits/value";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
};

// Q2_K: 16 sub-blocks of 16, asymmetric.
//   u8 scales[16]; u8 qs[64]; fp16 d; fp16 dmin
//   x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in [0, 3].
//   qs: 128-weight half h uses qs[32h .. 32h+31]; bits 2s..2s+1 of qs[32h + l]
//   hold weight 128h + 32s + l.
//   84 bytes / 256 = 2.625 bits per weight.
struct Q2_KFormat {
  struct Block {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;
    uint16_t dmin;
  };
  static_assert(sizeof(Block) == 84);
  static constexpr const char* kName = "q2_k";
  static constexpr uint32_t kGgufType = 10;  // GGML_TYPE_Q2_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.296 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.24, kRmseHi = 0.36;
  static constexpr const char* kDatasheet =
      "llama.cpp Q2_K: 16x16 sub-blocks, 4-bit scales+mins, fp16 d/dmin, 2.625 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q3_K: 16 sub-blocks of 16, symmetric.
//   u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d
//   x = d * (sc[j] - 32) * (q - 4), q in [0, 7], sc 6-bit.
//   q = low 2 bits (qs, laid out as in Q2_K) + 4 * high bit; the high bit of
//   weight i is bit i / 32 of hmask[i % 32].
//   scales[12]: the low nibbles of sc[0..7] in the low nibbles of bytes 0..7,
//   of sc[8..15] in their high nibbles; the top 2 bits of sc[j] are bits
//   2 (j / 4) .. 2 (j / 4) + 1 of byte 8 + j % 4.
//   110 bytes / 256 = 3.4375 bits per weight.
struct Q3_KFormat {
  struct Block {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 110);
  static constexpr const char* kName = "q3_k";
  static constexpr uint32_t kGgufType = 11;  // GGML_TYPE_Q3_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.150 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.12, kRmseHi = 0.19;
  static constexpr const char* kDatasheet =
      "llama.cpp Q3_K: 16x16 sub-blocks, signed 6-bit scales, fp16 d, 3.4375 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q4_K: 8 sub-blocks of 32, asymmetric.
//   fp16 d; fp16 dmin; u8 scales[12]; u8 qs[128]
//   x = d * sc[j] * q - dmin * m[j], q in [0, 15], sc and m 6-bit.
//   scales[12] packs 8 (sc, m) pairs: for j < 4, sc = scales[j] & 63 and
//   m = scales[j+4] & 63; for j >= 4, sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4
//   and m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
//   qs: 64-weight chunk c uses qs[32c .. 32c+31]: low nibbles = weights
//   64c + l, high nibbles = weights 64c + 32 + l.
//   144 bytes / 256 = 4.5 bits per weight.
struct Q4_KFormat {
  struct Block {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 144);
  static constexpr const char* kName = "q4_k";
  static constexpr uint32_t kGgufType = 12;  // GGML_TYPE_Q4_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.0714 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.057, kRmseHi = 0.09;
  static constexpr const char* kDatasheet =
      "llama.cpp Q4_K: 8x32 sub-blocks, 6-bit scales+mins, fp16 d/dmin, 4.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q5_K: Q4_K plus a fifth bit per weight.
//   fp16 d; fp16 dmin; u8 scales[12] (as Q4_K); u8 qh[32]; u8 qs[128]
//   x = d * sc[j] * q - dmin * m[j], q in [0, 31].
//   q = nibble (qs, laid out as in Q4_K) + 16 * high bit; the high bit of
//   weight 64c + l (l < 32) is bit 2c of qh[l], of weight 64c + 32 + l bit 2c + 1.
//   176 bytes / 256 = 5.5 bits per weight.
struct Q5_KFormat {
  struct Block {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 176);
  static constexpr const char* kName = "q5_k";
  static constexpr uint32_t kGgufType = 13;  // GGML_TYPE_Q5_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.0361 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.029, kRmseHi = 0.045;
  static constexpr const char* kDatasheet =
      "llama.cpp Q5_K: 8x32 sub-blocks, 6-bit scales+mins, fp16 d/dmin, 5.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q6_K: 16 sub-blocks of 16, symmetric.
//   u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d
//   x = d * scales[j] * (q - 32), q in [0, 63].
//   Per 128-weight half h (ql + 64h, qh + 32h), for l < 32: ql[l] low/high
//   nibble = weights 128h + l / + 64 + l, ql[l + 32] low/high = + 32 + l /
//   + 96 + l; qh[l] bits 0-1, 2-3, 4-5, 6-7 = the top 2 bits of weights
//   + l, + 32 + l, + 64 + l, + 96 + l.
//   210 bytes / 256 = 6.5625 bits per weight.
struct Q6_KFormat {
  struct Block {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 210);
  static constexpr const char* kName = "q6_k";
  static constexpr uint32_t kGgufType = 14;  // GGML_TYPE_Q6_K
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.0177 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.014, kRmseHi = 0.022;
  static constexpr const char* kDatasheet = "llama.cpp Q6_K: 16x16 sub-blocks, int8 scales, fp16 d, 6.5625 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// IQ4_XS: 8 sub-blocks of 32, non-linear 4-bit codes (kIq4NlValues, iq4_table.h).
//   fp16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
//   x = d * (ls[j] - 32) * kIq4NlValues[q], ls 6-bit: low nibble of
//   scales_l[j / 2] (j even: low half, odd: high half), top 2 bits =
//   bits 2j .. 2j+1 of scales_h.
//   qs: sub-block j uses qs[16j .. 16j+15]: low nibbles = weights 32j + l,
//   high nibbles = weights 32j + 16 + l.
//   136 bytes / 256 = 4.25 bits per weight.
struct IQ4_XSFormat {
  struct Block {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 136);
  static constexpr const char* kName = "iq4_xs";
  static constexpr uint32_t kGgufType = 23;  // GGML_TYPE_IQ4_XS
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  // The scale searches re-derive scales from the dequantized values, which
  // rarely lands on the same codes (Q8_K: d = max/127 moves by an ulp).
  static constexpr bool kIdempotent = false;
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  // Measured 0.0767 (N(0,1) rows of 4096, 3 seeds); window about +-25%.
  static constexpr double kRmseLo = 0.061, kRmseHi = 0.095;
  static constexpr const char* kDatasheet =
      "llama.cpp IQ4_XS: 8x32 sub-blocks, 16-level non-linear codes, 6-bit scales, fp16 d, 4.25 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

}  // namespace lowbit
