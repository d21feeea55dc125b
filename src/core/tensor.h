// Non-owning tensor views and the element types the loaders hand out.
// Shapes are in row-major (PyTorch) order: a weight is (out, in), its rows are
// contiguous. GGUF lists dimensions the other way round (ne[0] = row length);
// the GGUF loader reverses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

// Storage type of a tensor: an index into the format list of
// formats/all_formats.h (an open enum: only the three float types are named
// here; formats/ gives every id its name, sizes and codec).
enum class DType : uint16_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

struct TensorView {
  std::string name;
  DType type = DType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first
  const void* data = nullptr;
  size_t bytes = 0;
  // Optional: the same weights in a kernel's own layout (kernels/packed.h,
  // a PackedWeights owned by whoever made the view); MatMul prefers it.
  const void* packed = nullptr;

  int64_t NumElements() const;
  int64_t Rows() const;     // product of all but the last dimension (1 for scalars)
  int64_t RowLength() const;  // last dimension
  std::string ShapeString() const;  // "(512, 64)"
};

}  // namespace lowbit
