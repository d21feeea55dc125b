// Scalar reference dot products: the `*_ref` every SIMD kernel is tested
// against (principle 4). Written plainly, in a fixed summation order.
#pragma once

#include <cstdint>

namespace lowbit {

// sum_i a[i] * b[i] in eight interleaved partial sums (element i goes to
// partial i % 8, leftovers continue from partial 0), partials added 0..7.
// Same order as runtime's DotRef, so the generic MatMul path matches
// MatMulRef bit for bit.
float DotF32Ref(const float* a, const float* b, int64_t n);

}  // namespace lowbit
