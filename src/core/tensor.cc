// Tensor view helpers: sizes, shape strings and conversion to f32.
#include "core/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/half.h"

namespace lowbit {

std::string_view DTypeName(DType type) {
  switch (type) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

size_t DTypeSize(DType type) {
  switch (type) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
  }
  return 0;
}

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorView::Rows() const {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
  return n;
}

int64_t TensorView::RowLength() const { return shape.empty() ? 1 : shape.back(); }

std::string TensorView::ShapeString() const { return fmt::format("({})", fmt::join(shape, ", ")); }

void ToF32(const TensorView& view, int64_t offset, int64_t n, float* out) {
  LOWBIT_CHECK(offset >= 0 && offset + n <= view.NumElements());
  switch (view.type) {
    case DType::kF32: {
      const float* src = static_cast<const float*>(view.data) + offset;
      for (int64_t i = 0; i < n; ++i) out[i] = src[i];
      return;
    }
    case DType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(view.data) + offset;
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(src[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(view.data) + offset;
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(src[i]);
      return;
    }
  }
}

std::vector<float> ToF32(const TensorView& view) {
  std::vector<float> out(size_t(view.NumElements()));
  ToF32(view, 0, view.NumElements(), out.data());
  return out;
}

}  // namespace lowbit
