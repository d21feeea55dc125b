// Pruning before quantization: zeroes weights so the quantized tensor holds
// (near) exact zeros there.
//   magnitude:F  unstructured: the round(F * size) weights of smallest |w| in
//                each tensor are zeroed (ties broken by position).
//   2:4          semi-structured: in every group of 4 consecutive input
//                weights of a row, the 2 of smallest |w| are zeroed (exactly
//                50%; a row length that is not a multiple of 4 leaves its tail
//                group of 1-3 weights as it is).
#pragma once

#include <cstdint>
#include <string>

namespace lowbit {

struct PruneSpec {
  enum class Kind { kNone, kMagnitude, kTwoFour } kind = Kind::kNone;
  double fraction = 0;  // kMagnitude
  std::string ToString() const;
};

// Parses "magnitude:0.5" or "2:4"; throws Error otherwise.
PruneSpec ParsePruneSpec(const std::string& text);

// Prunes the row-major (rows, n) tensor in place; returns the number of
// weights that are zero afterwards.
int64_t Prune(const PruneSpec& spec, float* w, int64_t rows, int64_t n);

}  // namespace lowbit
