// MatMul: picks the SIMD family for the weight format, else dequantizes the
// weights in row panels with the format's codec and multiplies each panel
// with the f32 SIMD GEMM; splits output rows statically over the pool.
#include "kernels/matmul.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "formats/format.h"
#include "hwy/targets.h"
#include "kernels/dot_ref.h"
#include "kernels/fast_paths.h"
#include "kernels/packed.h"

namespace lowbit {

void MatMulDequantRef(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  const int64_t out = w.shape[0], in = w.shape[1];
  pool.ParallelFor(out, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(in));  // one row of W as f32, per thread
    for (int64_t o = begin; o < end; ++o) {
      DequantizeRows(w, o, 1, row.data());
      for (int64_t t = 0; t < n; ++t) y[t * out + o] = DotF32Ref(row.data(), x + t * in, in);
    }
  });
}

bool HasFastMatMul(DType type) { return HasMatMulFloat(type) || HasMatMulQuant(type); }

namespace {

// Weight rows per panel: a panel of f32 rows is decoded in parallel, then
// multiplied by the f32 GEMM (gemm_float.cc). Panels are fixed, so results
// depend only on the thread count, as for every other path.
constexpr int64_t kPanelRows = 256;

// Formats without a fused kernel (lowbit's INT, NF4/FP4, FP8, log4 formats):
// codec-decoded panels of W times x through the f32 SIMD GEMM.
void MatMulDequantPanels(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  const int64_t out = w.shape[0], in = w.shape[1];
  const int64_t panel_rows = std::min(out, kPanelRows);
  std::vector<float> panel(size_t(panel_rows * in));  // (panel rows, in) of W in f32
  std::vector<float> part(size_t(n * panel_rows));   // (n, panel rows) of y
  for (int64_t r0 = 0; r0 < out; r0 += panel_rows) {
    const int64_t rows = std::min(panel_rows, out - r0);
    pool.ParallelFor(rows, [&](int64_t begin, int64_t end) {
      DequantizeRows(w, r0 + begin, end - begin, &panel[size_t(begin * in)]);
    });
    const TensorView view{w.name, DType::kF32, {rows, in}, panel.data(), size_t(rows * in) * sizeof(float)};
    LOWBIT_CHECK(MatMulFloat(view, x, n, part.data(), pool));
    for (int64_t t = 0; t < n; ++t)
      std::copy(&part[size_t(t * rows)], &part[size_t(t * rows + rows)], y + t * out + r0);
  }
}

}  // namespace

void MatMul(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool, bool reference) {
  LOWBIT_CHECK(w.shape.size() == 2 && n >= 0);
  if (n == 0 || w.shape[0] == 0) return;
  if (reference) return MatMulDequantRef(w, x, n, y, pool);
  if (w.packed != nullptr) return MatMulPacked(*static_cast<const PackedWeights*>(w.packed), x, n, y, pool);
  if (MatMulFloat(w, x, n, y, pool)) return;
  if (MatMulQuant(w, x, n, y, pool)) return;
  MatMulDequantPanels(w, x, n, y, pool);
}

std::vector<KernelTarget> KernelTargets() {
  std::vector<KernelTarget> targets;
  const int64_t bits = hwy::SupportedTargets() & HWY_TARGETS;
  // Lower bits are better targets on x86.
  for (int64_t t = bits; t != 0; t &= t - 1) {
    const int64_t one = t & -t;
    targets.push_back({one, hwy::TargetName(one)});
  }
  return targets;
}

}  // namespace lowbit
