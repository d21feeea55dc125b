// Pieces shared by the formats' RoundInPlace (format.h RoundInPlaceFn:
// GPTQ's rounding of one element with the block's scales fixed). A format
// lists the codes element i may take, in an order in which their values
// ascend (or descend), and how each decodes -- with the very expression its
// dequantizer uses, so the returned value is bit for bit what dequantize
// gives -- and these helpers pick the code whose decoded value is nearest to
// x. Candidates are compared by their decoded floats, never by an algebraic
// rounding alone: for offset (asymmetric) and non-linear codes the algebra
// can be one code off at a decision boundary.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace lowbit::round_util {

// What RoundInPlace rounds: NaN counts as 0 and +-inf as +-FLT_MAX, so an
// infinite x gets the extreme code and no input decodes to inf or NaN.
inline float Target(float x) {
  if (std::isnan(x)) return 0.0f;
  return std::clamp(x, -FLT_MAX, FLT_MAX);
}

// a is strictly nearer to x than b. Distances in double, where the
// difference of two floats cancels nothing; when they still tie because x is
// so far beyond both that the difference rounds away (x = FLT_MAX), the one
// on x's side wins.
inline bool Nearer(float x, float a, float b) {
  const double da = std::fabs(double(x) - double(a)), db = std::fabs(double(x) - double(b));
  if (da != db) return da < db;
  if (x > a && x > b) return a > b;
  if (x < a && x < b) return a < b;
  return false;
}

// The code c in [lo, hi] whose value(c) is nearest to x, for codes whose
// value is monotone in the code (ascending or descending; flats allowed):
// c * step - offset rounded in float is, whatever the rounding, and so is
// a code book in ascending order. A binary search finds the first code on
// or past x; the nearest is it or its predecessor, the only candidates on
// either side of x. log2(hi - lo + 1) + 2 evaluations, exact for any such
// sequence. On a tie the lower code wins (deterministic). x must have gone
// through Target.
template <typename Value>
int NearestMonotoneCode(float x, int lo, int hi, Value value) {
  const bool ascending = !(value(hi) < value(lo));
  int first = lo, end = hi + 1;  // first code in [lo, hi] on or past x, hi + 1 if none
  while (first < end) {
    const int mid = first + (end - first) / 2;
    const float v = value(mid);
    if (ascending ? v >= x : v <= x) {
      end = mid;
    } else {
      first = mid + 1;
    }
  }
  if (first > hi) return hi;
  if (first == lo) return lo;
  return Nearer(x, value(first), value(first - 1)) ? first : first - 1;
}

// For large linear code spaces (c * scale with an exact product): `guess`
// from an algebraic rounding is at most one code off, so only guess - 1 ..
// guess + 1 (clamped to [lo, hi]) are compared.
template <typename Value>
int NearestCodeAround(float x, int guess, int lo, int hi, Value value) {
  guess = std::clamp(guess, lo, hi);
  return NearestMonotoneCode(x, std::max(lo, guess - 1), std::min(hi, guess + 1), value);
}

// round(y) clamped to [lo, hi] as an int; NaN gives lo. For the guesses of
// NearestCodeAround, where y = x / scale may be +-inf or NaN.
inline int ClampedRound(float y, int lo, int hi) {
  if (std::isnan(y)) return lo;
  return int(std::clamp(std::nearbyint(y), float(lo), float(hi)));
}

}  // namespace lowbit::round_util
