// Scalar FP8 conversions (OCP 8-bit floating point, as NVIDIA Hopper and
// AMD MI300 implement it): E4M3 ("e4m3fn") and E5M2. Encoding rounds to
// nearest, ties to even, and saturates: finite values (and infinities)
// beyond the largest finite code become that code, NaN stays NaN. The
// sign of zero is kept, so -0 encodes to 0x80.
//
//   E4M3: S EEEE MMM, bias 7, no infinities; S.1111.111 is NaN, so the
//         largest finite value is S.1111.110 = 1.75 * 2^8 = 448;
//         subnormals m/8 * 2^-6 down to 2^-9.
//   E5M2: S EEEEE MM, bias 15, IEEE-like: S.11111.00 = inf, S.11111.xx = NaN;
//         largest finite 1.75 * 2^15 = 57344; subnormals m/4 * 2^-14 down
//         to 2^-16.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lowbit {

namespace fp8_internal {

// A minifloat with kExp exponent bits, kMant mantissa bits and bias
// 2^(kExp-1)-1. kIeee: the top exponent is inf/NaN (E5M2); otherwise only
// the all-ones code is NaN (E4M3).
template <int kExp, int kMant, bool kIeee>
struct Minifloat {
  static constexpr int kBias = (1 << (kExp - 1)) - 1;
  static constexpr uint8_t kMaxFiniteCode =
      kIeee ? uint8_t((((1 << kExp) - 2) << kMant) | ((1 << kMant) - 1))  // exponent 11110, mantissa all ones
            : uint8_t(((1 << kExp) - 1) << kMant | ((1 << kMant) - 2));   // 1111.110
  static constexpr uint8_t kNanCode = 0x7F;

  static float Decode(uint8_t code) {
    const float sign = (code & 0x80) ? -1.0f : 1.0f;
    const int exp = (code >> kMant) & ((1 << kExp) - 1);
    const int mant = code & ((1 << kMant) - 1);
    if (kIeee && exp == (1 << kExp) - 1)
      return mant == 0 ? sign * std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    if (!kIeee && (code & 0x7F) == 0x7F) return std::numeric_limits<float>::quiet_NaN();
    if (exp == 0) return sign * std::ldexp(float(mant), 1 - kBias - kMant);  // subnormal
    return sign * std::ldexp(float((1 << kMant) | mant), exp - kBias - kMant);
  }

  // 448 for E4M3, 57344 for E5M2.
  static constexpr float kMaxFinite = [] {
    const int top_exp = (kIeee ? (1 << kExp) - 2 : (1 << kExp) - 1) - kBias;
    const int top_mant = kIeee ? (1 << kMant) - 1 : (1 << kMant) - 2;
    float v = float((1 << kMant) + top_mant);
    for (int i = 0; i < top_exp - kMant; ++i) v *= 2.0f;
    return v;
  }();

  static uint8_t Encode(float x) {
    if (std::isnan(x)) return kNanCode;
    const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
    const float a = std::fabs(x);
    if (a >= kMaxFinite) return sign | kMaxFiniteCode;
    // Quantum of the binade holding a (the subnormal quantum below the
    // smallest normal); scaling by powers of two is exact, and nearbyint in
    // the default rounding mode rounds ties to even.
    int e;
    std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
    const int quantum_exp = std::max(e - 1, 1 - kBias) - kMant;
    const int steps = int(std::nearbyint(std::ldexp(a, -quantum_exp)));  // a / quantum
    // steps < 2^(kMant+1) except when rounding carries into the next binade,
    // which the same formula handles: the code is exponent field * 2^kMant +
    // mantissa, and carrying adds one to the exponent field.
    const int biased = quantum_exp + kMant + kBias;  // exponent field of the binade (0 for subnormals)
    const int code = (steps < (1 << kMant)) ? steps : (std::max(biased, 1) << kMant) + (steps - (1 << kMant));
    if (code > kMaxFiniteCode) return sign | kMaxFiniteCode;
    return uint8_t(sign | code);
  }
};

}  // namespace fp8_internal

using Fp8E4M3 = fp8_internal::Minifloat<4, 3, false>;
using Fp8E5M2 = fp8_internal::Minifloat<5, 2, true>;

inline float Fp8E4M3ToF32(uint8_t code) { return Fp8E4M3::Decode(code); }
inline uint8_t F32ToFp8E4M3(float x) { return Fp8E4M3::Encode(x); }
inline float Fp8E5M2ToF32(uint8_t code) { return Fp8E5M2::Decode(code); }
inline uint8_t F32ToFp8E5M2(float x) { return Fp8E5M2::Encode(x); }

}  // namespace lowbit
