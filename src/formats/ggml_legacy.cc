// Reference codecs of llama.cpp's legacy block formats (see ggml_legacy.h).
// The quantizers repeat ggml-quants.c's float operations in the same order
// (quantize_row_*_ref without an importance vector, quantize_row_*_impl with
// one), because byte-equality with llama-quantize depends on every rounding.
#include "formats/ggml_legacy.h"

#include <algorithm>
#include <cmath>

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
float QuantizeInt8Block(const float* x, int8_t* qs) {
  const float d = SaturateScale(AbsMax(x, 32) / 127.0f);
  const float id = InverseOrZero(d);
  for (int j = 0; j < 32; ++j) qs[j] = static_cast<int8_t>(std::clamp(std::round(x[j] * id), -127.0f, 127.0f));
  return d;
}

// Packs 32 codes of 4 bits: byte j = code j | code (j+16) << 4.
void PackNibbles(const uint8_t* codes, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
}

// Per-column weights of llama.cpp's imatrix quantizers for one block:
// importance_j * sqrt(sigma2 + x_j^2).
void ImportanceWeights(const float* x, const float* importance, float sigma2, float* weight) {
  for (int j = 0; j < 32; ++j) weight[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
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
  CheckRowLength(kName, n, kBlockSize);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    const float sigma2 = importance ? ggml_block::MeanSquare(xr, n) : 0.0f;
    for (int64_t b = 0; b < n / kBlockSize; ++b) {
      const float* xb = xr + b * kBlockSize;
      uint8_t codes[32];
      float d;
      if (importance) {
        float weight[32];
        ImportanceWeights(xb, importance + b * kBlockSize, sigma2, weight);
        int8_t levels[32];  // in [0, 15]: q + 8
        d = SaturateScale(kquant::MakeQxQuants(32, 8, xb, levels, weight));
        for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(levels[j]);
      } else {
        d = SaturateScale(SignedAbsMax(xb, 32) / -8.0f);
        const float id = InverseOrZero(d);
        // trunc(v + 8.5) for v >= -8.5 is round-half-up of v + 8; 16 (the far
        // side of the block reaching +8) folds onto 15.
        for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(std::clamp(xb[j] * id + 8.5f, 0.0f, 15.0f));
      }
      Block block;
      block.d = ToF16(d);
      PackNibbles(codes, block.qs);
      StoreBlock(block, out + (r * n / kBlockSize + b) * kBlockBytes);
    }
  }
}

void Q4_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    float* y = out + b * kBlockSize;
    for (int j = 0; j < 16; ++j) {
      y[j] = float((block.qs[j] & 0x0F) - 8) * d;
      y[j + 16] = float((block.qs[j] >> 4) - 8) * d;
    }
  }
}

}  // namespace lowbit
