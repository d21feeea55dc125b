// Row-interleaved ("packed") copies of Q4_0, Q8_0 and Q4_K weights, made once
// when a Session starts, for the AVX-512 VNNI kernels of gemm_packed.cc.
//
// A packed matrix holds the same codes and scales as the GGUF rows, regrouped
// so that one 512-bit register holds 4 consecutive codes of 16 consecutive
// rows: an int8 dot (vpdpbusd) against 4 broadcast activation bytes then gives
// 16 rows' partial sums, one per i32 lane, and the per-block scaling is one
// float multiply-add for 16 rows. The row-major layout needs a horizontal
// reduction per row per block instead. Layout per group of 16 rows (kPackRows):
//   Q4_0 (nb = cols / 32 blocks), in pairs of blocks (2j, 2j + 1), each pair
//   u16 d[2][16] (f16, row order) then the two blocks' codes, so that a group
//   is one sequential stream (a hole between a scale array and a code array
//   makes the hardware prefetchers start over; a last odd block pads d to 64):
//     codes of block b: u8 q[4][64], q[m][4 i + c] = qs(row i)[4m + c]
//             = code(row i, 4m + c) | code(row i, 16 + 4m + c) << 4
//   Q8_0: as Q4_0 with codes u8 q[8][64]: q[k][4 i + c] = qs(row i)[4k + c] ^ 0x80
//         (offset to unsigned; the kernel subtracts 128 * sum(a)).
//   Q4_K (ns = cols / 256 super-blocks), per super-block, 2304 bytes (the
//   file's 16 x 144, so a token reads the file's bytes):
//     u16 d[16], u16 dmin[16];  192 bytes of 6-bit sub-block scales and mins;
//     u8 q[4][8][64]: q[p][k][4 i + c] = code(i, 64p + 4k + c) | code(i, 64p + 32 + 4k + c) << 4.
//   The 6-bit header holds 256 values u: u[16 j + i] = sc(row i, sub-block j)
//   and u[128 + 32 p + 2 i + h] = m(row i, sub-block 2p + h), as
//     n0[b] = u[b] & 15 | (u[64 + b] & 15) << 4,  n1[b] = u[128 + b] & 15 | (u[192 + b] & 15) << 4,
//     hi[b] = u[b] >> 4 | u[64 + b] >> 4 << 2 | u[128 + b] >> 4 << 4 | u[192 + b] >> 4 << 6   (b < 64),
//   which the kernel turns back into u (8-bit) with a few vector ops per super-block.
// The integer sums are those of the row-major kernels (exact); only the float
// summation order differs. UnpackWeights inverts the packing byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "core/stream_buffer.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace lowbit {

inline constexpr int64_t kPackRows = 16;
// Q4_K: bytes of one packed super-block of 16 rows, of its header (d, dmin
// and the 6-bit scales and mins) in front of the codes.
inline constexpr int64_t kPackedQ4KHeaderBytes = 64 + 192;
inline constexpr int64_t kPackedQ4KSuperBytes = kPackedQ4KHeaderBytes + 2048;

struct PackedWeights {
  DType type = DType::kF32;
  int64_t rows = 0, cols = 0;
  int64_t group_bytes = 0;  // bytes per group of kPackRows rows (a multiple of 64)
  const uint8_t* data = nullptr;  // 64-byte aligned: `owned`, or the caller's memory (PackWeights)
  StreamBuffer<uint8_t> owned;    // huge pages from 1 MiB
  const uint8_t* Group(int64_t g) const { return data + g * group_bytes; }
  size_t bytes() const { return size_t(rows / kPackRows * group_bytes); }
};

// Q4_0 / Q8_0 (code_bytes 256 / 512 per block of 16 rows): where block b's
// 16 scales and its codes start within a group.
inline int64_t PackedScaleOffset(int64_t b, int64_t code_bytes) {
  return (b >> 1) * (64 + 2 * code_bytes) + (b & 1) * 32;
}
inline int64_t PackedCodesOffset(int64_t b, int64_t code_bytes) {
  return (b >> 1) * (64 + 2 * code_bytes) + 64 + (b & 1) * code_bytes;
}
inline int64_t PackedLegacyGroupBytes(int64_t nb, int64_t code_bytes) { return (nb + 1) / 2 * 64 + nb * code_bytes; }

