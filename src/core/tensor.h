// Non-owning tensor views and the element types the loaders hand out.
// Shapes are in row-major (PyTorch) order: a weight is (out, in), its rows are
// contiguous. GGUF lists dimensions the other way round (ne[0] = row length);
// the GGUF loader reverses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

// Storage types of tensors as loaded from files. Step 2's format catalogue
// extends this with the quantized formats.
enum class DType : uint8_t { kF32, kF16, kBF16 };

std::string_view DTypeName(DType type);
size_t DTypeSize(DType type);  // bytes per element

struct TensorView {
  std::string name;
  DType type = DType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first
  const void* data = nullptr;
  size_t bytes = 0;

  int64_t NumElements() const;
  int64_t Rows() const;     // product of all but the last dimension (1 for scalars)
  int64_t RowLength() const;  // last dimension
  std::string ShapeString() const;  // "(512, 64)"
};

// Converts n elements of `type` starting at element `offset` of `view` to f32.
void ToF32(const TensorView& view, int64_t offset, int64_t n, float* out);

// Returns the whole tensor as f32 (a copy).
std::vector<float> ToF32(const TensorView& view);

}  // namespace lowbit
