// Reference codecs of llama.cpp's legacy block formats (see ggml_legacy.h).
// The quantizers repeat ggml-quants.c's float operations in the same order
// (quantize_row_*_ref without an importance vector, quantize_row_*_impl with
// one), because byte-equality with llama-quantize depends on every rounding.
#include "formats/ggml_legacy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "formats/ggml_block_util.h"
#include "formats/ggml_kquants_search.h"

namespace lowbit {

using ggml_block::CheckRowLength;
using ggml_block::FromF16;
using ggml_block::InverseOrZero;
using ggml_block::LoadBlock;
using ggml_block::SaturateScale;
using ggml_block::StoreBlock;
using ggml_block::ToF16;

namespace {

// Signed value of largest magnitude in x[0..n); the first one on ties. The
// legacy symmetric formats put it exactly on their most negative code.
float SignedAbsMax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

float AbsMax(const float* x, int n) {
  float amax = 0.0f;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

// Q8_0 and Q8_1 codes: d = amax/127, q = round-half-away(x/d). Returns d.
// The clamp only acts when SaturateScale did (blocks beyond the f16 range).
// A NaN element gets code 0 (what llama.cpp's float-to-int8 conversion of
// NaN gives on x86; the conversion itself would be undefined behaviour).
float QuantizeInt8Block(const float* x, int8_t* qs) {
  const float d = SaturateScale(AbsMax(x, 32) / 127.0f);
  const float id = InverseOrZero(d);
  for (int j = 0; j < 32; ++j) {
    const float r = std::round(x[j] * id);
    qs[j] = std::isnan(r) ? int8_t(0) : static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return d;
}

// Packs the low 4 bits of 32 codes: byte j = code j | code (j+16) << 4.
void PackNibbles(const uint8_t* codes, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4));
}

// Bit 4 of code e goes to bit e of a little-endian uint32 (Q5_0/Q5_1 qh).
void PackHighBits(const uint8_t* codes, uint8_t* qh) {
  uint32_t bits = 0;
  for (int e = 0; e < 32; ++e) bits |= uint32_t((codes[e] >> 4) & 1) << e;
  for (int i = 0; i < 4; ++i) qh[i] = static_cast<uint8_t>(bits >> (8 * i));
}

// Unpacks 32 codes: low nibbles from qs, bit 4 from qh when given.
void UnpackCodes(const uint8_t* qs, const uint8_t* qh, int* codes) {
  uint32_t bits = 0;
  if (qh != nullptr) bits = uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
  for (int j = 0; j < 16; ++j) {
    codes[j] = (qs[j] & 0x0F) | int((bits >> j) & 1) << 4;
    codes[j + 16] = (qs[j] >> 4) | int((bits >> (j + 16)) & 1) << 4;
  }
}

// Writes code c of element j into a block's nibbles (and bit 4 into qh when
// given): the inverse of UnpackCodes for one element.
void SetCode(uint8_t* qs, uint8_t* qh, int j, int c) {
  ggml_block::SetNibble32(qs, j, c);
  if (qh != nullptr) {
    const uint8_t bit = uint8_t(1u << (j % 8));
    qh[j / 8] = (c & 0x10) ? uint8_t(qh[j / 8] | bit) : uint8_t(qh[j / 8] & ~bit);
  }
}

// Per-column weights of llama.cpp's imatrix quantizers for one block:
// importance_j * sqrt(sigma2 + x_j^2), sigma2 = mean(x^2) over the row.
void ImportanceWeights(const float* x, const float* importance, float sigma2, float* weight) {
  for (int j = 0; j < 32; ++j) weight[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// Q4_0 (nmax 8) and Q5_0 (nmax 16): x ~ d * (code - nmax), codes in
// [0, 2 nmax - 1]. Returns d. Without weights, llama.cpp's reference: the
// signed extreme m lands exactly on code 0 (d = m / -nmax) and the rest round
// half up, trunc(x/d + nmax + 0.5); the far side's +nmax folds onto the top
// code. With weights: make_qx_quants' search over 19 scales.
float QuantizeSymmetricBlock(const float* x, const float* weight, int nmax, uint8_t* codes) {
  if (weight != nullptr) {
    int8_t levels[32];
    const float d = kquant::MakeQxQuants(32, nmax, x, levels, weight);
    for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(levels[j]);
    return SaturateScale(d);
  }
  const float d = SaturateScale(SignedAbsMax(x, 32) / float(-nmax));
  const float id = InverseOrZero(d);
  const float top = float(2 * nmax - 1), offset = float(nmax) + 0.5f;
  for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(std::clamp(x[j] * id + offset, 0.0f, top));
  return d;
}

// Q4_1 (nmax 15) and Q5_1 (nmax 31): x ~ d * code + m, codes in [0, nmax].
// Returns d and sets m. Without weights, llama.cpp's reference: m = min,
// d = (max - min) / nmax, codes round half up. With weights:
// make_qkx3_quants' sweep of 37 inverse scales with a least-squares (d, m)
// for each (llama.cpp's rmin -0.9, rdelta 0.05, 36 steps).
float QuantizeAsymmetricBlock(const float* x, const float* weight, int nmax, uint8_t* codes, float* m) {
  if (weight != nullptr) {
    float neg_min;
    uint8_t scratch[32];
    const float d = kquant::MakeQkxQuants(32, nmax, x, weight, codes, &neg_min, scratch, -0.9f, 0.05f, 36, false);
    *m = SaturateScale(-neg_min);
    return SaturateScale(d);
  }
  float min = std::numeric_limits<float>::max(), max = -std::numeric_limits<float>::max();
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  min = SaturateScale(min);
  const float d = SaturateScale((max - min) / float(nmax));
  const float id = InverseOrZero(d);
  for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(std::clamp((x[j] - min) * id + 0.5f, 0.0f, float(nmax)));
  *m = min;
  return d;
}

// Row driver of the four weight formats above: sigma2 (for importance
// weights) is per row, as in llama.cpp; encode(xb, weight or null, block).
template <typename Format, typename EncodeBlock>
void QuantizeLegacyRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance,
                        EncodeBlock encode) {
  CheckRowLength(Format::kName, n, Format::kBlockSize);
  const int64_t blocks_per_row = n / Format::kBlockSize;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    const float sigma2 = importance ? ggml_block::MeanSquare(xr, n) : 0.0f;
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      const float* xb = xr + b * Format::kBlockSize;
      float weight[32];
      if (importance) ImportanceWeights(xb, importance + b * Format::kBlockSize, sigma2, weight);
      typename Format::Block block;
      encode(xb, importance ? weight : nullptr, block);
      StoreBlock(block, out + (r * blocks_per_row + b) * Format::kBlockBytes);
    }
  }
}

}  // namespace

