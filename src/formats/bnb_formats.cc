// bitsandbytes NF4 / FP4 code books, the dynamic 8-bit map of double
// quantization, and the scalar reference codecs of bnb_formats.h.
#include "formats/bnb_formats.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "formats/quant_util.h"
#include "formats/round_util.h"

namespace lowbit::bnb {

namespace {

constexpr int kBlock = 64;

// bitsandbytes/functional.py get_4bit_type("nf4"), verbatim.
constexpr float kNf4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// bnb's FP4 in code order: [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3] / 12.
constexpr float kFp4[16] = {0.0f,       0.0625f / 12, 8.0f / 12,  12.0f / 12,    4.0f / 12,  6.0f / 12,
                            2.0f / 12,  3.0f / 12,    -0.0f,      -0.0625f / 12, -8.0f / 12, -12.0f / 12,
                            -4.0f / 12, -6.0f / 12,   -2.0f / 12, -3.0f / 12};
// FP4 magnitudes ascending and their 3-bit codes.
constexpr float kFp4Magnitudes[8] = {0.0f,      0.0625f / 12, 2.0f / 12, 3.0f / 12,
                                     4.0f / 12, 6.0f / 12,    8.0f / 12, 12.0f / 12};
constexpr uint8_t kFp4MagnitudeCodes[8] = {0, 1, 6, 7, 4, 5, 2, 3};

constexpr int kDynamicZeroIndex = 127;

// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8): for i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1)
// times 10^(i-6), with both signs; plus 0 and 1; sorted. bnb evaluates it in
// float32 torch ops; lowbit in double rounded once to float, so entries may
// differ from bnb's in the last ulp (the map is lowbit's own, fixed here).
std::array<float, 256> MakeDynamicMap() {
  std::vector<float> v;
  for (int i = 0; i < 7; ++i) {
    const int items = 1 << i;
    const double step = 0.9 / items;  // linspace(0.1, 1, items + 1)
    for (int k = 0; k < items; ++k) {
      const double mean = ((0.1 + step * k) + (0.1 + step * (k + 1))) / 2.0;
      const double value = std::pow(10.0, i - 6) * mean;
      v.push_back(float(value));
      v.push_back(float(-value));
    }
  }
  v.push_back(0.0f);
  v.push_back(1.0f);
  std::sort(v.begin(), v.end());
  std::array<float, 256> map{};
  std::copy(v.begin(), v.end(), map.begin());
  return map;
}

// One out-of-line function so quantizer and dequantizer get bit-identical
// decoded absmax (no FMA contraction in one and not the other).
[[gnu::noinline]] float DecodeAbsmax(uint8_t code, float absmax2, float offset) {
  return DynamicMap()[code] * absmax2 + offset;
}

void QuantizeBlock(Book4 book, const float* x, float absmax, uint8_t* codes_out) {
  for (int i = 0; i < kBlock; i += 2) {
    const float y0 = absmax > 0.0f ? x[i] / absmax : std::copysign(0.0f, x[i]);
    const float y1 = absmax > 0.0f ? x[i + 1] / absmax : std::copysign(0.0f, x[i + 1]);
    codes_out[i / 2] = uint8_t(Encode4(book, y0) << 4 | Encode4(book, y1));
  }
}

void DequantizeBlock(Book4 book, const uint8_t* codes, float absmax, float* out) {
  const float* values = CodeBook(book);
  for (int i = 0; i < kBlock; i += 2) {
    out[i] = values[codes[i / 2] >> 4] * absmax;
    out[i + 1] = values[codes[i / 2] & 15] * absmax;
  }
}

// Where block b's 32 code bytes start in a row.
int64_t CodesOffset(bool double_quant, int64_t b) { return double_quant ? 8 + b * 33 + 1 : b * 36 + 4; }

// The absmax block b's codes are scaled by, as decoded.
float DecodedAbsmax(bool double_quant, const uint8_t* row, int64_t b) {
  if (!double_quant) return quant::LoadF32(row + b * 36);
  // A decoded absmax can come out slightly negative for a near-zero block;
  // the quantizer then chose the zero code, so clamping changes nothing
  // but keeps the sign of zero predictable.
  return std::max(DecodeAbsmax(row[8 + b * 33], quant::LoadF32(row + 4), quant::LoadF32(row)), 0.0f);
}

float BlockAbsmax(const float* x) {
  float amax = 0.0f;
  for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

}  // namespace

const float* CodeBook(Book4 book) { return book == Book4::kNf4 ? kNf4 : kFp4; }

const float* DynamicMap() {
  static const std::array<float, 256> map = MakeDynamicMap();
  return map.data();
}

uint8_t Encode4(Book4 book, float y) {
  if (book == Book4::kNf4) return uint8_t(quant::NearestIndex(kNf4, 16, y));
  const uint8_t sign = std::signbit(y) ? 8 : 0;
  return uint8_t(sign | kFp4MagnitudeCodes[quant::NearestIndex(kFp4Magnitudes, 8, std::fabs(y))]);
}

void QuantizeRows(Book4 book, bool double_quant, const float* x, int64_t rows, int64_t n, uint8_t* out) {
  const int64_t blocks = n / kBlock;
  const int block_bytes = double_quant ? 33 : 36;
  const int header = double_quant ? 8 : 0;
  std::vector<float> absmax(static_cast<size_t>(blocks));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    uint8_t* o = out + size_t(r) * size_t(header + blocks * block_bytes);
    for (int64_t b = 0; b < blocks; ++b) absmax[size_t(b)] = BlockAbsmax(xr + b * kBlock);
    if (!double_quant) {
      for (int64_t b = 0; b < blocks; ++b) {
        quant::StoreF32(o + b * 36, absmax[size_t(b)]);
        QuantizeBlock(book, xr + b * kBlock, absmax[size_t(b)], o + b * 36 + 4);
      }
      continue;
    }
    double sum = 0.0;
    for (float a : absmax) sum += a;
    const float offset = blocks > 0 ? float(sum / double(blocks)) : 0.0f;
    float absmax2 = 0.0f;
    for (float a : absmax) absmax2 = std::max(absmax2, std::fabs(a - offset));
    quant::StoreF32(o, offset);
    quant::StoreF32(o + 4, absmax2);
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* block = o + header + b * 33;
      block[0] = absmax2 > 0.0f
                     ? uint8_t(quant::NearestIndex(DynamicMap(), 256, (absmax[size_t(b)] - offset) / absmax2))
                     : uint8_t(kDynamicZeroIndex);
      QuantizeBlock(book, xr + b * kBlock, DecodeAbsmax(block[0], absmax2, offset), block + 1);
    }
  }
}

