// Scalar references of the W8A8 building blocks (w8a8.h): the activation
// quantizer and the int8 x int8 -> int32 dot, written plainly.
// GCC 12 with AVX512-VNNI vectorizes integer dot loops of offset u8 codes
// into vpdpbusd as if the weight term were unsigned (see kernels/CMakeLists.txt
// on quant_dot_ref.cc); tree vectorization is off for this file too, so the
// reference stays a reference.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-vectorize")
#endif

#include <cmath>
#include <cstdint>

#include "kernels/w8a8.h"

namespace lowbit {

void QuantizeActInt8Ref(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s) {
  for (int64_t t = 0; t < rows; ++t) {
    const float* xr = x + t * in;
    float scale = static_scale;
    if (static_scale < 0.0f) {  // dynamic
      float amax = 0.0f;
      for (int64_t c = 0; c < in; ++c) amax = std::fabs(xr[c]) > amax ? std::fabs(xr[c]) : amax;
      scale = amax / 127.0f;
    }
    float inv = 0.0f;
    if (scale != 0.0f) {
      inv = 1.0f / scale;
      if (!std::isfinite(inv)) inv = 0.0f;
    }
    for (int64_t c = 0; c < in; ++c) {
      float v = std::nearbyint(xr[c] * inv);
      v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
      q[t * in + c] = v == v ? int8_t(v) : int8_t(0);
    }
    s[t] = scale;
  }
}

void DotInt8Ref(const uint8_t* w_codes, int64_t w_stride, int64_t rows, const int8_t* q, int64_t n, int64_t in,
                int32_t* acc) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* w = w_codes + r * w_stride;
      int32_t sum = 0;
      for (int64_t c = 0; c < in; ++c) sum += (int32_t(w[c]) - 128) * int32_t(q[t * in + c]);
      acc[t * rows + r] = sum;
    }
  }
}

}  // namespace lowbit
