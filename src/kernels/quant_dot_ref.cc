// Scalar references of the quantized dot products (see quant_dot_ref.h). Each
// block function decodes its codes exactly as the datasheet in formats/ says.
#include "kernels/quant_dot_ref.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/half.h"
#include "formats/all_formats.h"
#include "formats/iq4_table.h"

namespace lowbit {

namespace {

template <typename Block>
Block Load(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

// Sum of c_i * a_i, and the abs bound: for a code c = q - offset stored as
// q >= 0, (|c| + 2 offset) |a| >= (q + offset) |a| bounds whatever partial
// sums a kernel forms from q a and offset a separately.
struct Sums {
  int32_t dot = 0, abs = 0, asum = 0, aabs = 0;
  void Add(int c, int a, int offset = 0) {
    dot += c * a;
    abs += (std::abs(c) + 2 * offset) * std::abs(a);
    asum += a;
    aabs += std::abs(a);
  }
};

// Element e (0..31) of a Q4_0-style nibble array: low nibbles then high.
int Nibble(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

// Single-scale 32-element block against Q8_0: term = sum * dw * da.
BlockDot Simple(int32_t dot, int32_t abs, float dw, float da) {
  BlockDot r;
  r.ints[0] = dot;
  const float scale = dw * da;
  r.term = float(dot) * scale;
  r.abs = float(abs) * std::fabs(scale);
  return r;
}

BlockDot BlockDotQ4_0xQ8_0Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q4_0Format::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add(Nibble(w.qs, e) - 8, a.qs[e], 8);
  return Simple(s.dot, s.abs, F16ToF32(w.d), F16ToF32(a.d));
}

BlockDot BlockDotQ8_0xQ8_0Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q8_0Format::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add(w.qs[e], a.qs[e]);
  return Simple(s.dot, s.abs, F16ToF32(w.d), F16ToF32(a.d));
}

BlockDot BlockDotQ5_0xQ8_0Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q5_0Format::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add((Nibble(w.qs, e) | (((qh >> e) & 1) << 4)) - 16, a.qs[e], 16);
  return Simple(s.dot, s.abs, F16ToF32(w.d), F16ToF32(a.d));
}

BlockDot BlockDotIQ4_NLxQ8_0Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<IQ4_NLFormat::Block>(wp);
  const auto a = Load<Q8_0Format::Block>(ap);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add(kIq4NlValues[Nibble(w.qs, e)], a.qs[e]);
  return Simple(s.dot, s.abs, F16ToF32(w.d), F16ToF32(a.d));
}

// Q4_1 / Q5_1 against Q8_1: d_w d_a sum q a + m_w s_a (s_a = d_a sum a, f16).
BlockDot MinBlock(const Sums& s, float dw, float mw, float da, float sa) {
  BlockDot r;
  r.ints[0] = s.dot;
  const float scale = dw * da, min_term = mw * sa;
  const float codes = float(s.dot) * scale;
  r.term = codes + min_term;
  r.abs = float(s.abs) * std::fabs(scale) + std::fabs(min_term);
  return r;
}

BlockDot BlockDotQ4_1xQ8_1Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q4_1Format::Block>(wp);
  const auto a = Load<Q8_1Format::Block>(ap);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add(Nibble(w.qs, e), a.qs[e]);
  return MinBlock(s, F16ToF32(w.d), F16ToF32(w.m), F16ToF32(a.d), F16ToF32(a.s));
}

BlockDot BlockDotQ5_1xQ8_1Ref(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q5_1Format::Block>(wp);
  const auto a = Load<Q8_1Format::Block>(ap);
  uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  Sums s;
  for (int e = 0; e < 32; ++e) s.Add(Nibble(w.qs, e) | (((qh >> e) & 1) << 4), a.qs[e]);
  return MinBlock(s, F16ToF32(w.d), F16ToF32(w.m), F16ToF32(a.d), F16ToF32(a.s));
}