void DequantizeRow(Book4 book, bool double_quant, const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlock; ++b)
    DequantizeBlock(book, row + CodesOffset(double_quant, b), DecodedAbsmax(double_quant, row, b), out + b * kBlock);
}

// Codes in ascending order of value: NF4's book is sorted (ordinal = code);
// FP4's by signed ordinal -7..7, sign bit and the magnitude's code (0 is +0).
int CodeOfOrdinal(Book4 book, int ordinal) {
  if (book == Book4::kNf4) return ordinal;
  return (ordinal < 0 ? 8 : 0) | kFp4MagnitudeCodes[ordinal < 0 ? -ordinal : ordinal];
}

float RoundInPlace(Book4 book, bool double_quant, uint8_t* row, int64_t i, float x) {
  const int64_t b = i / kBlock;
  const float absmax = DecodedAbsmax(double_quant, row, b);
  const float* values = CodeBook(book);
  auto value = [book, values, absmax](int ordinal) { return values[CodeOfOrdinal(book, ordinal)] * absmax; };
  const int lo = book == Book4::kNf4 ? 0 : -7, hi = book == Book4::kNf4 ? 15 : 7;
  const int c = CodeOfOrdinal(book, round_util::NearestMonotoneCode(round_util::Target(x), lo, hi, value));
  uint8_t& byte = row[CodesOffset(double_quant, b) + (i % kBlock) / 2];
  byte = i % 2 == 0 ? uint8_t((byte & 0x0F) | (c << 4)) : uint8_t((byte & 0xF0) | c);  // first element high
  return values[c] * absmax;
}

}  // namespace lowbit::bnb