// ---- Q8_0 -------------------------------------------------------------------

void Q8_0Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
  CheckRowLength(kName, n, kBlockSize);
  for (int64_t b = 0; b < rows * n / kBlockSize; ++b) {
    Block block;
    block.d = ToF16(QuantizeInt8Block(x + b * kBlockSize, block.qs));
    StoreBlock(block, out + b * kBlockBytes);
  }
}

void Q8_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(block.qs[j]) * d;
  }
}

// Codes [-127, 127] as the quantizer writes them (-128 never).
float Q8_0Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q8_0Format>(
      row, i, x,
      [](const Block& block, int, float y) { return ggml_block::AroundRounded(y, FromF16(block.d), 0, -127, 127); },
      [](const Block& block, int) {
        const float d = FromF16(block.d);
        return [d](int c) { return float(c) * d; };
      },
      [](Block& block, int j, int c) { block.qs[j] = static_cast<int8_t>(c); });
}

// ---- Q8_1 -------------------------------------------------------------------

void Q8_1Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
  CheckRowLength(kName, n, kBlockSize);
  for (int64_t b = 0; b < rows * n / kBlockSize; ++b) {
    Block block;
    const float d = QuantizeInt8Block(x + b * kBlockSize, block.qs);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += block.qs[j];
    block.d = ToF16(d);
    block.s = ToF16(float(sum) * d);
    StoreBlock(block, out + b * kBlockBytes);
  }
}