// K-quant super-blocks against Q8_K: codes[i] (the code of element i) and the
// signed scale of each sub-block of `sub` elements; optional mins.
BlockDot SuperBlock(const int* codes, const int* scales, const int* mins, int sub, float d, float dmin,
                    const Q8_KFormat::Block& a, int offset = 0) {
  BlockDot r;
  int64_t abs_codes = 0, abs_mins = 0;
  for (int j = 0; j < 256 / sub; ++j) {
    Sums s;
    for (int l = 0; l < sub; ++l) s.Add(codes[sub * j + l], a.qs[sub * j + l], offset);
    r.ints[0] += scales[j] * s.dot;
    abs_codes += std::abs(scales[j]) * int64_t(s.abs);
    if (mins) {
      r.ints[1] += mins[j] * s.asum;
      abs_mins += std::abs(mins[j]) * int64_t(s.aabs);
    }
  }
  const float scale = a.d * d, min_scale = a.d * dmin;
  const float codes_term = float(r.ints[0]) * scale, min_term = float(r.ints[1]) * min_scale;
  r.term = codes_term - min_term;
  r.abs = float(abs_codes) * std::fabs(scale) + float(abs_mins) * std::fabs(min_scale);
  return r;
}

BlockDot BlockDotQ4_KxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q4_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    Q4KScaleMin(w.scales, j, &sc[j], &m[j]);
    for (int l = 0; l < 32; ++l) codes[32 * j + l] = (w.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
  }
  return SuperBlock(codes, sc, m, 32, F16ToF32(w.d), F16ToF32(w.dmin), a);
}

BlockDot BlockDotQ5_KxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q5_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    Q4KScaleMin(w.scales, j, &sc[j], &m[j]);
    for (int l = 0; l < 32; ++l)
      codes[32 * j + l] = ((w.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15) | (((w.qh[l] >> j) & 1) << 4);
  }
  return SuperBlock(codes, sc, m, 32, F16ToF32(w.d), F16ToF32(w.dmin), a);
}

BlockDot BlockDotQ6_KxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q6_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[16];
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* ql = w.ql + 64 * h;
      const uint8_t qh = w.qh[32 * h + l];
      codes[128 * h + l] = ((ql[l] & 15) | ((qh & 3) << 4)) - 32;
      codes[128 * h + 32 + l] = ((ql[l + 32] & 15) | (((qh >> 2) & 3) << 4)) - 32;
      codes[128 * h + 64 + l] = ((ql[l] >> 4) | (((qh >> 4) & 3) << 4)) - 32;
      codes[128 * h + 96 + l] = ((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)) - 32;
    }
  for (int j = 0; j < 16; ++j) sc[j] = w.scales[j];
  return SuperBlock(codes, sc, nullptr, 16, F16ToF32(w.d), 0.0f, a, 32);
}

BlockDot BlockDotQ3_KxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q3_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[16];
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    const int low = (w.qs[32 * h + l] >> (2 * s)) & 3;
    const int high = (w.hmask[i % 32] >> (i / 32)) & 1;
    codes[i] = (low | (high << 2)) - 4;
  }
  for (int j = 0; j < 16; ++j) sc[j] = Q3KScale(w.scales, j);
  return SuperBlock(codes, sc, nullptr, 16, F16ToF32(w.d), 0.0f, a, 4);
}

BlockDot BlockDotQ2_KxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<Q2_KFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[16], m[16];
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    codes[i] = (w.qs[32 * h + l] >> (2 * s)) & 3;
  }
  for (int j = 0; j < 16; ++j) sc[j] = w.scales[j] & 15, m[j] = w.scales[j] >> 4;
  return SuperBlock(codes, sc, m, 16, F16ToF32(w.d), F16ToF32(w.dmin), a);
}

BlockDot BlockDotIQ4_XSxQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<IQ4_XSFormat::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = IQ4XSScale(w.scales_h, w.scales_l, j);
    for (int e = 0; e < 32; ++e) codes[32 * j + e] = kIq4NlValues[Nibble(w.qs + 16 * j, e)];
  }
  return SuperBlock(codes, sc, nullptr, 32, F16ToF32(w.d), 0.0f, a);
}

BlockDot BlockDotTQ2_0xQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<TQ2_0Format::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[8];
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    codes[i] = ((w.qs[32 * h + l] >> (2 * s)) & 3) - 1;
  }
  for (int& v : sc) v = 1;
  return SuperBlock(codes, sc, nullptr, 32, F16ToF32(w.d), 0.0f, a, 1);
}

// TQ1_0: trit i of a byte is the top base-3 digit of the byte times 3^i.
int Trit(uint8_t byte, int i) {
  static constexpr int kPow3[5] = {1, 3, 9, 27, 81};
  return (uint8_t(byte * kPow3[i]) * 3) >> 8;
}

