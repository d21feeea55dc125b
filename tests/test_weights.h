// A weight tensor in any format for kernel tests, quantized from f32 values
// with the format's reference quantizer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "formats/format.h"

namespace lowbit::testing {

struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};

// `values` is (out, in) row-major.
inline Weights MakeWeights(DType type, const std::vector<float>& values, int64_t out, int64_t in) {
  const FormatInfo& f = GetFormat(type);
  Weights w;
  w.bytes.resize(f.RowBytes(in) * size_t(out));
  f.quantize(values.data(), out, in, w.bytes.data(), nullptr);
  w.view = {"w", type, {out, in}, w.bytes.data(), w.bytes.size()};
  return w;
}

}  // namespace lowbit::testing
