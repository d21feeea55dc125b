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
#include "formats/round_util.h"

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

// Writes the 4-bit code c of element j (of 32) into the Q4_0-style nibbles:
// byte j % 16, low nibble for j < 16, high for j >= 16 (Q4_*, Q5_*, IQ4_NL).
inline void SetNibble32(uint8_t* qs, int j, int c) {
  uint8_t& byte = qs[j % 16];
  byte = j < 16 ? uint8_t((byte & 0xF0) | (c & 0x0F)) : uint8_t((byte & 0x0F) | ((c & 0x0F) << 4));
}

// RoundInPlace of a row of ggml blocks (format.h RoundInPlaceFn): element i
// gets the code c in codes(block, j, x) whose decoded value is nearest to x,
// j being i's index in its block. decoder(block, j) returns the element's
// decoder, c -> value, written as the dequantizer writes it so the returned
// value is bit for bit what dequantize gives; store(block, j, c) writes c.
// Every ggml code is monotone in its value (linear codes, and the ascending
// IQ4 table), so the search is round_util::NearestMonotoneCode.
struct CodeRange {
  int lo, hi;
};
// codes() for an element that may take any of [lo, hi].
struct AllCodes {
  int lo, hi;
  template <typename Block>
  CodeRange operator()(const Block&, int, float) const {
    return {lo, hi};
  }
};
template <typename Format, typename Codes, typename Decoder, typename Store>
float RoundElementInPlace(uint8_t* row, int64_t i, float x, Codes codes, Decoder decoder, Store store) {
  using Block = typename Format::Block;
  uint8_t* p = row + (i / Format::kBlockSize) * Format::kBlockBytes;
  Block block = LoadBlock<Block>(p);
  const int j = int(i % Format::kBlockSize);
  x = round_util::Target(x);
  const auto value = decoder(block, j);
  const CodeRange range = codes(block, j, x);
  const int c = round_util::NearestMonotoneCode(x, range.lo, range.hi, value);
  store(block, j, c);
  StoreBlock(block, p);
  return value(c);
}

// codes() of a linear code q * step in [lo, hi] (q the code minus its
// offset): the algebraic rounding of x / step and its two neighbours.
inline CodeRange AroundRounded(float x, float step, int offset, int lo, int hi) {
  const int guess = round_util::ClampedRound(x / step, lo - offset, hi - offset) + offset;
  return {std::max(lo, guess - 1), std::min(hi, guess + 1)};
}

}  // namespace lowbit::ggml_block