// True when `type` has a packed layout (Q4_0, Q8_0, Q4_K).
bool HasPackedLayout(DType type);
// True when this CPU runs the packed kernels with SIMD (AVX-512 VNNI); other
// CPUs would run the packed layout's scalar kernel, slower than the row-major
// SIMD kernels, so callers pack only when this holds.
bool HasFastPackedKernel();

// The bytes of w's packed copy (a multiple of 64); 0 when w does not qualify
// (2-D, rows a multiple of kPackRows, a packed type).
size_t PackedBytes(const TensorView& w);
// The packed copy of w; null when w does not qualify. Written into `into`
// (PackedBytes(w) bytes, 64-byte aligned) when given, else into a buffer of
// its own. A Session packs all its weights into one huge-page arena in the
// order the forward pass reads them, so one product's end runs into the
// next's start and small matrices (k, v) do not sit on 4 KiB pages, where
// the hardware prefetchers stop at every page boundary.
std::unique_ptr<PackedWeights> PackWeights(const TensorView& w, ThreadPool& pool, uint8_t* into = nullptr);
// The rows back in w's own format (rows * RowBytes(cols) bytes).
void UnpackWeights(const PackedWeights& p, uint8_t* out);

// y (n, rows) = x (n, cols) @ W^T with the packed weights, activations
// quantized to the format's activation type (Q8_0 / Q8_K) as MatMulQuant does.
void MatMulPacked(const PackedWeights& p, const float* x, int64_t n, float* y, ThreadPool& pool);

// Several products that share their input x (a block's q/k/v, gate/up):
// y_i (n, rows_i) = x (n, cols) @ W_i^T. The activations are quantized once
// per weight type, and the groups of all products are one balanced parallel
// loop, so the threads hand off once instead of once per product. Each y_i
// equals MatMulPacked's bit for bit.
struct PackedProduct {
  const PackedWeights* w;
  float* y;
};
//
// `prefetch` (PrefetchSpansFor) names the start of each thread's share of the
// call that follows: each thread reads it into its caches while it would
// otherwise wait (ThreadPool's prefetch spans), so that memory is not idle
// during the serial steps in between.
void MatMulPackedMany(std::span<const PackedProduct> products, const float* x, int64_t n, ThreadPool& pool,
                      std::span<const ThreadPool::PrefetchSpan> prefetch = {});
// Each thread's first kPrefetchBytes of its static share of MatMulPackedMany
// over the products of weights `next` (in order) on `pool`.
std::vector<ThreadPool::PrefetchSpan> PrefetchSpansFor(std::span<const PackedWeights* const> next,
                                                       const ThreadPool& pool);
inline constexpr int64_t kPrefetchBytes = 512 << 10;
// About the weight bytes of one unit of MatMulPackedMany's balanced loop:
// the size in which a thread that finished early steals work (halves of
// what is left, ThreadPool::ParallelForBalanced), so the threads end within
// about one unit (2 us at 30 GB/s) of each other.
inline constexpr int64_t kUnitBytes = 64 << 10;

// Quantized activations in the layout the packed kernels read (built from the
// Q8_0 / Q8_K blocks of the reference quantizers):
//   codes  (n, cols) int8, contiguous per token;
//   scale  (n, nblk) f32 activation scale per block (32 for Q8_0, 256 for Q8_K);
//   sums   Q4_0: (n, nb) -8 * sum(codes of block); Q8_0: -128 * sum;
//          Q4_K: (n, ns, 4) i32 = (bsum32[2p] & 0xffff) | bsum32[2p+1] << 16,
//          bsum32[j] the sum of the 32 codes of sub-block j.
struct PackedActivations {
  int64_t n = 0, cols = 0, nblk = 0, sums_per_row = 0;
  std::unique_ptr<int8_t[]> codes;
  std::unique_ptr<float[]> scale;
  std::unique_ptr<int32_t[]> sums;
};
PackedActivations QuantizePackedActivations(DType weight_type, const float* x, int64_t n, int64_t cols,
                                            ThreadPool& pool);

// Internal (gemm_packed.cc): groups [g0, g1) of y for all n tokens. The
// scalar version is the packed layout's reference and runs below AVX3_DL.
void GemmPackedGroupsRef(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1);
void GemmPackedGroups(const PackedWeights& p, const PackedActivations& a, float* y, int64_t g0, int64_t g1);

}  // namespace lowbit
