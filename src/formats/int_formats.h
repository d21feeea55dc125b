// Linear integer weight formats INT8/4/3/2, symmetric or asymmetric, with one
// scale per tensor, per output channel (row) or per group of 32/64/128: the
// storage GPTQ, AWQ and compressed-tensors use, with lowbit's own byte layout.
// All 40 formats come from one template, IntFormat<kBits, kAsym, kGroup>.
//
// Datasheet. Codes u are unsigned b-bit integers packed densely, little-endian
// bit stream (quant_util.h PackCodes: int4 two per byte, element 2j in the
// low nibble; int3 eight codes in 3 bytes; int2 four per byte). Decoding is
// one formula for all 40:  x' = scale * (u - zero).
//   symmetric:  zero = 2^(b-1) (implicit, GPTQ's symmetric convention),
//               u in [1, 2^b - 1], i.e. q = u - zero in the restricted range
//               [-(2^(b-1)-1), 2^(b-1)-1]; int2 sym is ternary {-1, 0, 1}.
//               scale = absmax / (2^(b-1) - 1).
//   asymmetric: zero stored, in [0, 2^b - 1]; u in [0, 2^b - 1];
//               range [min(x), max(x)] widened to include 0 (so 0 is exact),
//               scale = (max - min) / (2^b - 1), zero = round(-min / scale).
// Scales are rounded toward zero (quant_util.h) before the codes are chosen;
// rounding is to nearest, ties to even; codes are clamped to their range.
// Granularity and layout (G = group size, b = bits, n = row length):
//   _tensor   one scale (and zero) for the whole tensor, repeated in every
//             row header so rows stay self-contained: header f32 scale
//             [+ i32 zero]; bits/weight = b + 32/n (sym), b + 64/n (asym)
//   _channel  the same header, computed per row (output channel)
//   _gG       no header; block of G: f16 scale [+ u8 zero] + G*b/8 code bytes;
//             bits/weight = b + 16/G (sym), b + 24/G (asym)
//             e.g. int4_sym_g128 4.125, int4_asym_g128 4.1875, int3_asym_g64 3.375
// Names: int{b}_{sym|asym}_{tensor|channel|g32|g64|g128}.
// GGUF ids (lowbit-private, fixed forever): 1100 + 10*b + (asym ? 5 : 0) +
// {tensor 0, channel 1, g32 2, g64 3, g128 4}; int4_sym_g128 = 1144.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "core/type_list.h"
#include "formats/float_formats.h"
#include "formats/quant_util.h"
#include "formats/round_util.h"

