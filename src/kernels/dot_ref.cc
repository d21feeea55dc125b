// Scalar reference dot products (see dot_ref.h).
#include "kernels/dot_ref.h"

namespace lowbit {

float DotF32Ref(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 8;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) lanes[l] += a[i] * b[i];
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

}  // namespace lowbit
