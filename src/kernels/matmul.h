// The one matrix-multiply entry point the runtime calls, for weights of any
// format in formats/all_formats.h:
//   y (n, out) = x (n, in) @ W^T,   W (out, in) in format w.type.
// Fast paths (Highway, dispatched once per call to the best SIMD target the
// CPU has): F32/F16/BF16 weights against f32 activations, and ggml block
// formats against activations quantized on the fly to the weight format's
// activation format (FormatInfo::activation), with integer block dots.
// Every other format, and every format when `reference` is set, takes the
// generic path: dequantize each weight row with the format's reference codec
// and take f32 dots in the fixed order of DotF32Ref (bit-identical to
// runtime's MatMulRef).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace lowbit {

// w: (out, in); x: (n, in) row-major f32; y: (n, out) row-major f32.
// Output rows are split statically over the pool, so results are
// deterministic for a given thread count (and, for the integer paths, for any
// thread count).
void MatMul(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool, bool reference);

// The generic path alone (the `reference` path of MatMul).
void MatMulDequantRef(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool);

// True when MatMul has a SIMD kernel for weights of this type.
bool HasFastMatMul(DType type);

// The SIMD targets the kernels were compiled for that this CPU supports, best
// first, as Highway target bits with their names. Tests and benchmarks pin
// each in turn with hwy::SetSupportedTargetsForTest.
struct KernelTarget {
  int64_t bits;
  std::string name;
};
std::vector<KernelTarget> KernelTargets();

}  // namespace lowbit
