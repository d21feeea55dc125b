// ggml block formats x activations quantized on the fly to the format's
// activation type (FormatInfo::activation): integer block dots, scaled and
// summed in f32.
//   y (n, out) = x (n, in) @ W^T,  W (out, in) in a format of QuantKernelFormats.
// The activations are quantized once per call (quantize_act.cc, or the
// activation format's reference quantizer); each thread then walks its output rows in tiles of
// 4 weight rows x Kernel<F>::kT tokens, every weight block prepared once per
// tile. Kernels per format: quant_legacy-inl.h, quant_kquants-inl.h
// (AVX2 / AVX3 / AVX3_DL); targets below AVX2 run the scalar references.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/type_list.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/fast_paths.h"
#include "kernels/quant_dot_ref.h"

#ifndef LOWBIT_KERNELS_GEMM_QUANT_LIST
#define LOWBIT_KERNELS_GEMM_QUANT_LIST
namespace lowbit {
// Every weight format with a quantized kernel, listed once: the position is
// the kind the per-target entry points take.
using QuantKernelFormats = TypeList<Q4_0Format, Q8_0Format, Q5_0Format, IQ4_NLFormat, Q4_1Format, Q5_1Format,
                                    Q4_KFormat, Q5_KFormat, Q6_KFormat, Q3_KFormat, Q2_KFormat, IQ4_XSFormat,
                                    TQ2_0Format, TQ1_0Format>;
}  // namespace lowbit
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_quant.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/quant_kquants-inl.h"
#include "kernels/quant_legacy-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

template <class F>
constexpr int64_t kWBytes = int64_t(sizeof(typename F::Block));
template <class F>
constexpr int64_t kABytes = int64_t(sizeof(typename F::Activation::Block));

#if HWY_TARGET <= HWY_AVX2

template <class F>
constexpr size_t kTokens = Kernel<F>::kT;
template <class F>
constexpr int64_t kPrefetchEvery = kWBytes<F> < 64 ? 64 / kWBytes<F> : 1;

// out[r * T + t] = dot(w[r], a[t]) over nb blocks. `next` is the row tile
// two tiles on: its blocks are prefetched into L2 in step, because rows of a
// few hundred bytes are too short for the hardware stream prefetchers to ramp
// up (GEMV from DRAM ran at a quarter of the read bandwidth without it, at
// 60-90% with it). Blocks shorter than a cache line prefetch every
// kPrefetchEvery<F>-th block, whose addresses still touch every line.
template <class F, size_t R, size_t T>
HWY_INLINE void Tile(const uint8_t* const* w, const uint8_t* next, const uint8_t* const* a, const float* const* da,
                     int64_t nb, float* out) {
  using K = Kernel<F>;
  const int64_t w_row = nb * kWBytes<F>;
  __m256 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (b % kPrefetchEvery<F> == 0)
      for (size_t r = 0; r < R; ++r)
        for (int64_t line = 0; line < kWBytes<F>; line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(next + int64_t(r) * w_row + b * kWBytes<F> + line), _MM_HINT_T1);
    typename K::W prepared[R];
    for (size_t r = 0; r < R; ++r) K::Prepare(w[r] + b * kWBytes<F>, &prepared[r]);
    for (size_t t = 0; t < T; ++t)
      for (size_t r = 0; r < R; ++r) K::Accumulate(prepared[r], a[t] + b * kABytes<F>, da[t] + b, &acc[r][t]);
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) out[r * T + t] = SumF32(acc[r][t]);
}

template <class F>
void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
  using K = Kernel<F>;
  for (int64_t b = 0; b < nb; ++b) {
    typename K::W prepared;
    K::Prepare(w + b * kWBytes<F>, &prepared);
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    K::Ints(prepared, a + b * kABytes<F>, &i0, &i1);
    out[2 * b] = SumI32(i0);
    out[2 * b + 1] = SumI32(i1);
  }
}

#else  // below AVX2: the scalar references, one (row, token) at a time

template <class F>
constexpr size_t kTokens = 1;

template <class F, size_t R, size_t T>
void Tile(const uint8_t* const* w, const uint8_t*, const uint8_t* const* a, const float* const*, int64_t nb,
          float* out) {
  const QuantDotRef& ref = *FindQuantDotRef(DTypeOf<F>());
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) out[r * T + t] = VecDotRef(ref, w[r], a[t], nb * F::kBlockSize);
}

template <class F>
void BlockSums(const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
  BlockSumsRef(*FindQuantDotRef(DTypeOf<F>()), w, a, nb * F::kBlockSize, out);
}

#endif  // HWY_TARGET <= HWY_AVX2

