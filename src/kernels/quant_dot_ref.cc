// Scalar references of the quantized dot products (see quant_dot_ref.h).
#include "kernels/quant_dot_ref.h"

#include <cstring>

#include "core/half.h"
#include "formats/ggml_kquants.h"
#include "formats/ggml_legacy.h"

namespace lowbit {

namespace {

template <typename Block>
Block Load(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

// Per-block integer sums of Q4_0 x Q8_0 (out[0]) and the float scale.
void Q4_0Block(const uint8_t* wp, const uint8_t* ap, int32_t* out, float* scale) {
  const auto w = Load<Q4_0Format::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  int32_t sum = 0;
  for (int j = 0; j < 16; ++j) {
    sum += ((w.qs[j] & 15) - 8) * a.qs[j];
    sum += ((w.qs[j] >> 4) - 8) * a.qs[j + 16];
  }
  out[0] = sum;
  out[1] = 0;
  *scale = F16ToF32(w.d) * F16ToF32(a.d);
}

void Q8_0Block(const uint8_t* wp, const uint8_t* ap, int32_t* out, float* scale) {
  const auto w = Load<Q8_0Format::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  int32_t sum = 0;
  for (int j = 0; j < 32; ++j) sum += w.qs[j] * a.qs[j];
  out[0] = sum;
  out[1] = 0;
  *scale = F16ToF32(w.d) * F16ToF32(a.d);
}

// Q4_K x Q8_K: out[0] = sum_j sc_j sum q a, out[1] = sum_j m_j sum a.
void Q4_KBlock(const uint8_t* wp, const uint8_t* ap, int32_t* out) {
  const auto w = Load<Q4_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int32_t sumi = 0, summ = 0;
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    Q4KScaleMin(w.scales, j, &sc, &m);
    const uint8_t* qs = w.qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    int32_t dot = 0, asum = 0;
    for (int l = 0; l < 32; ++l) {
      dot += ((qs[l] >> shift) & 15) * a.qs[32 * j + l];
      asum += a.qs[32 * j + l];
    }
    sumi += sc * dot;
    summ += m * asum;
  }
  out[0] = sumi;
  out[1] = summ;
}

}  // namespace

float VecDotQ4_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t s[2];
    float scale;
    Q4_0Block(w + 18 * b, a + 34 * b, s, &scale);
    const float term = float(s[0]) * scale;
    sum += term;
  }
  return sum;
}

float VecDotQ8_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t s[2];
    float scale;
    Q8_0Block(w + 34 * b, a + 34 * b, s, &scale);
    const float term = float(s[0]) * scale;
    sum += term;
  }
  return sum;
}

float VecDotQ4_KQ8_KRef(const uint8_t* w, const uint8_t* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* wp = w + sizeof(Q4_KFormat::Block) * size_t(b);
    const uint8_t* ap = a + sizeof(Q8_KFormat::Block) * size_t(b);
    int32_t s[2];
    Q4_KBlock(wp, ap, s);
    const auto wb = Load<Q4_KFormat::Block>(wp);
    float da;
    std::memcpy(&da, ap, sizeof(float));
    const float scale = da * F16ToF32(wb.d), min_scale = da * F16ToF32(wb.dmin);
    const float term = float(s[0]) * scale - float(s[1]) * min_scale;
    sum += term;
  }
  return sum;
}

void BlockSumsQ4_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  float scale;
  for (int64_t b = 0; b < n / 32; ++b) Q4_0Block(w + 18 * b, a + 34 * b, out + 2 * b, &scale);
}

void BlockSumsQ8_0Q8_0Ref(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  float scale;
  for (int64_t b = 0; b < n / 32; ++b) Q8_0Block(w + 34 * b, a + 34 * b, out + 2 * b, &scale);
}

void BlockSumsQ4_KQ8_KRef(const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  for (int64_t b = 0; b < n / 256; ++b)
    Q4_KBlock(w + sizeof(Q4_KFormat::Block) * size_t(b), a + sizeof(Q8_KFormat::Block) * size_t(b), out + 2 * b);
}

}  // namespace lowbit
