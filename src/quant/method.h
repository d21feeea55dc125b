// The method seam (principle 2: formats are not methods). A QuantMethod
// chooses the values a tensor stores in a given format; the format's codec
// (formats/format.h) fixes the bit layout. M methods x N formats, not M*N
// code: every method works with every weight format through FormatInfo.
//
// Step 3 methods:
//   rtn      the format's own reference quantizer (round to nearest in the
//            format's scale structure; llama.cpp's codecs without imatrix).
//   rtn-mse  searched clipping: per block (per row for formats with a row
//            header, per tensor for per-tensor formats) the weights are
//            clipped to r * max|w| for r in kClipRatios (1.0 down to 0.7, 20
//            steps), each candidate is encoded with the format's codec, and
//            the one with the smallest (importance-weighted) squared error
//            against the original weights is kept. r = 1.0 is the rtn
//            encoding of that block, so rtn-mse is never worse than rtn.
//   imatrix  the format's codec with llama.cpp-style importance (the mean
//            squared activation of each input channel, from calibration).
//            The pipeline requires statistics for every quantized tensor but
//            token_embd (a lookup, no matmul input), which gets the plain codec.
//   hqq      calibration-free half-quadratic minimisation of the lp (p = 0.7)
//            weight error: HQQ's scale/zero updates for INT asymmetric
//            formats, the same splitting around the codec for the others
//            (quant/hqq.h). Per group never worse than rtn in that error.
// Step 4 adds GPTQ, AWQ, SmoothQuant behind the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "formats/format.h"

namespace lowbit {

class ThreadPool;

class QuantMethod {
 public:
  virtual ~QuantMethod() = default;
  virtual std::string_view name() const = 0;
  // Whether QuantizeTensor needs per-input-channel importance for every tensor.
  virtual bool needs_importance() const { return false; }

  // Encodes the row-major (rows, n) f32 weights `w` of tensor `name` into
  // `out` (rows * fmt.RowBytes(n) bytes). n is a multiple of fmt.block_size.
  // `importance` holds n non-negative weights per input column, or is null.
  virtual void QuantizeTensor(const std::string& name, const float* w, int64_t rows, int64_t n,
                              const FormatInfo& fmt, const float* importance, uint8_t* out) const = 0;
};

// "rtn", "rtn-mse", "imatrix" or "hqq"; `pool` (may be null) parallelises over rows.
// Throws Error naming the known methods for anything else.
std::unique_ptr<QuantMethod> MakeQuantMethod(std::string_view name, ThreadPool* pool = nullptr);
std::string QuantMethodNames();

// Whether a format's rows can be encoded independently (false for the
// per-tensor INT formats, whose rows share one scale).
bool RowsIndependent(const FormatInfo& fmt);

// Copies the (rows, unit) block at x (row stride `stride`) into a contiguous
// `out` (rows * unit floats) and returns its largest |value|: the start of
// every per-unit search (rtn-mse's clipping, hqq's codec fitting).
float GatherUnit(const float* x, int64_t rows, int64_t unit, int64_t stride, float* out);

// Encodes rows in parallel chunks when the format allows it, else in one call.
void QuantizeRowsParallel(const FormatInfo& fmt, const float* w, int64_t rows, int64_t n, const float* importance,
                          uint8_t* out, ThreadPool* pool);

}  // namespace lowbit
