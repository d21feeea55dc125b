// Internal: the SIMD families MatMul tries in turn. Each returns false when it
// has no kernel for w.type (and then touches nothing).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace lowbit {

// F32 / F16 / BF16 weights x f32 activations (gemm_float.cc).
bool MatMulFloat(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool);
bool HasMatMulFloat(DType type);

// ggml block formats x activations quantized on the fly (gemm_quant.cc).
bool MatMulQuant(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool);
bool HasMatMulQuant(DType type);
// Test hook: the integer block sums the current SIMD target computes for one
// weight row `w` of `type` against one activation row `a`, n elements, in the
// layout of the BlockSums*Ref functions (two int32 per block). False when
// `type` has no quantized kernel.
bool QuantBlockSums(DType type, const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out);

// Quantizes rows x n activations to `act` with a SIMD quantizer whose bytes
// equal the reference's (quantize_act.cc); false when `act` has none.
bool QuantizeActivations(DType act, const float* x, int64_t rows, int64_t n, uint8_t* out);
// One row of n activations to `act` (Q8_0 or Q8_K), the same numbers as
// QuantizeActivations' blocks split into arrays (packed.h's
// PackedActivations): codes (n), scale (blocks; f16-rounded for Q8_0), and
// sums: Q8_0 factor x each block's code sum; Q8_K 4 i32 per block, the sums
// of sub-blocks (2p, 2p + 1) of 32 as (low 16 bits, high 16 bits).
void QuantizeActivationsSplit(DType act, const float* x, int64_t n, int8_t* codes, float* scale, int32_t* sums,
                              int32_t factor);

// Output rows per tile of the register-blocked kernels; MatMul splits work
// over threads in whole tiles so every tile but the last is full.
inline constexpr int64_t kRowTile = 4;
// Activation bytes per token chunk of the GEMM loops: a quarter of Zen 4's
// 1 MiB L2, so a chunk stays cached while every weight row tile passes by.
inline constexpr int64_t kChunkBytes = 256 << 10;

}  // namespace lowbit