// Rows [row_begin, row_end) of y for all n tokens. Tokens go in chunks whose
// activations stay in L2 (kChunkBytes) while the thread's weight rows stream
// past once per chunk; within a chunk, tiles of 4 rows x kTokens<F> tokens,
// then single tokens. A short last row tile repeats its last row (results
// dropped). w: rows of nb weight blocks; a: n rows of nb activation blocks;
// da (n, nb): the activation scales as f32.
template <class F>
void GemmRows(const uint8_t* w, const uint8_t* a, const float* da, int64_t nb, int64_t n, float* y, int64_t out,
              int64_t row_begin, int64_t row_end) {
  constexpr size_t R = size_t(kRowTile), T = kTokens<F>;
  const int64_t w_row = nb * kWBytes<F>, a_row = nb * kABytes<F>;
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / a_row / int64_t(T)) * int64_t(T);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = std::min(n, t0 + chunk);
    for (int64_t r = row_begin; r < row_end; r += int64_t(R)) {
      const uint8_t* wr[R];
      for (size_t i = 0; i < R; ++i) wr[i] = w + std::min<int64_t>(r + int64_t(i), row_end - 1) * w_row;
      const size_t rows = size_t(std::min<int64_t>(int64_t(R), row_end - r));
      // The tile two on (this tile again near the end: prefetches stay in bounds).
      const uint8_t* next = r + 3 * int64_t(R) <= row_end ? wr[0] + 2 * int64_t(R) * w_row : wr[0];
      float res[R * T];
      int64_t t = t0;
      for (; t + int64_t(T) <= t1; t += int64_t(T)) {
        const uint8_t* as[T];
        const float* ds[T];
        for (size_t j = 0; j < T; ++j) as[j] = a + (t + int64_t(j)) * a_row, ds[j] = da + (t + int64_t(j)) * nb;
        Tile<F, R, T>(wr, next, as, ds, nb, res);
        for (size_t i = 0; i < rows; ++i)
          for (size_t j = 0; j < T; ++j) y[(t + int64_t(j)) * out + r + int64_t(i)] = res[i * T + j];
      }
      for (; t < t1; ++t) {
        const uint8_t* as[1] = {a + t * a_row};
        const float* ds[1] = {da + t * nb};
        Tile<F, R, 1>(wr, next, as, ds, nb, res);
        for (size_t i = 0; i < rows; ++i) y[t * out + r + int64_t(i)] = res[i];
      }
    }
  }
}

template <class... Fs>
void GemmDispatch(TypeList<Fs...>, int kind, const uint8_t* w, const uint8_t* a, const float* da, int64_t nb,
                  int64_t n, float* y, int64_t out, int64_t row_begin, int64_t row_end) {
  (void)((kind == int(IndexOf<Fs, QuantKernelFormats>::value)
              ? (GemmRows<Fs>(w, a, da, nb, n, y, out, row_begin, row_end), true)
              : false) ||
         ...);
}

template <class... Fs>
void BlockSumsDispatch(TypeList<Fs...>, int kind, const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
  (void)((kind == int(IndexOf<Fs, QuantKernelFormats>::value) ? (BlockSums<Fs>(w, a, nb, out), true) : false) ||
         ...);
}

// The per-target entry points (one dynamic dispatch per thread per call).
void GemmQuantRows(int kind, const uint8_t* w, const uint8_t* a, const float* da, int64_t nb, int64_t n, float* y,
                   int64_t out, int64_t row_begin, int64_t row_end) {
  GemmDispatch(QuantKernelFormats{}, kind, w, a, da, nb, n, y, out, row_begin, row_end);
}

void QuantBlockSumsRows(int kind, const uint8_t* w, const uint8_t* a, int64_t nb, int32_t* out) {
  BlockSumsDispatch(QuantKernelFormats{}, kind, w, a, nb, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(GemmQuantRows);
HWY_EXPORT(QuantBlockSumsRows);

namespace {

// Position of `type` in QuantKernelFormats, or -1.
template <class... Fs>
int KindOf(DType type, TypeList<Fs...>) {
  int kind = -1;
  (void)((type == DTypeOf<Fs>() ? (kind = int(IndexOf<Fs, QuantKernelFormats>::value), true) : false) || ...);
  return kind;
}
int KindOf(DType type) { return KindOf(type, QuantKernelFormats{}); }

}  // namespace

bool HasMatMulQuant(DType type) { return KindOf(type) >= 0; }

bool MatMulQuant(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  const int kind = KindOf(w.type);
  if (kind < 0) return false;
  const FormatInfo& wf = GetFormat(w.type);
  const FormatInfo& af = GetFormat(wf.activation);
  const int64_t out = w.shape[0], in = w.shape[1];
  LOWBIT_CHECK(in % wf.block_size == 0 && wf.block_size == af.block_size && wf.row_header_bytes == 0);
  // a (n, in) in the activation format, quantized once for all weight rows,
  // and da (n, nb) its block scales as f32 (Q8_K stores f32, Q8_0/Q8_1 f16,
  // both at the start of the block).
  const int64_t nb = in / wf.block_size;
  const size_t a_row = af.RowBytes(in), a_block = size_t(af.block_bytes);
  const bool f32_scales = af.id == DTypeOf<Q8_KFormat>();
  std::vector<uint8_t> a(a_row * size_t(n));
  std::vector<float> da(size_t(n * nb));
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    uint8_t* rows_out = a.data() + size_t(b) * a_row;
    if (!QuantizeActivations(af.id, x + b * in, e - b, in, rows_out)) af.quantize(x + b * in, e - b, in, rows_out, nullptr);
    for (int64_t i = b * nb; i < e * nb; ++i) {
      const uint8_t* block = a.data() + size_t(i) * a_block;
      uint16_t h;
      std::memcpy(&h, block, 2);
      if (f32_scales) {
        std::memcpy(&da[size_t(i)], block, 4);
      } else {
        da[size_t(i)] = F16ToF32(h);
      }
    }
  });
  const auto* wp = static_cast<const uint8_t*>(w.data);
  pool.ParallelFor((out + kRowTile - 1) / kRowTile, [&](int64_t tb, int64_t te) {
    HWY_DYNAMIC_DISPATCH(GemmQuantRows)(kind, wp, a.data(), da.data(), nb, n, y, out, tb * kRowTile,
                                        std::min(te * kRowTile, out));
  });
  return true;
}

bool QuantBlockSums(DType type, const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  const int kind = KindOf(type);
  if (kind < 0) return false;
  HWY_DYNAMIC_DISPATCH(QuantBlockSumsRows)(kind, w, a, n / GetFormat(type).block_size, out);
  return true;
}

}  // namespace lowbit
#endif  // HWY_ONCE
