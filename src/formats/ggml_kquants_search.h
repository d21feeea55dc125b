// Scale searches shared by the K-quant reference quantizers (ggml_kquants.cc).
// Each is a step-for-step rewrite of the ggml-quants.c helper named beside it,
// kept in the same float operation order: llama-quantize's bytes depend on
// every rounding, so "equivalent" algebra is not good enough here. This file
// (like the rest of lowbit_formats) is compiled with -ffp-contract=off so the
// compiler does not fuse a*b+c into an FMA that ggml's build does not use.
#pragma once

#include <cstdint>
#include <cstring>

namespace lowbit::kquant {

inline constexpr int kSuperBlock = 256;  // QK_K: weights per super-block

// ggml's nearest_int: adding 1.5 * 2^23 makes the FPU round to an integer in
// the low mantissa bits (round half to even). Valid for |v| <= 2^22 - 1, as in
// ggml; outside that range the result is garbage in both implementations.
inline int NearestInt(float v) {
  const float shifted = v + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

// make_qx_quants with rmse_type 1: symmetric quantization of x[0..n) to
// integers in [-nmax, nmax-1], stored biased as L = q + nmax. Tries the
// inverse scale -nmax/max and 18 neighbours -(nmax + 0.1 is)/max, keeps the
// one maximizing (sum w x q)^2 / sum w q^2 (the weighted-SSE optimum), and
// returns its least-squares scale. Weights are qw, or x^2 when qw is null.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// make_q3_quants with do_rmse: symmetric, weights x^2; rounds at -nmax/max,
// then up to 5 coordinate-descent passes moving single elements to the level
// optimal for the least-squares scale of the others. L = q + nmax.
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L);

// make_qkx2_quants / make_qkx3_quants (identical when weights are given, as in
// every K-quant caller): asymmetric x ~ scale * L - the_min with L in
// [0, nmax]. Sweeps inverse scales (rmin + rdelta * is + nmax) / (max - min)
// for is in [0, nstep], solves the weighted 2x2 least-squares for (scale, min)
// per candidate (min clamped to <= 0), and keeps the lowest weighted absolute
// (use_mad) or squared error. Laux is scratch of n bytes.
float MakeQkxQuants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                    float rmin, float rdelta, int nstep, bool use_mad);

// make_qp_quants: quantizes non-negative sub-block scales (or mins) x[0..n)
// to [0, nmax] with weights quant_weights: tries 9 inverse scales around
// nmax/max, then 5 coordinate-descent passes; returns the super-block scale.
float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// best_index_int8: index of the entry of the sorted table val[0..n) nearest
// to x (ties go up).
int BestIndexInt8(int n, const int8_t* val, float x);

}  // namespace lowbit::kquant
