// Packing and unpacking of the row-interleaved layouts (packed.h), the
// activations they multiply, the layout's scalar reference kernel and the
// MatMulPacked driver. Formats of the packed types: formats/ggml_legacy.h
// (Q4_0, Q8_0) and formats/ggml_kquants.h (Q4_K, Q8_K).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/stream_buffer.h"
#include "formats/all_formats.h"
#include "formats/format.h"
#include "kernels/fast_paths.h"
#include "kernels/packed.h"
#include "kernels/quant_dot_ref.h"

namespace lowbit {

namespace {

constexpr int64_t R = kPackRows;

bool IsQ4_0(DType t) { return t == DTypeOf<Q4_0Format>(); }
bool IsQ8_0(DType t) { return t == DTypeOf<Q8_0Format>(); }
bool IsQ4_K(DType t) { return t == DTypeOf<Q4_KFormat>(); }

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

int64_t CodeBytes(DType t) { return IsQ4_0(t) ? 256 : 512; }

// --- Q4_0 / Q8_0 -----------------------------------------------------------

// Q4_0's packed byte is the ggml byte (low nibble element j, high j + 16);
// Q8_0's is the code offset to unsigned.
void PackLegacyGroup(DType type, const uint8_t* rows, int64_t nb, uint8_t* g) {
  const FormatInfo& f = GetFormat(type);
  const int64_t row_bytes = f.RowBytes(nb * 32), code_bytes = CodeBytes(type);
  const uint8_t flip = IsQ4_0(type) ? 0 : 0x80;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* scales = g + PackedScaleOffset(b, code_bytes);
    uint8_t* codes = g + PackedCodesOffset(b, code_bytes);
    for (int64_t i = 0; i < R; ++i) {
      const uint8_t* blk = rows + i * row_bytes + b * f.block_bytes;
      std::memcpy(scales + 2 * i, blk, 2);  // d
      for (int k = 0; k < code_bytes / 64; ++k)
        for (int c = 0; c < 4; ++c) codes[k * 64 + 4 * i + c] = uint8_t(blk[2 + 4 * k + c] ^ flip);
    }
  }
}

void UnpackLegacyGroup(DType type, const uint8_t* g, int64_t nb, uint8_t* rows) {
  const FormatInfo& f = GetFormat(type);
  const int64_t row_bytes = f.RowBytes(nb * 32), code_bytes = CodeBytes(type);
  const uint8_t flip = IsQ4_0(type) ? 0 : 0x80;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* scales = g + PackedScaleOffset(b, code_bytes);
    const uint8_t* codes = g + PackedCodesOffset(b, code_bytes);
    for (int64_t i = 0; i < R; ++i) {
      uint8_t* blk = rows + i * row_bytes + b * f.block_bytes;
      std::memcpy(blk, scales + 2 * i, 2);
      for (int k = 0; k < code_bytes / 64; ++k)
        for (int c = 0; c < 4; ++c) blk[2 + 4 * k + c] = uint8_t(codes[k * 64 + 4 * i + c] ^ flip);
    }
  }
}

// --- Q4_K ---------------------------------------------------------------------

// The 6-bit header (packed.h) from the 256 8-bit values u, and back.
void EncodeQ4KHeader(const uint8_t (&u)[256], uint8_t* h) {
  for (int b = 0; b < 64; ++b) {
    h[b] = uint8_t((u[b] & 15) | (u[64 + b] & 15) << 4);
    h[64 + b] = uint8_t((u[128 + b] & 15) | (u[192 + b] & 15) << 4);
    h[128 + b] = uint8_t(u[b] >> 4 | u[64 + b] >> 4 << 2 | u[128 + b] >> 4 << 4 | u[192 + b] >> 4 << 6);
  }
}

void DecodeQ4KHeader(const uint8_t* h, uint8_t (&u)[256]) {
  for (int b = 0; b < 64; ++b) {
    const int hi = h[128 + b];
    u[b] = uint8_t((h[b] & 15) | (hi & 3) << 4);
    u[64 + b] = uint8_t(h[b] >> 4 | (hi >> 2 & 3) << 4);
    u[128 + b] = uint8_t((h[64 + b] & 15) | (hi >> 4 & 3) << 4);
    u[192 + b] = uint8_t(h[64 + b] >> 4 | (hi >> 6) << 4);
  }
}

// Where row i's scale of sub-block j, and its min, sit in the header's u.
constexpr int Q4KScaleIndex(int64_t i, int j) { return int(j * R + i); }
constexpr int Q4KMinIndex(int64_t i, int j) { return int(128 + (j / 2) * 2 * R + 2 * i + (j & 1)); }