BlockDot BlockDotTQ1_0xQ8_KRef(const uint8_t* wp, const uint8_t* ap) {
  const auto w = Load<TQ1_0Format::Block>(wp);
  const auto a = Load<Q8_KFormat::Block>(ap);
  int codes[256], sc[8];
  for (int i = 0; i < 5; ++i) {
    for (int m = 0; m < 32; ++m) codes[m + 32 * i] = Trit(w.qs[m], i) - 1;
    for (int m = 0; m < 16; ++m) codes[160 + m + 16 * i] = Trit(w.qs[32 + m], i) - 1;
  }
  for (int i = 0; i < 4; ++i)
    for (int m = 0; m < 4; ++m) codes[240 + m + 4 * i] = Trit(w.qh[m], i) - 1;
  for (int& v : sc) v = 1;
  return SuperBlock(codes, sc, nullptr, 32, F16ToF32(w.d), 0.0f, a, 1);
}

template <typename F>
constexpr QuantDotRef Ref(BlockDotFn fn) {
  return {fn, F::kBlockSize, int(sizeof(typename F::Block)), int(sizeof(typename F::Activation::Block))};
}

struct Entry {
  DType type;
  QuantDotRef ref;
};

const Entry kRefs[] = {
    {DTypeOf<Q4_0Format>(), Ref<Q4_0Format>(BlockDotQ4_0xQ8_0Ref)},     {DTypeOf<Q8_0Format>(), Ref<Q8_0Format>(BlockDotQ8_0xQ8_0Ref)},
    {DTypeOf<Q5_0Format>(), Ref<Q5_0Format>(BlockDotQ5_0xQ8_0Ref)},     {DTypeOf<IQ4_NLFormat>(), Ref<IQ4_NLFormat>(BlockDotIQ4_NLxQ8_0Ref)},
    {DTypeOf<Q4_1Format>(), Ref<Q4_1Format>(BlockDotQ4_1xQ8_1Ref)},     {DTypeOf<Q5_1Format>(), Ref<Q5_1Format>(BlockDotQ5_1xQ8_1Ref)},
    {DTypeOf<Q4_KFormat>(), Ref<Q4_KFormat>(BlockDotQ4_KxQ8_KRef)},     {DTypeOf<Q5_KFormat>(), Ref<Q5_KFormat>(BlockDotQ5_KxQ8_KRef)},
    {DTypeOf<Q6_KFormat>(), Ref<Q6_KFormat>(BlockDotQ6_KxQ8_KRef)},     {DTypeOf<Q3_KFormat>(), Ref<Q3_KFormat>(BlockDotQ3_KxQ8_KRef)},
    {DTypeOf<Q2_KFormat>(), Ref<Q2_KFormat>(BlockDotQ2_KxQ8_KRef)},     {DTypeOf<IQ4_XSFormat>(), Ref<IQ4_XSFormat>(BlockDotIQ4_XSxQ8_KRef)},
    {DTypeOf<TQ2_0Format>(), Ref<TQ2_0Format>(BlockDotTQ2_0xQ8_KRef)}, {DTypeOf<TQ1_0Format>(), Ref<TQ1_0Format>(BlockDotTQ1_0xQ8_KRef)},
};

}  // namespace

const QuantDotRef* FindQuantDotRef(DType type) {
  for (const Entry& e : kRefs)
    if (e.type == type) return &e.ref;
  return nullptr;
}

float VecDotRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / ref.block_size; ++b)
    sum += ref.block(w + size_t(b) * size_t(ref.w_block_bytes), a + size_t(b) * size_t(ref.a_block_bytes)).term;
  return sum;
}

double VecDotAbsRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n) {
  double sum = 0.0;
  for (int64_t b = 0; b < n / ref.block_size; ++b)
    sum += ref.block(w + size_t(b) * size_t(ref.w_block_bytes), a + size_t(b) * size_t(ref.a_block_bytes)).abs;
  return sum;
}

void BlockSumsRef(const QuantDotRef& ref, const uint8_t* w, const uint8_t* a, int64_t n, int32_t* out) {
  for (int64_t b = 0; b < n / ref.block_size; ++b) {
    const BlockDot d = ref.block(w + size_t(b) * size_t(ref.w_block_bytes), a + size_t(b) * size_t(ref.a_block_bytes));
    out[2 * b] = d.ints[0];
    out[2 * b + 1] = d.ints[1];
  }
}

}  // namespace lowbit
