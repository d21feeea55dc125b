// The 16-entry non-linear code table shared by IQ4_NL and IQ4_XS (ggml's
// kvalues_iq4nl). One copy so the two formats cannot drift apart.
#pragma once

#include <cstdint>

namespace lowbit {

// Signed 8-bit levels, denser near zero: they follow the quantiles of a
// roughly Gaussian weight distribution, so a 4-bit index spends its codes
// where the weights are. Not symmetric (-127 ... 113): the scale search picks
// the sign of d so the larger-magnitude side carries the block's extreme value.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

}  // namespace lowbit
