// llama.cpp's "legacy" 32-weight block formats: Q8_0, Q8_1, Q4_0, Q4_1, Q5_0,
// Q5_1. Bit-exact ggml layouts; the reference quantizers follow ggml-quants.c
// step for step, so without an importance vector our bytes equal
// llama-quantize's, and with one they follow its imatrix-weighted searches.
// Codecs are in ggml_legacy.cc. Full datasheets: docs/FORMATS.md.
#pragma once

#include <cstdint>

namespace lowbit {

// Q8_0 (ggml type 8). 32 weights in 34 bytes = 8.5 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-33  qs[32] int8 codes, element j in byte 2 + j
// x = d * q, q in [-127, 127] (-128 is never written). Quantizer: d =
// max|x| / 127, q = round-half-away(x / d). Also the activation format of
// Q4_0, Q5_0, Q8_0 and IQ4_NL dot products.
struct Q8_0Format {
  struct Block {
    uint16_t d;
    int8_t qs[32];
  };
  static_assert(sizeof(Block) == 34);
  static constexpr const char* kName = "q8_0";
  static constexpr uint32_t kGgufType = 8;  // GGML_TYPE_Q8_0
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 34;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_0Format;
  // Measured 0.00534 on N(0,1) rows of 4096: step amax/127 ~ 0.018 for the
  // ~2.3 sigma max of 32 normals, uniform rounding error step/sqrt(12).
  static constexpr double kRmseLo = 0.0042, kRmseHi = 0.0066;
  static constexpr const char* kDatasheet = "ggml Q8_0: 32 x int8 + f16 scale, x = d*q, 8.5 bits/weight";
  // The importance vector is ignored, as in llama.cpp: round-to-nearest at
  // absmax is already the weighted optimum for nearly every block at 8 bits.
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q8_1 (ggml type 9), activation-only. 32 weights in 36 bytes = 9 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-3   s      f16 of d * sum(q): lets Q4_1/Q5_1 dots add their min
//                      term without summing the activations again
//   bytes 4-35  qs[32] int8 codes
// x = d * q. Quantizer as Q8_0.
struct Q8_1Format {
  struct Block {
    uint16_t d;
    uint16_t s;
    int8_t qs[32];
  };
  static_assert(sizeof(Block) == 36);
  static constexpr const char* kName = "q8_1";
  static constexpr uint32_t kGgufType = 9;  // GGML_TYPE_Q8_1
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = false;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 36;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_1Format;
  // s is rounded from the f32 scale, so re-quantizing the decoded block (whose
  // scale is f16(d) exactly) can move s by one f16 ulp; d and qs do not move.
  static constexpr bool kIdempotent = false;
  static constexpr double kRmseLo = 0.0042, kRmseHi = 0.0066;  // same codes as Q8_0
  static constexpr const char* kDatasheet =
      "ggml Q8_1 (activations): 32 x int8 + f16 scale + f16 d*sum(q), 9 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
};

// Q4_0 (ggml type 2). 32 weights in 18 bytes = 4.5 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-17  qs[16] byte j: low nibble = element j, high nibble = element j+16
// x = d * (q - 8), q in [0, 15]. Quantizer (reference): d = m / -8 where m is
// the signed value of largest magnitude, so m itself is exactly code 0 and the
// other side reaches +7 d; q = min(15, trunc(x/d + 8.5)). With an importance
// vector: llama.cpp's make_qx_quants search over 19 scales, weights
// imatrix_j * sqrt(mean(x^2 over the row) + x_j^2).
struct Q4_0Format {
  struct Block {
    uint16_t d;
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 18);
  static constexpr const char* kName = "q4_0";
  static constexpr uint32_t kGgufType = 2;  // GGML_TYPE_Q4_0
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 18;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_0Format;
  static constexpr double kRmseLo = 0.070, kRmseHi = 0.105;  // measured 0.0857
  static constexpr const char* kDatasheet = "ggml Q4_0: 32 x 4-bit + f16 scale, x = d*(q-8), 4.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q4_1 (ggml type 3). 32 weights in 20 bytes = 5 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-3   m      f16 offset (the block minimum)
//   bytes 4-19  qs[16] nibbles, packed as Q4_0
// x = d * q + m, q in [0, 15]. Quantizer (reference): m = min, d = (max -
// min) / 15, q = min(15, trunc((x - m)/d + 0.5)). With an importance vector:
// make_qkx3_quants (37 candidate scales, weighted least squares for d and m,
// the offset clamped to <= 0), weights as Q4_0.
struct Q4_1Format {
  struct Block {
    uint16_t d;
    uint16_t m;
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 20);
  static constexpr const char* kName = "q4_1";
  static constexpr uint32_t kGgufType = 3;  // GGML_TYPE_Q4_1
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 20;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_1Format;
  static constexpr double kRmseLo = 0.064, kRmseHi = 0.094;  // measured 0.0780
  static constexpr const char* kDatasheet = "ggml Q4_1: 32 x 4-bit + f16 scale + f16 min, x = d*q+m, 5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q5_0 (ggml type 6). 32 weights in 22 bytes = 5.5 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-5   qh     little-endian uint32: bit e = bit 4 of element e's code
//   bytes 6-21  qs[16] low nibbles, packed as Q4_0
// x = d * (q - 16), q in [0, 31]. Quantizer (reference): d = m / -16 with m
// the signed value of largest magnitude, q = min(31, trunc(x/d + 16.5)). With
// an importance vector: make_qx_quants as Q4_0.
struct Q5_0Format {
  struct Block {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 22);
  static constexpr const char* kName = "q5_0";
  static constexpr uint32_t kGgufType = 6;  // GGML_TYPE_Q5_0
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 22;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_0Format;
  static constexpr double kRmseLo = 0.035, kRmseHi = 0.051;  // measured 0.0424
  static constexpr const char* kDatasheet = "ggml Q5_0: 32 x 5-bit + f16 scale, x = d*(q-16), 5.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

// Q5_1 (ggml type 7). 32 weights in 24 bytes = 6 bits/weight.
//   bytes 0-1   d      f16 scale
//   bytes 2-3   m      f16 offset (the block minimum)
//   bytes 4-7   qh     little-endian uint32: bit e = bit 4 of element e's code
//   bytes 8-23  qs[16] low nibbles, packed as Q4_0
// x = d * q + m, q in [0, 31]. Quantizer (reference): m = min, d = (max -
// min) / 31, q = trunc((x - m)/d + 0.5). With an importance vector:
// make_qkx3_quants as Q4_1.
struct Q5_1Format {
  struct Block {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 24);
  static constexpr const char* kName = "q5_1";
  static constexpr uint32_t kGgufType = 7;  // GGML_TYPE_Q5_1
  static constexpr bool kGgmlNative = true;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = 32;
  static constexpr int kBlockBytes = 24;
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_1Format;
  static constexpr double kRmseLo = 0.031, kRmseHi = 0.045;  // measured 0.0377
  static constexpr const char* kDatasheet = "ggml Q5_1: 32 x 5-bit + f16 scale + f16 min, x = d*q+m, 6 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn).
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x);
};

}  // namespace lowbit
