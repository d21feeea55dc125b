// The two scalar hot spots of single-token generation outside the matmuls,
// each a Highway kernel beside its scalar reference (principle 4):
//
// AttendHead: causal attention of one query head over `len` cached positions.
//   q (head_dim); keys, values: position p's head vector at keys + p * stride
//   and values + p * stride (head_dim floats each; stride = floats between
//   positions, n_kv_heads * head_dim in the KV cache); scores (len) scratch
//   that holds the softmax probabilities on return; out (head_dim).
//     scores[p] = (q . keys[p]) * scale          p in [0, len)
//     scores    = softmax(scores)
//     out[i]    = sum_p scores[p] * values[p][i]  i in [0, head_dim)
//   len >= 1, head_dim >= 1 (any size: 7 and 48 as well as 64 and 128).
//
// AttendGroup: AttendHead for n_q query heads that share one KV head
//   (grouped-query attention: TinyLlama's 32 query heads over 4 KV heads are
//   groups of 8). Head j's query at q + j * q_stride, its output at
//   out + j * out_stride (head_dim floats each), its probabilities at
//   scores + j * len on return (scores: (n_q, len) scratch). n_q >= 1.
//   Each key and value row comes from memory once per group (at most 16
//   heads; a larger group reads them once per 16), not once per head: at
//   long contexts that traffic bounds attention.
//
// SwiGluInPlace: the SwiGLU gate of the MLP, h (n) *= silu(gate (n)),
//   silu(x) = x / (1 + exp(-x)): 0 (-0) for very negative x, x for very
//   positive x, NaN for NaN and for x = -inf (as -inf / inf).
//
// The *Ref functions are bit for bit the runtime's scalar loops from before
// these kernels (runtime/block.cc's attention, softmax and SwiGLU, with
// runtime/ops.cc's Silu). The SIMD versions
// sum in other orders and use hn::Exp (1 ulp), so they agree with the
// references not bit for bit but within the bounds attention_test derives and
// asserts on every target (u = 2^-24, s_p the scaled scores, p_p the
// probabilities, v_p the value rows):
//   SwiGluInPlace: |simd - ref| <= 10 u |ref| + |h x| 2^-127 + 2^-148 (the
//     second term where exp(-x) overflows in one version and not the other);
//   AttendHead:    |scores| error <= 2 eps_p p_p + FLT_MIN,
//                  |out[i]| error <= 2 sum_p p_p |v_p[i]| (eps_p + (2 len + 4) u)
//                                    + len (1 + max |v|) FLT_MIN, where
//     eps_p = 2 max_k d_k + (8 + 2 |s_p - max s|) u + (2 len + 6) u
//             + sum_k p_k (8 + 2 |s_k - max s|) u,
//     d_k   = (hd/8 + hd + 16) u |scale| sum_i |q_i k_k[i]| + 2 u |s_k|
//   (a first-order analysis, doubled; the errors seen are at most ~5% of it).
// Non-finite scores (NaN or inf in q, keys or the scaled dot) make AttendHead
// fall back to SoftmaxRef, so they give what the reference gives.
// AttendGroupRef is AttendHeadRef per head, bit for bit. AttendGroup does
// for each head AttendHead's operations in AttendHead's order (interleaved
// across heads only), so it has AttendHead's bounds and non-finite fallback,
// and where hn::MulAdd is one fused instruction (AVX2, AVX-512: what every
// x86 CPU since Haswell dispatches to) it is AttendHead per head bit for
// bit. On SSE4 and the scalar target Highway writes MulAdd as a product and
// a sum, which GCC (-ffp-contract=fast, with FMA in -march=native) fuses or
// not depending on the code around it, so there the two may differ in the
// last bits, within the bounds.
// attention_test asserts the bounds on every target and the bit equality on
// the fused ones.
#pragma once

#include <cstdint>

namespace lowbit {

// Softmax in place over x (n), n >= 1: max, x = std::exp(x - max) with a
// running float sum, then x /= sum.
void SoftmaxRef(float* x, int64_t n);

// Attention of one (token, head): see the top of this file.
void AttendHeadRef(const float* q, const float* keys, const float* values, int64_t len, int64_t stride,
                   int64_t head_dim, float scale, float* scores, float* out);
void AttendHead(const float* q, const float* keys, const float* values, int64_t len, int64_t stride, int64_t head_dim,
                float scale, float* scores, float* out);

// Attention of n_q query heads over one KV head: see the top of this file.
// scores holds n_q * len floats.
void AttendGroupRef(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                    int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride);
void AttendGroup(const float* q, int64_t n_q, int64_t q_stride, const float* keys, const float* values, int64_t len,
                 int64_t stride, int64_t head_dim, float scale, float* scores, float* out, int64_t out_stride);

// h[i] *= silu(gate[i]) for i in [0, n); the reference is exactly
// h[i] *= x / (1.0f + std::exp(-x)) with x = gate[i].
void SwiGluInPlaceRef(float* h, const float* gate, int64_t n);
void SwiGluInPlace(float* h, const float* gate, int64_t n);

}  // namespace lowbit
