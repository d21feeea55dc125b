// MatMul: picks the SIMD family for the weight format, else the generic
// dequantize-and-dot path; splits output rows statically over the pool.
#include "kernels/matmul.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "formats/format.h"
#include "hwy/targets.h"
#include "kernels/dot_ref.h"
#include "kernels/fast_paths.h"

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

void MatMul(const TensorView& w, const float* x, int64_t n, float* y, ThreadPool& pool, bool reference) {
  LOWBIT_CHECK(w.shape.size() == 2 && n >= 0);
  if (n == 0 || w.shape[0] == 0) return;
  if (reference) return MatMulDequantRef(w, x, n, y, pool);
  if (MatMulFloat(w, x, n, y, pool)) return;
  if (MatMulQuant(w, x, n, y, pool)) return;
  MatMulDequantRef(w, x, n, y, pool);
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