void Q8_1Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(block.qs[j]) * d;
  }
}

// ---- Q4_0 -------------------------------------------------------------------

void Q4_0Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeLegacyRows<Q4_0Format>(x, rows, n, out, importance, [](const float* xb, const float* weight, Block& block) {
    uint8_t codes[32];
    block.d = ToF16(QuantizeSymmetricBlock(xb, weight, 8, codes));
    PackNibbles(codes, block.qs);
  });
}

void Q4_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    int codes[32];
    UnpackCodes(block.qs, nullptr, codes);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(codes[j] - 8) * d;
  }
}

float Q4_0Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q4_0Format>(
      row, i, x, ggml_block::AllCodes{0, 15},
      [](const Block& block, int) {
        const float d = FromF16(block.d);
        return [d](int c) { return float(c - 8) * d; };
      },
      [](Block& block, int j, int c) { SetCode(block.qs, nullptr, j, c); });
}

// ---- Q4_1 -------------------------------------------------------------------

void Q4_1Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeLegacyRows<Q4_1Format>(x, rows, n, out, importance, [](const float* xb, const float* weight, Block& block) {
    uint8_t codes[32];
    float m;
    block.d = ToF16(QuantizeAsymmetricBlock(xb, weight, 15, codes, &m));
    block.m = ToF16(m);
    PackNibbles(codes, block.qs);
  });
}

void Q4_1Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d), m = FromF16(block.m);
    int codes[32];
    UnpackCodes(block.qs, nullptr, codes);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(codes[j]) * d + m;
  }
}

float Q4_1Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q4_1Format>(
      row, i, x, ggml_block::AllCodes{0, 15},
      [](const Block& block, int) {
        const float d = FromF16(block.d), m = FromF16(block.m);
        return [d, m](int c) { return float(c) * d + m; };
      },
      [](Block& block, int j, int c) { SetCode(block.qs, nullptr, j, c); });
}

// ---- Q5_0 -------------------------------------------------------------------

void Q5_0Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeLegacyRows<Q5_0Format>(x, rows, n, out, importance, [](const float* xb, const float* weight, Block& block) {
    uint8_t codes[32];
    block.d = ToF16(QuantizeSymmetricBlock(xb, weight, 16, codes));
    PackHighBits(codes, block.qh);
    PackNibbles(codes, block.qs);
  });
}

void Q5_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    int codes[32];
    UnpackCodes(block.qs, block.qh, codes);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(codes[j] - 16) * d;
  }
}

float Q5_0Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q5_0Format>(
      row, i, x, ggml_block::AllCodes{0, 31},
      [](const Block& block, int) {
        const float d = FromF16(block.d);
        return [d](int c) { return float(c - 16) * d; };
      },
      [](Block& block, int j, int c) { SetCode(block.qs, block.qh, j, c); });
}

// ---- Q5_1 -------------------------------------------------------------------

void Q5_1Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  QuantizeLegacyRows<Q5_1Format>(x, rows, n, out, importance, [](const float* xb, const float* weight, Block& block) {
    uint8_t codes[32];
    float m;
    block.d = ToF16(QuantizeAsymmetricBlock(xb, weight, 31, codes, &m));
    block.m = ToF16(m);
    PackHighBits(codes, block.qh);
    PackNibbles(codes, block.qs);
  });
}

void Q5_1Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d), m = FromF16(block.m);
    int codes[32];
    UnpackCodes(block.qs, block.qh, codes);
    for (int j = 0; j < 32; ++j) out[b * kBlockSize + j] = float(codes[j]) * d + m;
  }
}

float Q5_1Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<Q5_1Format>(
      row, i, x, ggml_block::AllCodes{0, 31},
      [](const Block& block, int) {
        const float d = FromF16(block.d), m = FromF16(block.m);
        return [d, m](int c) { return float(c) * d + m; };
      },
      [](Block& block, int j, int c) { SetCode(block.qs, block.qh, j, c); });
}

}  // namespace lowbit