void PackQ4KGroup(const uint8_t* rows, int64_t ns, uint8_t* g) {
  const int64_t row_bytes = ns * int64_t(sizeof(Q4_KFormat::Block));
  for (int64_t s = 0; s < ns; ++s) {
    uint8_t* out = g + s * kPackedQ4KSuperBytes;
    uint8_t* codes = out + kPackedQ4KHeaderBytes;
    uint8_t u[256];
    for (int64_t i = 0; i < R; ++i) {
      const uint8_t* blk = rows + i * row_bytes + s * int64_t(sizeof(Q4_KFormat::Block));
      std::memcpy(out + 2 * i, blk, 2);           // d
      std::memcpy(out + 32 + 2 * i, blk + 2, 2);  // dmin
      const uint8_t* scales = blk + 4;
      for (int j = 0; j < 8; ++j) {
        int s6, m6;
        Q4KScaleMin(scales, j, &s6, &m6);
        u[Q4KScaleIndex(i, j)] = uint8_t(s6);
        u[Q4KMinIndex(i, j)] = uint8_t(m6);
      }
      const uint8_t* qs = blk + 16;
      for (int p = 0; p < 4; ++p)
        for (int k = 0; k < 8; ++k)
          for (int c = 0; c < 4; ++c) {
            const uint8_t v = qs[32 * p + 4 * k + c];  // low: 64p + 4k + c, high: 64p + 32 + 4k + c
            codes[(p * 8 + k) * 64 + 4 * i + c] = v;
          }
    }
    EncodeQ4KHeader(u, out + 64);
  }
}

void UnpackQ4KGroup(const uint8_t* g, int64_t ns, uint8_t* rows) {
  const int64_t row_bytes = ns * int64_t(sizeof(Q4_KFormat::Block));
  for (int64_t s = 0; s < ns; ++s) {
    const uint8_t* in = g + s * kPackedQ4KSuperBytes;
    const uint8_t* codes = in + kPackedQ4KHeaderBytes;
    uint8_t u[256];
    DecodeQ4KHeader(in + 64, u);
    for (int64_t i = 0; i < R; ++i) {
      uint8_t* blk = rows + i * row_bytes + s * int64_t(sizeof(Q4_KFormat::Block));
      std::memcpy(blk, in + 2 * i, 2);
      std::memcpy(blk + 2, in + 32 + 2 * i, 2);
      int s6[8], m6[8];
      for (int j = 0; j < 8; ++j) {
        s6[j] = u[Q4KScaleIndex(i, j)];
        m6[j] = u[Q4KMinIndex(i, j)];
      }
      uint8_t* scales = blk + 4;  // the inverse of Q4KScaleMin
      for (int j = 0; j < 4; ++j) {
        scales[j] = uint8_t(s6[j] | (s6[j + 4] >> 4) << 6);
        scales[j + 4] = uint8_t(m6[j] | (m6[j + 4] >> 4) << 6);
        scales[j + 8] = uint8_t((s6[j + 4] & 15) | (m6[j + 4] & 15) << 4);
      }
      uint8_t* qs = blk + 16;
      for (int p = 0; p < 4; ++p)
        for (int k = 0; k < 8; ++k)
          for (int c = 0; c < 4; ++c) qs[32 * p + 4 * k + c] = codes[(p * 8 + k) * 64 + 4 * i + c];
    }
  }
}

}  // namespace

bool HasPackedLayout(DType type) { return IsQ4_0(type) || IsQ8_0(type) || IsQ4_K(type); }

namespace {

// Packed group bytes of w; 0 when w does not qualify.
int64_t PackedGroupBytes(const TensorView& w) {
  if (!HasPackedLayout(w.type) || w.shape.size() != 2) return 0;
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const FormatInfo& f = GetFormat(w.type);
  if (rows <= 0 || rows % R != 0 || cols <= 0 || cols % f.block_size != 0) return 0;
  const int64_t nblk = cols / f.block_size;
  return IsQ4_K(w.type) ? nblk * kPackedQ4KSuperBytes : PackedLegacyGroupBytes(nblk, CodeBytes(w.type));
}

}  // namespace

size_t PackedBytes(const TensorView& w) { return size_t(PackedGroupBytes(w) * (w.shape.empty() ? 0 : w.shape[0] / R)); }