namespace lowbit {

inline constexpr int kPerTensor = -1;  // IntFormat kGroup: one scale per tensor
inline constexpr int kPerChannel = 0;  //                   one scale per row

namespace int_format_internal {

// Compile-time text for kName / kDatasheet.
struct ConstString {
  std::array<char, 160> chars{};
  int size = 0;
  constexpr ConstString& Add(const char* s) {
    while (*s) chars[size++] = *s++;
    return *this;
  }
  constexpr ConstString& Add(int64_t v) {  // v >= 0
    char digits[20];
    int k = 0;
    do {
      digits[k++] = char('0' + v % 10);
      v /= 10;
    } while (v > 0);
    while (k > 0) chars[size++] = digits[--k];
    return *this;
  }
  // num/den with up to 4 decimals (exact for the bit counts here).
  constexpr ConstString& AddRatio(int64_t num, int64_t den) {
    Add(num / den);
    int64_t frac = (num % den) * 10000 / den;
    if (frac == 0) return *this;
    Add(".");
    for (int64_t p = 1000; p > 0 && frac > 0; p /= 10) {
      chars[size++] = char('0' + frac / p);
      frac %= p;
    }
    return *this;
  }
};

constexpr int GranularityIndex(int group) {
  return group == kPerTensor ? 0 : group == kPerChannel ? 1 : group == 32 ? 2 : group == 64 ? 3 : 4;
}

constexpr ConstString Name(int bits, bool asym, int group) {
  ConstString s;
  s.Add("int").Add(bits).Add(asym ? "_asym_" : "_sym_");
  if (group == kPerTensor) {
    s.Add("tensor");
  } else if (group == kPerChannel) {
    s.Add("channel");
  } else {
    s.Add("g").Add(group);
  }
  return s;
}

constexpr ConstString Datasheet(int bits, bool asym, int group) {
  ConstString s;
  s.Add("int").Add(bits).Add(asym ? " asymmetric (scale, zero-point)" : " symmetric (absmax)");
  if (group <= 0) {
    s.Add(group == kPerTensor ? ", one scale per tensor" : ", one scale per row");
    s.Add(asym ? ": f32 scale + i32 zero per row, " : ": f32 scale per row, ").Add(bits);
    s.Add(asym ? " + 64/n bits/weight" : " + 32/n bits/weight");
  } else {
    s.Add(", groups of ").Add(group).Add(asym ? ": f16 scale + u8 zero + codes, " : ": f16 scale + codes, ");
    s.AddRatio(int64_t(bits) * group + (asym ? 24 : 16), group).Add(" bits/weight");
  }
  return s;
}

// Relative RMS error of these RTN quantizers on N(0,1) rows of 4096,
// measured over 16 rows (tests/formats_test.cc prints it; int2 sym per row is
// ~0.9 because an absmax-scaled ternary code rounds most weights to 0). For orientation,
// uniform rounding gives step/sqrt(12) per element, with step = absmax/(2^(b-1)-1)
// (sym) or range/(2^b-1) (asym): int4 per row, absmax ~3.7 sigma, -> ~0.15.
constexpr double MeasuredRmse(int bits, bool asym, int group) {
  //                               tensor   channel  g32      g64      g128
  constexpr double kSym[4][5] = {{0.9673, 0.9136, 0.6575, 0.7192, 0.7670},        // int2 (ternary)
                                 {0.4471, 0.3610, 0.2272, 0.2515, 0.2718},        // int3
                                 {0.1872, 0.1578, 0.0966, 0.1085, 0.1183},        // int4
                                 {0.01115, 0.00872, 0.00536, 0.00596, 0.00645}};  // int8
  constexpr double kAsym[4][5] = {{0.7880, 0.6917, 0.4050, 0.4565, 0.5012},
                                  {0.3602, 0.2950, 0.1722, 0.1953, 0.2149},
                                  {0.1639, 0.1401, 0.0805, 0.0908, 0.0998},
                                  {0.01070, 0.00824, 0.00478, 0.00536, 0.00592}};
  const int b = bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : 3;
  return asym ? kAsym[b][GranularityIndex(group)] : kSym[b][GranularityIndex(group)];
}

struct Params {
  float scale;
  int zero;
};

// The codec of one scale's worth of elements, shared by all granularities.
template <int kBits, bool kAsym>
struct Codec {
  static constexpr int kMaxCode = (1 << kBits) - 1;
  static constexpr int kSymZero = 1 << (kBits - 1);
  static constexpr int kSymMax = kSymZero - 1;
  static constexpr int kMinCode = kAsym ? 0 : 1;

  // Scale and zero for data in [lo, hi]; round_scale maps the exact scale to
  // the stored one (toward zero).
  template <typename RoundScale>
  static Params Choose(float lo, float hi, RoundScale round_scale) {
    if constexpr (kAsym) {
      lo = std::min(lo, 0.0f);
      hi = std::max(hi, 0.0f);
      const float scale = round_scale((hi - lo) / float(kMaxCode));
      if (!(scale > 0.0f)) return {0.0f, 0};
      const int zero = std::clamp(int(std::nearbyint(-lo / scale)), 0, kMaxCode);
      return {scale, zero};
    } else {
      const float amax = std::max(std::fabs(lo), std::fabs(hi));
      return {round_scale(amax / float(kSymMax)), kSymZero};
    }
  }
  static uint8_t Encode(float x, Params p) {
    if (!(p.scale > 0.0f) || std::isnan(x)) return uint8_t(p.zero);  // NaN would make the cast undefined
    const float q = std::nearbyint(x / p.scale) + float(p.zero);
    return uint8_t(std::clamp(q, float(kMinCode), float(kMaxCode)));
  }
  // In float: a corrupt file may hold any i32 zero-point, and int(u) - INT_MIN overflows.
  static float Decode(uint8_t u, Params p) { return p.scale * (float(u) - float(p.zero)); }
  static void MinMax(const float* x, int64_t count, float* lo, float* hi) {
    for (int64_t i = 0; i < count; ++i) {
      *lo = std::min(*lo, x[i]);
      *hi = std::max(*hi, x[i]);
    }
  }
};

}  // namespace int_format_internal

// kGroup: kPerTensor, kPerChannel, or a group size (32, 64, 128).
template <int kBits, bool kAsym, int kGroup>
struct IntFormat {
  static_assert(kBits == 2 || kBits == 3 || kBits == 4 || kBits == 8);
  static_assert(kGroup == kPerTensor || kGroup == kPerChannel || kGroup == 32 || kGroup == 64 || kGroup == 128);
  using Codec = int_format_internal::Codec<kBits, kAsym>;
  static constexpr bool kGrouped = kGroup > 0;
  static constexpr bool kAsymmetric = kAsym;
  static constexpr int kBitsPerCode = kBits;
  static constexpr int kGroupSize = kGroup;
  // Elements per packing unit of the bit stream: a whole number of bytes.
  static constexpr int kPackUnit = kBits == 3 ? 8 : 8 / kBits;
  static constexpr int kScaleBytes = kGrouped ? 2 + (kAsym ? 1 : 0) : 4 + (kAsym ? 4 : 0);

