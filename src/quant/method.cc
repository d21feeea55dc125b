// rtn, rtn-mse and imatrix (see method.h); hqq is in hqq.cc.
#include "quant/method.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/hqq.h"

namespace lowbit {

namespace {

constexpr int kClipSteps = 20;
constexpr float kClipLowest = 0.7f;

float ClipRatio(int step) { return 1.0f - (1.0f - kClipLowest) * float(step) / float(kClipSteps - 1); }

void ForRows(int64_t rows, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || pool->size() <= 1 || rows < 2)
    fn(0, rows);
  else
    pool->ParallelFor(rows, fn);
}

class RtnMethod final : public QuantMethod {
 public:
  explicit RtnMethod(ThreadPool* pool) : pool_(pool) {}
  std::string_view name() const override { return "rtn"; }
  void QuantizeTensor(const std::string&, const float* w, int64_t rows, int64_t n, const FormatInfo& fmt,
                      const float*, uint8_t* out) const override {
    QuantizeRowsParallel(fmt, w, rows, n, nullptr, out, pool_);
  }

 private:
  ThreadPool* pool_;
};

class ImatrixMethod final : public QuantMethod {
 public:
  explicit ImatrixMethod(ThreadPool* pool) : pool_(pool) {}
  std::string_view name() const override { return "imatrix"; }
  bool needs_importance() const override { return true; }
  void QuantizeTensor(const std::string& name, const float* w, int64_t rows, int64_t n, const FormatInfo& fmt,
                      const float* importance, uint8_t* out) const override {
    QuantizeRowsParallel(fmt, w, rows, n, importance, out, pool_);
  }

 private:
  ThreadPool* pool_;
};

// Searched clipping over independent units of `unit_rows` rows x `unit_n`
// columns (a block, a row or the whole tensor).
class RtnMseMethod final : public QuantMethod {
 public:
  explicit RtnMseMethod(ThreadPool* pool) : pool_(pool) {}
  std::string_view name() const override { return "rtn-mse"; }
  void QuantizeTensor(const std::string&, const float* w, int64_t rows, int64_t n, const FormatInfo& fmt,
                      const float* importance, uint8_t* out) const override {
    const size_t row_bytes = fmt.RowBytes(n);
    if (!RowsIndependent(fmt)) {  // one scale for the tensor: search one ratio for all of it
      SearchUnit(fmt, w, rows, n, n, importance, out);
      return;
    }
    // Formats with a row header share it across the row's blocks: search per row.
    const int64_t unit = fmt.row_header_bytes > 0 ? n : fmt.block_size;
    const size_t unit_bytes = fmt.row_header_bytes > 0 ? row_bytes : size_t(fmt.block_bytes);
    ForRows(rows, pool_, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < n; j += unit)
          SearchUnit(fmt, w + r * n + j, 1, unit, n, importance ? importance + j : nullptr,
                     out + size_t(r) * row_bytes + size_t(j / unit) * unit_bytes);
    });
  }

 private:
  // Encodes the (rows, unit) block at x (row stride `stride`) with the best ratio.
  static void SearchUnit(const FormatInfo& fmt, const float* x, int64_t rows, int64_t unit, int64_t stride,
                         const float* importance, uint8_t* out) {
    std::vector<float> orig(size_t(rows * unit)), clipped(orig.size());
    std::vector<float> deq(static_cast<size_t>(unit));
    const float amax = GatherUnit(x, rows, unit, stride, orig.data());
    const size_t row_bytes = fmt.RowBytes(unit), bytes = size_t(rows) * row_bytes;
    std::vector<uint8_t> trial(bytes);
    double best = INFINITY;
    for (int step = 0; step < kClipSteps; ++step) {
      const float limit = amax * ClipRatio(step);
      for (size_t i = 0; i < orig.size(); ++i) clipped[i] = std::clamp(orig[i], -limit, limit);
      fmt.quantize(clipped.data(), rows, unit, trial.data(), importance);
      double err = 0;
      for (int64_t r = 0; r < rows; ++r) {
        fmt.dequantize(trial.data() + size_t(r) * row_bytes, deq.data(), unit);
        for (int64_t i = 0; i < unit; ++i) {
          const double d = double(deq[size_t(i)]) - double(orig[size_t(r * unit + i)]);
          err += (importance ? double(importance[i]) : 1.0) * d * d;
        }
      }
      if (err < best) {  // NaN never wins; step 0 (no clipping) is always finite or the input was
        best = err;
        std::copy(trial.begin(), trial.end(), out);
      }
      if (amax == 0) break;
    }
    if (!(best < INFINITY)) std::copy(trial.begin(), trial.end(), out);
  }

  ThreadPool* pool_;
};

}  // namespace

float GatherUnit(const float* x, int64_t rows, int64_t unit, int64_t stride, float* out) {
  float amax = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < unit; ++i) {
      out[r * unit + i] = x[r * stride + i];
      amax = std::max(amax, std::fabs(x[r * stride + i]));
    }
  return amax;
}

bool RowsIndependent(const FormatInfo& fmt) { return !fmt.name.ends_with("_tensor"); }

void QuantizeRowsParallel(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, const float* importance,
                          uint8_t* out, ThreadPool* pool) {
  if (!RowsIndependent(fmt)) {
    fmt.quantize(w, rows, n, out, importance);
    return;
  }
  const size_t row_bytes = fmt.RowBytes(n);
  ForRows(rows, pool, [&](int64_t r0, int64_t r1) {
    if (r1 > r0) fmt.quantize(w + r0 * n, r1 - r0, n, out + size_t(r0) * row_bytes, importance);
  });
}

std::unique_ptr<QuantMethod> MakeQuantMethod(std::string_view name, ThreadPool* pool) {
  if (name == "rtn") return std::make_unique<RtnMethod>(pool);
  if (name == "rtn-mse") return std::make_unique<RtnMseMethod>(pool);
  if (name == "imatrix") return std::make_unique<ImatrixMethod>(pool);
  if (name == "hqq") return MakeHqqMethod(pool);
  Fail("unknown quantization method '{}' (known: {})", name, QuantMethodNames());
}

std::string QuantMethodNames() { return "rtn, rtn-mse, imatrix, hqq"; }

}  // namespace lowbit
