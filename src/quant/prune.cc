#include "quant/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace lowbit {

std::string PruneSpec::ToString() const {
  switch (kind) {
    case Kind::kNone: return "none";
    case Kind::kMagnitude: return fmt::format("magnitude:{}", fraction);
    case Kind::kTwoFour: return "2:4";
  }
  return "?";
}

PruneSpec ParsePruneSpec(const std::string& text) {
  PruneSpec s;
  if (text.empty() || text == "none") return s;
  if (text == "2:4") {
    s.kind = PruneSpec::Kind::kTwoFour;
    return s;
  }
  if (text.starts_with("magnitude:")) {
    const std::string v = text.substr(10);
    char* end = nullptr;
    const double f = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !(f >= 0 && f < 1))
      Fail("--prune '{}': the magnitude fraction must be a number in [0, 1)", text);
    s.kind = PruneSpec::Kind::kMagnitude;
    s.fraction = f;
    return s;
  }
  Fail("--prune '{}': expected magnitude:FRACTION (e.g. magnitude:0.5) or 2:4", text);
}

int64_t Prune(const PruneSpec& spec, float* w, int64_t rows, int64_t n) {
  const int64_t size = rows * n;
  if (spec.kind == PruneSpec::Kind::kMagnitude) {
    const int64_t k = std::llround(spec.fraction * double(size));
    if (k > 0) {
      std::vector<int64_t> idx(static_cast<size_t>(size));
      std::iota(idx.begin(), idx.end(), 0);
      auto less = [&](int64_t a, int64_t b) {
        const float fa = std::fabs(w[a]), fb = std::fabs(w[b]);
        return fa < fb || (fa == fb && a < b);
      };
      std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), less);
      for (int64_t i = 0; i < k; ++i) w[idx[size_t(i)]] = 0.0f;
    }
  } else if (spec.kind == PruneSpec::Kind::kTwoFour) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j + 4 <= n; j += 4) {
        float* g = w + r * n + j;
        int order[4] = {0, 1, 2, 3};
        std::stable_sort(order, order + 4, [&](int a, int b) { return std::fabs(g[a]) < std::fabs(g[b]); });
        g[order[0]] = 0.0f;
        g[order[1]] = 0.0f;
      }
  }
  int64_t zeros = 0;
  for (int64_t i = 0; i < size; ++i) zeros += w[i] == 0.0f;
  return zeros;
}

}  // namespace lowbit
