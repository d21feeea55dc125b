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
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  static constexpr double kRmseLo = 0.0035, kRmseHi = 0.0065;
  static constexpr const char* kDatasheet =
      "K-quant activations: f32 d + 256 x int8 + 16 x int16 block sums, 9.125 bits/value";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
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
  static constexpr int kBlockSize = 256;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kRowHeaderBytes = 0;
  using Activation = Q8_KFormat;
  static constexpr double kRmseLo = 0.07, kRmseHi = 0.12;
  static constexpr const char* kDatasheet =
      "llama.cpp Q4_K: 8x32 sub-blocks, 6-bit scales+mins, fp16 d/dmin, 4.5 bits/weight";
  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
  static void DequantizeRow(const uint8_t* row, float* out, int64_t n);
};

}  // namespace lowbit