std::unique_ptr<PackedWeights> PackWeights(const TensorView& w, ThreadPool& pool, uint8_t* into) {
  const int64_t group_bytes = PackedGroupBytes(w);
  if (group_bytes == 0) return nullptr;
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const FormatInfo& f = GetFormat(w.type);
  const int64_t nblk = cols / f.block_size;
  auto p = std::make_unique<PackedWeights>();
  p->type = w.type;
  p->rows = rows;
  p->cols = cols;
  p->group_bytes = group_bytes;
  if (into == nullptr) {
    p->owned = MakeStreamBuffer<uint8_t>(PackedBytes(w), w.name.c_str());
    into = p->owned.get();
  }
  LOWBIT_CHECK(reinterpret_cast<uintptr_t>(into) % 64 == 0);
  p->data = into;
  const auto* src = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = f.RowBytes(cols);
  PackedWeights* pw = p.get();
  pool.ParallelFor(rows / R, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* out = into + g * pw->group_bytes;
      std::memset(out, 0, size_t(pw->group_bytes));
      if (IsQ4_K(pw->type)) {
        PackQ4KGroup(src + g * R * row_bytes, nblk, out);
      } else {
        PackLegacyGroup(pw->type, src + g * R * row_bytes, nblk, out);
      }
    }
  });
  return p;
}

void UnpackWeights(const PackedWeights& p, uint8_t* out) {
  const FormatInfo& f = GetFormat(p.type);
  const int64_t row_bytes = f.RowBytes(p.cols), nblk = p.cols / f.block_size;
  for (int64_t g = 0; g < p.rows / R; ++g) {
    if (IsQ4_K(p.type)) {
      UnpackQ4KGroup(p.Group(g), nblk, out + g * R * row_bytes);
    } else {
      UnpackLegacyGroup(p.type, p.Group(g), nblk, out + g * R * row_bytes);
    }
  }
}

PackedActivations QuantizePackedActivations(DType weight_type, const float* x, int64_t n, int64_t cols,
                                            ThreadPool& pool) {
  LOWBIT_CHECK(HasPackedLayout(weight_type));
  const FormatInfo& af = GetFormat(GetFormat(weight_type).activation);
  const bool k = IsQ4_K(weight_type);
  PackedActivations a;
  a.n = n;
  a.cols = cols;
  a.nblk = cols / af.block_size;
  a.sums_per_row = k ? a.nblk * 4 : a.nblk;
  a.codes.reset(new int8_t[size_t(n * cols)]);
  a.scale.reset(new float[size_t(n * a.nblk)]);
  a.sums.reset(new int32_t[size_t(n * a.sums_per_row)]);
  const int32_t factor = IsQ4_0(weight_type) ? -8 : -128;  // unused for Q8_K
  pool.ParallelFor(n, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      QuantizeActivationsSplit(af.id, x + t * cols, cols, a.codes.get() + t * cols, a.scale.get() + t * a.nblk,
                               a.sums.get() + t * a.sums_per_row, factor);
  });
  return a;
}

// The layout's reference: the SIMD kernel's integer sums and float steps, one
// lane at a time (float(ints) * (dw * da) added with one fused multiply-add
// per block, as the vector code does), so the two agree bit for bit.
void GemmPackedGroupsRef(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1) {
  const int64_t cols = p.cols, out = p.rows;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* grp = p.Group(g);
    for (int64_t t = 0; t < a.n; ++t) {
      const int8_t* codes = a.codes.get() + t * cols;
      const float* da = a.scale.get() + t * a.nblk;
      const int32_t* sums = a.sums.get() + t * a.sums_per_row;
      for (int64_t i = 0; i < R; ++i) {
        float acc = 0.0f;
        if (IsQ4_K(p.type)) {
          for (int64_t s = 0; s < a.nblk; ++s) {
            const uint8_t* sb = grp + s * kPackedQ4KSuperBytes;
            const uint8_t* q = sb + kPackedQ4KHeaderBytes;
            uint8_t u[256];
            DecodeQ4KHeader(sb + 64, u);
            int32_t lo_total = 0, hi_total = 0, mins = 0;
            for (int pr = 0; pr < 4; ++pr) {
              int32_t lo = 0, hi = 0;
              for (int k = 0; k < 8; ++k)
                for (int c = 0; c < 4; ++c) {
                  const int v = q[(pr * 8 + k) * 64 + 4 * i + c];
                  lo += (v & 15) * codes[s * 256 + 64 * pr + 4 * k + c];
                  hi += (v & 0xf0) * codes[s * 256 + 64 * pr + 32 + 4 * k + c];
                }
              lo_total += lo * u[Q4KScaleIndex(i, 2 * pr)];
              hi_total += hi * u[Q4KScaleIndex(i, 2 * pr + 1)];
              const int32_t pair = sums[4 * s + pr];
              mins += u[Q4KMinIndex(i, 2 * pr)] * int16_t(pair & 0xffff) +
                      u[Q4KMinIndex(i, 2 * pr + 1)] * int16_t(uint32_t(pair) >> 16);
            }
            const int32_t ints = lo_total + (hi_total >> 4);
            const float dw = F16ToF32(LoadU16(sb + 2 * i)), dmin = F16ToF32(LoadU16(sb + 32 + 2 * i));
            acc = std::fma(float(ints), dw * da[s], acc);
            acc = std::fma(-float(mins), dmin * da[s], acc);
          }
        } else {
          const bool q4 = IsQ4_0(p.type);
          const int64_t code_bytes = CodeBytes(p.type);
          for (int64_t b = 0; b < a.nblk; ++b) {
            int32_t ints = sums[b];
            const uint8_t* q = grp + PackedCodesOffset(b, code_bytes);
            if (q4) {
              for (int m = 0; m < 4; ++m)
                for (int c = 0; c < 4; ++c) {
                  const int v = q[m * 64 + 4 * i + c];
                  ints += (v & 15) * codes[b * 32 + 4 * m + c] + (v >> 4) * codes[b * 32 + 16 + 4 * m + c];
                }
            } else {
              for (int k = 0; k < 8; ++k)
                for (int c = 0; c < 4; ++c) ints += q[k * 64 + 4 * i + c] * codes[b * 32 + 4 * k + c];
            }
            const float dw = F16ToF32(LoadU16(grp + PackedScaleOffset(b, code_bytes) + 2 * i));
            acc = std::fma(float(ints), dw * da[b], acc);
          }
        }
        y[t * out + g * R + i] = acc;
      }
    }
  }
}

