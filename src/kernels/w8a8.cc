// MatMulW8A8: int8 per-channel weights x int8 activations (dynamic, static,
// LLM.int8() with f32 outlier columns); see w8a8.h. The activations are
// quantized once per call (split over tokens), the integer product is split
// over output rows in tiles of 4 (static partition), one dynamic dispatch per
// thread per call. Kernels: w8a8-inl.h; references: w8a8_ref.cc.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/dot_ref.h"
#include "kernels/fast_paths.h"
#include "kernels/matmul.h"
#include "kernels/w8a8.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/w8a8.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/w8a8-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {

void W8A8QuantizeAct(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s) {
  QuantizeActRowsInt8(x, rows, in, static_scale, q, s);
}

void W8A8Rows(const uint8_t* w, int64_t w_stride, int64_t code_offset, const int8_t* q, const int32_t* qsum,
              int64_t in, int64_t n, const float* sx, float* y, int32_t* acc, int64_t out, int64_t row_begin,
              int64_t row_end) {
  W8A8GemmRows(w, w_stride, code_offset, q, qsum, in, n, sx, y, acc, out, row_begin, row_end);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(W8A8QuantizeAct);
HWY_EXPORT(W8A8Rows);

namespace {

std::atomic<int64_t> g_products{0}, g_columns{0}, g_outlier_columns{0};

// Sum of each row's codes over its whole 32-column chunks (the VNNI kernel's
// offset correction).
std::vector<int32_t> ChunkCodeSums(const int8_t* q, int64_t n, int64_t in) {
  std::vector<int32_t> sums(static_cast<size_t>(n), 0);
  const int64_t in32 = in & ~int64_t(31);
  for (int64_t t = 0; t < n; ++t) {
    int32_t s = 0;
    for (int64_t c = 0; c < in32; ++c) s += q[t * in + c];
    sums[size_t(t)] = s;
  }
  return sums;
}

float RowScale(const uint8_t* row) {
  float s;
  std::memcpy(&s, row, 4);
  return s;
}

}  // namespace

bool IsW8A8Weight(DType type) {
  return type == DTypeOf<IntFormat<8, false, kPerChannel>>() || type == DTypeOf<IntFormat<8, false, kPerTensor>>();
}

W8A8Counters GetW8A8Counters() {
  W8A8Counters c;
  c.products = g_products.load();
  c.columns = g_columns.load();
  c.outlier_columns = g_outlier_columns.load();
  return c;
}

void ResetW8A8Counters() {
  g_products = 0;
  g_columns = 0;
  g_outlier_columns = 0;
}

void QuantizeActInt8(const float* x, int64_t rows, int64_t in, float static_scale, int8_t* q, float* s) {
  HWY_DYNAMIC_DISPATCH(W8A8QuantizeAct)(x, rows, in, static_scale, q, s);
}

void DotInt8(const uint8_t* w_codes, int64_t w_stride, int64_t rows, const int8_t* q, int64_t n, int64_t in,
             int32_t* acc) {
  const std::vector<int32_t> qsum = ChunkCodeSums(q, n, in);
  HWY_DYNAMIC_DISPATCH(W8A8Rows)(w_codes, w_stride, 0, q, qsum.data(), in, n, nullptr, nullptr, acc, rows, 0, rows);
}

void MatMulW8A8(const TensorView& w, const ActQuantParams& act, const float* x, int64_t n, float* y,
                ThreadPool& pool, bool reference) {
  if (!IsW8A8Weight(w.type))
    Fail("{}: W8A8 activations need int8_sym_channel or int8_sym_tensor weights, not {}", w.name, DTypeName(w.type));
  LOWBIT_CHECK(w.shape.size() == 2 && n >= 0);
  const int64_t out = w.shape[0], in = w.shape[1];
  if (in > kW8A8MaxIn) Fail("{}: rows of {} are too long for the int32 W8A8 kernels (at most {})", w.name, in, kW8A8MaxIn);
  if (n == 0 || out == 0) return;
  const int64_t stride = 4 + in;  // [f32 scale][in codes]
  LOWBIT_CHECK(w.bytes >= size_t(out * stride));
  const auto* wp = static_cast<const uint8_t*>(w.data);

  // LLM.int8(): the outlier columns of this batch leave the int8 part (set to
  // 0 there) and go through the float part below.
  const float* xq_in = x;
  std::vector<float> masked;  // (n, in) x with the outlier columns zeroed
  std::vector<int64_t> cols;  // the outlier columns, ascending
  if (act.kind == ActQuantKind::kLlmInt8) {
    std::vector<uint8_t> outlier(static_cast<size_t>(in), 0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < in; ++c)
        if (std::fabs(x[t * in + c]) >= act.threshold) outlier[size_t(c)] = 1;
    for (int64_t c = 0; c < in; ++c)
      if (outlier[size_t(c)]) cols.push_back(c);
    g_products += 1;
    g_columns += in;
    g_outlier_columns += int64_t(cols.size());
    if (!cols.empty()) {
      masked.assign(x, x + n * in);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t c : cols) masked[size_t(t * in + c)] = 0.0f;
      xq_in = masked.data();
    }
  }

  // Integer part: q (n, in), s_x (n).
  const float static_scale = act.kind == ActQuantKind::kInt8Static ? std::max(act.scale, 0.0f) : -1.0f;
  std::vector<int8_t> q(size_t(n * in));
  std::vector<float> sx(static_cast<size_t>(n));
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    if (reference)
      QuantizeActInt8Ref(xq_in + b * in, e - b, in, static_scale, &q[size_t(b * in)], &sx[size_t(b)]);
    else
      QuantizeActInt8(xq_in + b * in, e - b, in, static_scale, &q[size_t(b * in)], &sx[size_t(b)]);
  });
  if (reference) {
    pool.ParallelFor(out, [&](int64_t b, int64_t e) {
      std::vector<int32_t> sums(static_cast<size_t>(n));
      for (int64_t o = b; o < e; ++o) {
        DotInt8Ref(wp + o * stride + 4, stride, 1, q.data(), n, in, sums.data());
        const float sw = RowScale(wp + o * stride);
        for (int64_t t = 0; t < n; ++t) y[t * out + o] = (sx[size_t(t)] * sw) * float(sums[size_t(t)]);
      }
    });
  } else {
    const std::vector<int32_t> qsum = ChunkCodeSums(q.data(), n, in);
    pool.ParallelFor((out + kRowTile - 1) / kRowTile, [&](int64_t tb, int64_t te) {
      HWY_DYNAMIC_DISPATCH(W8A8Rows)(wp, stride, 4, q.data(), qsum.data(), in, n, sx.data(), y, nullptr, out,
                                     tb * kRowTile, std::min(te * kRowTile, out));
    });
  }
  if (cols.empty()) return;

  // Float part: x[:, cols] (n, k) against the weight columns dequantized
  // exactly as the int8 codec decodes them, s_w[o] * (u - 128).
  const int64_t k = int64_t(cols.size());
  std::vector<float> xs(size_t(n * k)), ws(size_t(out * k)), ys(size_t(n * out));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < k; ++j) xs[size_t(t * k + j)] = x[t * in + cols[size_t(j)]];
  pool.ParallelFor(out, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const uint8_t* row = wp + o * stride;
      const float sw = RowScale(row);
      for (int64_t j = 0; j < k; ++j) ws[size_t(o * k + j)] = sw * (float(row[4 + cols[size_t(j)]]) - 128.0f);
    }
  });
  if (reference) {
    pool.ParallelFor(out, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t t = 0; t < n; ++t) ys[size_t(t * out + o)] = DotF32Ref(&ws[size_t(o * k)], &xs[size_t(t * k)], k);
    });
  } else {
    const TensorView view{w.name, DType::kF32, {out, k}, ws.data(), ws.size() * sizeof(float)};
    MatMul(view, xs.data(), n, ys.data(), pool, false);
  }
  for (int64_t i = 0; i < n * out; ++i) y[i] += ys[size_t(i)];
}

}  // namespace lowbit
#endif  // HWY_ONCE
