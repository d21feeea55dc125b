// ggml block formats x activations quantized on the fly (placeholder until
// the block formats land in formats/).
#include "kernels/fast_paths.h"

namespace lowbit {

bool HasMatMulQuant(DType) { return false; }
bool MatMulQuant(const TensorView&, const float*, int64_t, float*, ThreadPool&) { return false; }

}  // namespace lowbit