  static constexpr int_format_internal::ConstString kNameText = int_format_internal::Name(kBits, kAsym, kGroup);
  static constexpr int_format_internal::ConstString kDatasheetText =
      int_format_internal::Datasheet(kBits, kAsym, kGroup);

  static constexpr const char* kName = kNameText.chars.data();
  static constexpr uint32_t kGgufType =
      1100 + 10 * kBits + (kAsym ? 5 : 0) + int_format_internal::GranularityIndex(kGroup);
  static constexpr bool kGgmlNative = false;
  static constexpr bool kWeightFormat = true;
  static constexpr int kBlockSize = kGrouped ? kGroup : kPackUnit;
  static constexpr int kBlockBytes = kGrouped ? kScaleBytes + kGroup * kBits / 8 : kPackUnit * kBits / 8;
  static constexpr int kRowHeaderBytes = kGrouped ? 0 : kScaleBytes;
  // Integer dot products: int8 symmetric activations with the weights' scale
  // granularity (per token for per-row/per-tensor weights, per group otherwise).
  using Activation = IntFormat<8, false, kGrouped ? kGroup : kPerChannel>;
  // Relative RMS error window on N(0,1) rows of 4096: the measured value
  // -20% / +25% (a per-tensor scale rides on one absmax, which varies ~10%).
  static constexpr double kRmseLo = 0.8 * int_format_internal::MeasuredRmse(kBits, kAsym, kGroup);
  static constexpr double kRmseHi = 1.25 * int_format_internal::MeasuredRmse(kBits, kAsym, kGroup);
  static constexpr const char* kDatasheet = kDatasheetText.chars.data();

