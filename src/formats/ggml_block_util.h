// Helpers shared by the reference codecs of llama.cpp's 32- and 256-weight
// block formats (ggml_legacy.cc, ggml_nl_ternary.cc): block load/store,
// f16 scales that cannot overflow, and llama.cpp's rounding rules. Only the
// codec .cc files include this; they are compiled with -ffp-contract=off
// (see formats/CMakeLists.txt) because llama-quantize's bytes depend on every
// float rounding and ggml's reference code is built without FMA contraction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "core/half.h"

namespace lowbit::ggml_block {

// Largest finite binary16 value.
inline constexpr float kF16Max = 65504.0f;

// Block scales are stored as f16. llama.cpp writes inf when a block's scale
// exceeds the f16 range (|x| beyond ~65504 * qmax), which decodes to inf/NaN;
// we saturate instead, so decoding always stays finite. Identity for every
// scale llama.cpp can store, so byte-equality with llama-quantize holds.
inline float SaturateScale(float d) { return std::clamp(d, -kF16Max, kF16Max); }

// 1/d, or 0 when d is 0 or so small (a float subnormal) that 1/d overflows:
// all its codes then decode through a zero f16 scale anyway.
inline float InverseOrZero(float d) {
  if (d == 0.0f) return 0.0f;
  const float id = 1.0f / d;
  return std::isfinite(id) ? id : 0.0f;
}

inline uint16_t ToF16(float v) { return F32ToF16(v); }
inline float FromF16(uint16_t h) { return F16ToF32(h); }

// Blocks are read and written with memcpy: rows inside a GGUF file or a
// caller's buffer need not be aligned for the block struct.
template <typename Block>
Block LoadBlock(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}
template <typename Block>
void StoreBlock(const Block& b, uint8_t* p) {
  std::memcpy(p, &b, sizeof(Block));
}

// Rows of a block format hold whole blocks; anything else is a user error
// (e.g. a 172-wide tensor asked to become q4_0).
inline void CheckRowLength(std::string_view format, int64_t n, int block_size) {
  if (n <= 0 || n % block_size != 0)
    Fail("{}: row length {} is not a positive multiple of the block size {}", format, n, block_size);
}

// sum of x^2 / n over a span, accumulated in float in index order as ggml
// does (llama.cpp's sigma^2 for imatrix weights).
inline float MeanSquare(const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum / static_cast<float>(n);
}

}  // namespace lowbit::ggml_block
