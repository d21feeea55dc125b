// The one matrix-multiply entry point the runtime calls, for weights of any
// format in formats/all_formats.h:
//   y (n, out) = x (n, in) @ W^T,   W (out, in) in format w.type.
// Fast paths (Highway, dispatched once per call to the best SIMD target the
// CPU has):
//   f32, f16, bf16 weights x f32 activations      gemm_float.cc (every target)
//   q4_0 q8_0 q5_0 iq4_nl x q8_0, q4_1 q5_1 x q8_1,
//   q4_k q5_k q6_k q3_k q2_k iq4_xs tq1_0 tq2_0 x q8_k
//                                                 gemm_quant.cc: integer block
//     dots with AVX512-VNNI (AVX3_DL) or AVX2 maddubs (AVX2, AVX3); the
//     scalar references (quant_dot_ref.h) on older targets.
// The activations are quantized on the fly to the weight format's activation
// format (FormatInfo::activation) with its reference quantizer.
// Every other format (lowbit's INT, NF4/FP4, FP8, log4) is decoded in panels
// of 256 weight rows with the format's codec, each panel multiplied by the
// f32 GEMM above. When `reference` is set, every format takes the generic
// path: dequantize each weight row with the format's reference codec and take
// f32 dots in the fixed order of DotF32Ref.
// W8A8 / LLM.int8() products (int8 weights x activations quantized to int8)
// have their own entry point, kernels/w8a8.h, which the runtime picks from the
// file's activation metadata.
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
