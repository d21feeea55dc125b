// Small pieces shared by lowbit's own scaled formats (int_formats.h,
// bnb_formats.h, log_formats.h, fp8_formats.h): unaligned little-endian
// loads/stores, scale rounding, dense bit packing of b-bit codes, and the
// nearest-entry search in a sorted code book. These formats' quantizers are
// plain round-to-nearest and ignore the importance weights; choosing values
// with importance (clipping, GPTQ, AWQ) is a method's job in quant/.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.h"

namespace lowbit::quant {

inline float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void StoreF32(uint8_t* p, float v) { std::memcpy(p, &v, 4); }
inline int32_t LoadI32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void StoreI32(uint8_t* p, int32_t v) { std::memcpy(p, &v, 4); }
inline float LoadF16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}
inline void StoreF16(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  std::memcpy(p, &h, 2);
}

// Scale rounding. Stored scales are rounded toward zero, never up: then the
// element that set the scale lands on (or is clipped to) the largest code, so
// quantize(dequantize(q)) recomputes the very same scale and codes
// (idempotence, tested for every format). The cost is a clip of at most one
// ulp of the scale on the largest element.
//
// f16 scales: the largest f16 not above s, clamped to 65504; 0 for s <= 0,
// NaN or an underflow below 2^-24.
inline float RoundScaleToF16Down(float s) {
  if (!(s > 0.0f)) return 0.0f;
  if (s >= 65504.0f) return 65504.0f;
  uint16_t h = F32ToF16(s);
  if (F16ToF32(h) > s) --h;  // positive, finite: the next lower code is the next lower value
  return F16ToF32(h);
}

// f32 scales keep 16 significant bits (the low 8 mantissa bits cleared):
// relative precision 2^-16, far below any code step here, and scale * code is
// then exact in f32 for every code of up to 8 significant bits (INT levels
// <= 255, FP8 values), which makes re-quantization reproduce scale and codes.
inline float RoundScaleToF32Bits16Down(float s) {
  if (!(s > 0.0f) || !std::isfinite(s)) return 0.0f;
  return std::bit_cast<float>(std::bit_cast<uint32_t>(s) & ~0xFFu);
}

// Dense little-endian bit stream: code i occupies bits [i*bits, (i+1)*bits)
// counting from bit 0 of byte 0. For 4 bits: element 2j in the low nibble of
// byte j; for 3 bits: 8 codes in 3 bytes; for 2 bits: 4 codes per byte.
template <int kBits>
void PackCodes(const uint8_t* codes, int64_t count, uint8_t* out) {
  static_assert(kBits >= 1 && kBits <= 8);
  if constexpr (kBits == 8) {
    std::memcpy(out, codes, size_t(count));
  } else {
    std::memset(out, 0, size_t((count * kBits + 7) / 8));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t bit = i * kBits;
      const uint32_t v = uint32_t(codes[i] & ((1u << kBits) - 1)) << (bit % 8);
      out[bit / 8] |= uint8_t(v);
      if ((bit % 8) + kBits > 8) out[bit / 8 + 1] |= uint8_t(v >> 8);
    }
  }
}

template <int kBits>
void UnpackCodes(const uint8_t* in, int64_t count, uint8_t* codes) {
  static_assert(kBits >= 1 && kBits <= 8);
  if constexpr (kBits == 8) {
    std::memcpy(codes, in, size_t(count));
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const int64_t bit = i * kBits;
      uint32_t v = in[bit / 8];
      if ((bit % 8) + kBits > 8) v |= uint32_t(in[bit / 8 + 1]) << 8;
      codes[i] = uint8_t((v >> (bit % 8)) & ((1u << kBits) - 1));
    }
  }
}

// Overwrites code i of a PackCodes stream, leaving the other codes' bits.
template <int kBits>
void SetCode(uint8_t* stream, int64_t i, uint8_t code) {
  static_assert(kBits >= 1 && kBits <= 8);
  constexpr uint32_t kMask = (1u << kBits) - 1;
  const int64_t bit = i * kBits;
  const int shift = int(bit % 8);
  const uint32_t old = stream[bit / 8] | (shift + kBits > 8 ? uint32_t(stream[bit / 8 + 1]) << 8 : 0u);
  const uint32_t v = (old & ~(kMask << shift)) | (uint32_t(code & kMask) << shift);
  stream[bit / 8] = uint8_t(v);
  if (shift + kBits > 8) stream[bit / 8 + 1] = uint8_t(v >> 8);
}

// Index of the entry of `sorted` (ascending, `count` entries) nearest to y.
// Decision points are the midpoints of neighbours computed in f32, and a tie
// goes to the lower entry: bitsandbytes' `x > threshold` decision trees.
inline int NearestIndex(const float* sorted, int count, float y) {
  int lo = 0, hi = count - 1;  // binary search on midpoints
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (y > (sorted[mid] + sorted[mid + 1]) * 0.5f) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace lowbit::quant