void MatMulPacked(const PackedWeights& p, const float* x, int64_t n, float* y, ThreadPool& pool) {
  const PackedProduct one{&p, y};
  MatMulPackedMany({&one, 1}, x, n, pool);
}

namespace {

// Groups per unit of MatMulPackedMany's balanced loop: about kUnitBytes of
// weights of the widest group.
int64_t UnitGroups(int64_t max_group_bytes) {
  return std::max<int64_t>(1, kUnitBytes / max_group_bytes);
}

}  // namespace

std::vector<ThreadPool::PrefetchSpan> PrefetchSpansFor(std::span<const PackedWeights* const> next,
                                                       const ThreadPool& pool) {
  std::vector<ThreadPool::PrefetchSpan> spans;
  int64_t total = 0, max_group_bytes = 1;
  for (const PackedWeights* w : next) {
    total += w->rows / R;
    max_group_bytes = std::max(max_group_bytes, w->group_bytes);
  }
  for (int t = 0; t < pool.size(); ++t) {
    int64_t g0, g1;
    pool.BalancedShare(total, UnitGroups(max_group_bytes), t, &g0, &g1);
    int64_t left = kPrefetchBytes, first = 0;
    for (const PackedWeights* w : next) {
      const int64_t groups = w->rows / R;
      const int64_t b = std::max(g0, first), e = std::min(g1, first + groups);
      first += groups;
      if (b >= e || left <= 0) continue;
      const int64_t bytes = std::min(left, (e - b) * w->group_bytes);
      spans.push_back({t, w->data + (b - (first - groups)) * w->group_bytes, bytes});
      left -= bytes;
    }
  }
  return spans;
}

void MatMulPackedMany(std::span<const PackedProduct> products, const float* x, int64_t n, ThreadPool& pool,
                      std::span<const ThreadPool::PrefetchSpan> prefetch) {
  if (n <= 0 || products.empty()) return;
  // Activations per distinct weight type; group index ranges per product.
  std::vector<PackedActivations> acts;
  acts.reserve(products.size());  // act_of points into it
  std::vector<const PackedActivations*> act_of(products.size());
  std::vector<int64_t> first(products.size() + 1, 0);
  int64_t max_group_bytes = 0;
  for (size_t i = 0; i < products.size(); ++i) {
    const PackedWeights& w = *products[i].w;
    LOWBIT_CHECK(w.cols == products[0].w->cols);
    size_t j = 0;
    while (j < i && products[j].w->type != w.type) ++j;
    if (j == i) {
      acts.push_back(QuantizePackedActivations(w.type, x, n, w.cols, pool));
      act_of[i] = &acts.back();
    } else {
      act_of[i] = act_of[j];
    }
    first[i + 1] = first[i] + w.rows / R;
    max_group_bytes = std::max(max_group_bytes, w.group_bytes);
  }
  const int64_t chunk = UnitGroups(max_group_bytes);
  pool.ParallelForBalanced(
      first.back(), chunk,
      [&](int64_t g0, int64_t g1) {
        for (size_t i = 0; i < products.size() && g0 < g1; ++i) {
          const int64_t b = std::max(g0, first[i]), e = std::min(g1, first[i + 1]);
          if (b < e) GemmPackedGroups(*products[i].w, *act_of[i], products[i].y, b - first[i], e - first[i]);
        }
      },
      prefetch);
}

}  // namespace lowbit
