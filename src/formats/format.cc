// The runtime format table, generated from AllFormatTypes, and the
// conversions every layer uses to read a tensor as f32.
#include "formats/format.h"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/all_formats.h"

namespace lowbit {

namespace {

template <typename F>
constexpr RoundInPlaceFn RoundInPlaceOf() {
  if constexpr (requires { &F::RoundInPlace; })
    return &F::RoundInPlace;
  else
    return nullptr;
}

template <typename F>
constexpr FormatInfo MakeInfo() {
  static_assert(F::kBlockSize > 0 && F::kBlockBytes > 0 && F::kRowHeaderBytes >= 0);
  static_assert(F::kGgmlNative == (F::kGgufType < 1024), "private GGUF ids start at 1024");
  return FormatInfo{DTypeOf<F>(),
                    F::kName,
                    F::kGgufType,
                    F::kGgmlNative,
                    F::kWeightFormat,
                    F::kBlockSize,
                    F::kBlockBytes,
                    F::kRowHeaderBytes,
                    DTypeOf<typename F::Activation>(),
                    &F::QuantizeRows,
                    &F::DequantizeRow,
                    F::kRmseLo,
                    F::kRmseHi,
                    F::kDatasheet,
                    RoundInPlaceOf<F>()};
}

template <typename... Fs>
constexpr std::array<FormatInfo, sizeof...(Fs)> MakeTable(TypeList<Fs...>) {
  return {MakeInfo<Fs>()...};
}

constexpr auto kTable = MakeTable(AllFormatTypes{});

bool SameNameIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::span<const FormatInfo> AllFormats() { return kTable; }

const FormatInfo& GetFormat(DType id) {
  LOWBIT_CHECK(size_t(id) < kTable.size());
  return kTable[size_t(id)];
}

const FormatInfo* FindFormatByName(std::string_view name) {
  for (const FormatInfo& f : kTable)
    if (SameNameIgnoreCase(f.name, name)) return &f;
  return nullptr;
}

const FormatInfo* FindFormatByGgufType(uint32_t gguf_type) {
  for (const FormatInfo& f : kTable)
    if (f.gguf_type == gguf_type) return &f;
  return nullptr;
}

std::string FormatNames(bool weights_only) {
  std::string out;
  for (const FormatInfo& f : kTable) {
    if (weights_only && !f.weight_format) continue;
    if (!out.empty()) out += ", ";
    out += f.name;
  }
  return out;
}

std::string_view DTypeName(DType type) {
  return size_t(type) < kTable.size() ? kTable[size_t(type)].name : std::string_view("?");
}

void DequantizeRows(const TensorView& view, int64_t first_row, int64_t rows, float* out) {
  const FormatInfo& f = GetFormat(view.type);
  const int64_t n = view.RowLength();
  LOWBIT_CHECK(first_row >= 0 && rows >= 0 && first_row + rows <= view.Rows());
  const size_t row_bytes = f.RowBytes(n);
  const uint8_t* base = static_cast<const uint8_t*>(view.data);
  for (int64_t r = 0; r < rows; ++r)
    f.dequantize(base + size_t(first_row + r) * row_bytes, out + r * n, n);
}

void ToF32(const TensorView& view, int64_t offset, int64_t n, float* out) {
  const FormatInfo& f = GetFormat(view.type);
  LOWBIT_CHECK(offset >= 0 && n >= 0 && offset + n <= view.NumElements());
  if (f.block_size == 1 && f.row_header_bytes == 0) {
    f.dequantize(static_cast<const uint8_t*>(view.data) + size_t(offset) * size_t(f.block_bytes), out, n);
    return;
  }
  const int64_t len = view.RowLength();
  LOWBIT_CHECK(offset % len == 0 && n % len == 0);
  DequantizeRows(view, offset / len, n / len, out);
}

std::vector<float> ToF32(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.NumElements()));
  ToF32(view, 0, view.NumElements(), out.data());
  return out;
}

}  // namespace lowbit
