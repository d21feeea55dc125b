// The format seam. A *format* is a bit layout plus its scalar reference codec
// (principle 2: formats are not methods). Each format is one traits struct
// (see formats/float_formats.h for the shape) listed once in
// formats/all_formats.h; this header turns that list into a runtime table of
// FormatInfo, lookups by name / GGUF type, and a visitor for templated code.
//
// Row layout of every format: [row header: row_header_bytes][blocks...],
// each block holding block_size elements in block_bytes. A tensor of R rows of
// n elements takes R * RowBytes(n) bytes; n must be a multiple of block_size.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

// Quantizes `rows` rows of n floats into `out` (rows * RowBytes(n) bytes).
// `importance` (n weights per column, may be null) weights the error of each
// column, as llama.cpp's imatrix does. Whole tensors are passed so that
// per-tensor formats can share one scale.
using QuantizeRowsFn = void (*)(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance);
// Dequantizes one row of n elements.
using DequantizeRowFn = void (*)(const uint8_t* row, float* out, int64_t n);
// GPTQ's rounding with fixed scales: `row` is an encoded row of n elements
// whose headers and block scales stay as they are; sets element i to the code
// whose value is nearest to x under those scales and returns that value
// (what dequantize now gives for element i). Null for formats without it.
using RoundInPlaceFn = float (*)(uint8_t* row, int64_t n, int64_t i, float x);

struct FormatInfo {
  DType id;
  std::string_view name;        // lower case: "f32", "q4_k", "int4_g128_asym"
  uint32_t gguf_type;           // ggml type id, or a lowbit-private id >= 1024
  bool ggml_native;             // llama.cpp can load tensors of this type
  bool weight_format;           // false for activation-only formats (q8_1, q8_k)
  int block_size;               // elements per block
  int block_bytes;              // bytes per block
  int row_header_bytes;         // per-row scale/zero storage before the blocks
  DType activation;             // what activations are quantized to for dots (f32: float dot)
  QuantizeRowsFn quantize;      // scalar reference quantizer
  DequantizeRowFn dequantize;   // scalar reference dequantizer
  double rmse_lo, rmse_hi;      // expected relative RMS error on N(0,1) rows of 4096 (tests)
  std::string_view datasheet;   // one-line summary; the full datasheet is in docs/FORMATS.md
  RoundInPlaceFn round_in_place = nullptr;  // F::RoundInPlace when the traits declare it

  size_t RowBytes(int64_t n) const { return size_t(row_header_bytes) + size_t(n / block_size) * size_t(block_bytes); }
  double BitsPerWeight(int64_t n) const { return 8.0 * double(RowBytes(n)) / double(n); }
};

std::span<const FormatInfo> AllFormats();
const FormatInfo& GetFormat(DType id);
// nullptr when unknown. Names are matched case-insensitively.
const FormatInfo* FindFormatByName(std::string_view name);
const FormatInfo* FindFormatByGgufType(uint32_t gguf_type);
std::string FormatNames(bool weights_only);  // "f32, f16, ..." for help texts and errors

std::string_view DTypeName(DType type);

// Dequantizes rows [first_row, first_row + rows) of a 2-D (or 1-D) tensor.
void DequantizeRows(const TensorView& view, int64_t first_row, int64_t rows, float* out);
// Converts elements [offset, offset + n) to f32; for block formats the range
// must start and end on row boundaries.
void ToF32(const TensorView& view, int64_t offset, int64_t n, float* out);
std::vector<float> ToF32(const TensorView& view);

}  // namespace lowbit