  static void QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
    using int_format_internal::Params;
    if (rows <= 0 || n <= 0) return;
    const size_t row_bytes = size_t(kRowHeaderBytes) + size_t(n / kBlockSize) * kBlockBytes;
    uint8_t codes[kGrouped ? kGroup : kPackUnit];
    if constexpr (kGrouped) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < n / kGroup; ++g) {
          const float* xg = x + r * n + g * kGroup;
          uint8_t* block = out + size_t(r) * row_bytes + size_t(g) * kBlockBytes;
          float lo = xg[0], hi = xg[0];
          Codec::MinMax(xg, kGroup, &lo, &hi);
          const Params p = Codec::Choose(lo, hi, quant::RoundScaleToF16Down);
          quant::StoreF16(block, p.scale);
          if constexpr (kAsym) block[2] = uint8_t(p.zero);
          for (int i = 0; i < kGroup; ++i) codes[i] = Codec::Encode(xg[i], p);
          quant::PackCodes<kBits>(codes, kGroup, block + kScaleBytes);
        }
      }
    } else {
      Params tensor_params{};
      if constexpr (kGroup == kPerTensor) {
        float lo = x[0], hi = x[0];
        Codec::MinMax(x, rows * n, &lo, &hi);
        tensor_params = Codec::Choose(lo, hi, quant::RoundScaleToF32Bits16Down);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        uint8_t* o = out + size_t(r) * row_bytes;
        Params p = tensor_params;
        if constexpr (kGroup == kPerChannel) {
          float lo = xr[0], hi = xr[0];
          Codec::MinMax(xr, n, &lo, &hi);
          p = Codec::Choose(lo, hi, quant::RoundScaleToF32Bits16Down);
        }
        quant::StoreF32(o, p.scale);
        if constexpr (kAsym) quant::StoreI32(o + 4, p.zero);
        for (int64_t i = 0; i < n; i += kPackUnit) {
          for (int j = 0; j < kPackUnit; ++j) codes[j] = Codec::Encode(xr[i + j], p);
          quant::PackCodes<kBits>(codes, kPackUnit, o + kRowHeaderBytes + (i / kPackUnit) * kBlockBytes);
        }
      }
    }
  }

  // GPTQ's fixed-scale rounding (format.h RoundInPlaceFn): the nearest of
  // the codes the quantizer may write ([1, 2^b - 1] sym, [0, 2^b - 1] asym)
  // under element i's stored scale and zero.
  static float RoundInPlace(uint8_t* row, int64_t n, int64_t i, float x) {
    using int_format_internal::Params;
    (void)n;
    uint8_t* codes = row + kRowHeaderBytes;  // the row's code stream, code i at bit i * b
    int64_t k = i;
    Params p;
    if constexpr (kGrouped) {
      uint8_t* block = row + size_t(i / kGroup) * kBlockBytes;
      p = {quant::LoadF16(block), kAsym ? int(block[2]) : Codec::kSymZero};
      codes = block + kScaleBytes;
      k = i % kGroup;
    } else {
      p = {quant::LoadF32(row), kAsym ? int(quant::LoadI32(row + 4)) : Codec::kSymZero};
    }
    x = round_util::Target(x);
    auto value = [&p](int u) { return Codec::Decode(uint8_t(u), p); };
    // Codec::Encode is the algebraic rounding; the exact products
    // scale * (u - zero) keep it within one code of the nearest.
    const int u = round_util::NearestCodeAround(x, Codec::Encode(x, p), Codec::kMinCode, Codec::kMaxCode, value);
    quant::SetCode<kBits>(codes, k, uint8_t(u));
    return value(u);
  }

  static void DequantizeRow(const uint8_t* row, float* out, int64_t n) {
    using int_format_internal::Params;
    uint8_t codes[kGrouped ? kGroup : kPackUnit];
    if constexpr (kGrouped) {
      for (int64_t g = 0; g < n / kGroup; ++g) {
        const uint8_t* block = row + size_t(g) * kBlockBytes;
        const Params p{quant::LoadF16(block), kAsym ? int(block[2]) : Codec::kSymZero};
        quant::UnpackCodes<kBits>(block + kScaleBytes, kGroup, codes);
        for (int i = 0; i < kGroup; ++i) out[g * kGroup + i] = Codec::Decode(codes[i], p);
      }
    } else {
      const Params p{quant::LoadF32(row), kAsym ? int(quant::LoadI32(row + 4)) : Codec::kSymZero};
      for (int64_t i = 0; i < n; i += kPackUnit) {
        quant::UnpackCodes<kBits>(row + kRowHeaderBytes + (i / kPackUnit) * kBlockBytes, kPackUnit, codes);
        for (int j = 0; j < kPackUnit; ++j) out[i + j] = Codec::Decode(codes[j], p);
      }
    }
  }
};

// ---- Encoding with caller-chosen parameters --------------------------------
// For methods in quant/ that choose an INT format's scale and zero themselves
// (HQQ, quant/hqq.h). Encodes `count` elements of x with Params p into IntFormat
// F's storage: for _gG formats one group (count == kGroup) into one block, for
// _channel / _tensor formats one row (count == n) into the row with its header.
// The scale is stored as given (f16 in a block, f32 in a row header), so the
// caller passes a representable one (quant::RoundScaleToF16Down /
// RoundScaleToF32Bits16Down); the zero is stored only by asymmetric formats and
// must lie in [0, 2^b - 1]. DequantizeRow then gives exactly
// Codec::Decode(Codec::Encode(x[i], p), p) for every element.
template <typename F>
void EncodeIntWithParams(const float* x, int64_t count, int_format_internal::Params p, uint8_t* out) {
  uint8_t codes[F::kGrouped ? F::kGroupSize : F::kPackUnit];
  if constexpr (F::kGrouped) {
    quant::StoreF16(out, p.scale);
    if constexpr (F::kAsymmetric) out[2] = uint8_t(p.zero);
    for (int i = 0; i < F::kGroupSize; ++i) codes[i] = F::Codec::Encode(x[i], p);
    quant::PackCodes<F::kBitsPerCode>(codes, F::kGroupSize, out + F::kScaleBytes);
  } else {
    quant::StoreF32(out, p.scale);
    if constexpr (F::kAsymmetric) quant::StoreI32(out + 4, p.zero);
    for (int64_t i = 0; i < count; i += F::kPackUnit) {
      for (int j = 0; j < F::kPackUnit; ++j) codes[j] = F::Codec::Encode(x[i + j], p);
      quant::PackCodes<F::kBitsPerCode>(codes, F::kPackUnit,
                                        out + F::kRowHeaderBytes + (i / F::kPackUnit) * F::kBlockBytes);
    }
  }
}

}  // namespace lowbit
