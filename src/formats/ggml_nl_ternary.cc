// Reference codecs of IQ4_NL, TQ1_0 and TQ2_0 (see ggml_nl_ternary.h). The
// quantizers repeat ggml-quants.c's float operations in the same order,
// because byte-equality with llama-quantize depends on every rounding.
#include "formats/ggml_nl_ternary.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/ggml_block_util.h"
#include "formats/ggml_kquants_search.h"
#include "formats/iq4_table.h"

namespace lowbit {

using ggml_block::CheckRowLength;
using ggml_block::FromF16;
using ggml_block::InverseOrZero;
using ggml_block::LoadBlock;
using ggml_block::SaturateScale;
using ggml_block::StoreBlock;
using ggml_block::ToF16;

namespace {

// ---- IQ4_NL -----------------------------------------------------------------

// Index of the table entry nearest to v (ties to the larger entry).
int NearestIq4Index(float v) { return kquant::BestIndexInt8(16, kIq4NlValues, v); }

// quantize_row_iq4_nl_impl for one 32-weight block with ntry = 7, as
// llama-quantize calls it. Returns the scale; codes get the table indices.
float QuantizeIq4NlBlock(const float* x, const float* importance, uint8_t* codes) {
  constexpr int kTries = 7;
  constexpr float kEdge = kIq4NlValues[0];  // -127: the table's largest magnitude
  float weight[32];
  if (importance != nullptr) {
    float sigma2 = 0;
    for (int j = 0; j < 32; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.0f / 32;
    for (int j = 0; j < 32; ++j) weight[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < 32; ++j) weight[j] = x[j] * x[j];
  }
  float amax = 0, max = 0;  // max: the signed value of largest magnitude
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  float d = 0;
  if (amax >= 1e-15f) {  // ggml's GROUP_MAX_EPS: below it the block is zero
    // Weighted least-squares scale of the codes found at inverse scale id,
    // and its figure of merit (sum w q x)^2 / (sum w q^2), kept as a ratio.
    auto fit = [&](float id, float& sumqx, float& sumq2) {
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float q = kIq4NlValues[NearestIq4Index(id * x[j])];
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
      }
    };
    // First guess: the block's extreme at +127 (clamped onto 113, the top).
    const float first = -max / kEdge;
    float sumqx, sumq2;
    fit(1 / first, sumqx, sumq2);
    // Zero total weight (an all-zero importance slice) leaves the guess;
    // llama.cpp would divide 0/0 here and store NaN.
    d = sumq2 > 0 ? sumqx / sumq2 : first;
    float best = d * sumqx;
    // Then the extreme at the -127 end, shifted by t in [-7, 7].
    for (int t = -kTries; t <= kTries; ++t) {
      fit((t + kEdge) / max, sumqx, sumq2);
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
  }
  // Weights x^2 overflow for |x| beyond ~1e19 and the fit turns NaN; such
  // blocks (which llama.cpp stores as NaN/inf) keep the first guess.
  if (!std::isfinite(d)) d = -max / kEdge;
  d = SaturateScale(d);
  // Final indices at the chosen (unrounded) d, as ggml does.
  const float id = InverseOrZero(d);
  for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(NearestIq4Index(id * x[j]));
  return d;
}

// ---- TQ1_0 ------------------------------------------------------------------

// One run of TQ1_0 bytes: `bytes` bytes from byte offset `first_byte` of the
// block, byte m holding the trits of elements first_element + m + stride i.
struct TritGroup {
  int first_byte, bytes, first_element, stride, trits;
};
// qs: 32 bytes x 5 trits, 16 bytes x 5 trits; qh: 4 bytes x 4 trits.
constexpr TritGroup kTq1Groups[] = {{0, 32, 0, 32, 5}, {32, 16, 160, 16, 5}, {48, 4, 240, 4, 4}};
constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};

// Trit i (0..4, 0 the most significant) of a TQ1_0 byte. Multiplying by 3^i
// (mod 256) brings trit i to the top of the byte's 256/243-scaled base-3
// fraction; * 3 >> 8 reads it.
int TritOf(uint8_t byte, int i) {
  const uint8_t shifted = static_cast<uint8_t>(byte * kPow3[i]);
  return (shifted * 3) >> 8;
}

// The byte of five trits t[0..4] (t[0] most significant): v = sum t_i 3^(4-i)
// stored as ceil(v * 256 / 243).
uint8_t PackTrits(const uint8_t* t) {
  int v = 0;
  for (int i = 0; i < 5; ++i) v = 3 * v + t[i];
  return static_cast<uint8_t>((v * 256 + 242) / 243);
}

// Byte (0..51: qs then qh) and trit position of element e of a TQ1_0 block.
void LocateTrit(int e, int* byte, int* position) {
  for (const TritGroup& g : kTq1Groups) {
    const int r = e - g.first_element;  // groups ascend, so r >= 0 here
    if (r < g.bytes * g.trits) {
      *byte = g.first_byte + r % g.stride;
      *position = r / g.stride;
      return;
    }
  }
}

// RoundInPlace decoder of both ternary formats: d * (t - 1), t in {0, 1, 2}.
constexpr auto kTernaryDecoder = [](const auto& block, int) {
  const float d = FromF16(block.d);
  return [d](int t) { return float(t - 1) * d; };
};

// Ternary code of x: round-half-away(x / d) + 1 in {0, 1, 2}, d = max |x|.
// Returns d; the clamp acts only when the scale saturated.
float TernaryCodes(const float* x, uint8_t* t) {
  float amax = 0;
  for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = SaturateScale(amax);
  const float id = InverseOrZero(d);
  for (int j = 0; j < 256; ++j) t[j] = static_cast<uint8_t>(std::clamp(std::lround(x[j] * id), -1L, 1L) + 1);
  return d;
}

}  // namespace

void IQ4_NLFormat::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float* importance) {
  CheckRowLength(kName, n, kBlockSize);
  const int64_t blocks_per_row = n / kBlockSize;
  for (int64_t b = 0; b < rows * blocks_per_row; ++b) {
    const float* qw = importance ? importance + (b % blocks_per_row) * kBlockSize : nullptr;
    uint8_t codes[32];
    Block block;
    block.d = ToF16(QuantizeIq4NlBlock(x + b * kBlockSize, qw, codes));
    for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
    StoreBlock(block, out + b * kBlockBytes);
  }
}

void IQ4_NLFormat::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    float* y = out + b * kBlockSize;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * float(kIq4NlValues[block.qs[j] & 0x0F]);
      y[j + 16] = d * float(kIq4NlValues[block.qs[j] >> 4]);
    }
  }
}

float IQ4_NLFormat::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<IQ4_NLFormat>(
      row, i, x, ggml_block::AllCodes{0, 15},
      [](const Block& block, int) {
        const float d = FromF16(block.d);
        return [d](int c) { return d * float(kIq4NlValues[c]); };
      },
      [](Block& block, int j, int c) { ggml_block::SetNibble32(block.qs, j, c); });
}

void TQ1_0Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
  CheckRowLength(kName, n, kBlockSize);
  for (int64_t b = 0; b < rows * n / kBlockSize; ++b) {
    uint8_t t[256];
    Block block;
    block.d = ToF16(TernaryCodes(x + b * kBlockSize, t));
    uint8_t packed[52];  // qs then qh, as in the block
    for (const TritGroup& g : kTq1Groups) {
      for (int m = 0; m < g.bytes; ++m) {
        uint8_t trits[5] = {};  // first element most significant, padded to 5 trits
        for (int i = 0; i < g.trits; ++i) trits[i] = t[g.first_element + m + g.stride * i];
        packed[g.first_byte + m] = PackTrits(trits);
      }
    }
    std::memcpy(block.qs, packed, 48);
    std::memcpy(block.qh, packed + 48, 4);
    StoreBlock(block, out + b * kBlockBytes);
  }
}

void TQ1_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    uint8_t packed[52];
    std::memcpy(packed, block.qs, 48);
    std::memcpy(packed + 48, block.qh, 4);
    float* y = out + b * kBlockSize;
    for (const TritGroup& g : kTq1Groups) {
      for (int m = 0; m < g.bytes; ++m) {
        for (int i = 0; i < g.trits; ++i) {
          y[g.first_element + m + g.stride * i] = float(TritOf(packed[g.first_byte + m], i) - 1) * d;
        }
      }
    }
  }
}

// Decodes the five trits of the element's byte, replaces one and re-packs
// them as the quantizer does (qh bytes keep their fifth trit 0).
float TQ1_0Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<TQ1_0Format>(
      row, i, x, ggml_block::AllCodes{0, 2}, kTernaryDecoder, [](Block& block, int j, int t) {
        int index, position;
        LocateTrit(j, &index, &position);
        uint8_t& byte = index < 48 ? block.qs[index] : block.qh[index - 48];
        uint8_t trits[5];
        for (int k = 0; k < 5; ++k) trits[k] = static_cast<uint8_t>(TritOf(byte, k));
        trits[position] = static_cast<uint8_t>(t);
        byte = PackTrits(trits);
      });
}

void TQ2_0Format::QuantizeRows(const float* x, int64_t rows, int64_t n, uint8_t* out, const float*) {
  CheckRowLength(kName, n, kBlockSize);
  for (int64_t b = 0; b < rows * n / kBlockSize; ++b) {
    uint8_t t[256];
    Block block;
    block.d = ToF16(TernaryCodes(x + b * kBlockSize, t));
    for (int h = 0; h < 2; ++h) {
      for (int m = 0; m < 32; ++m) {
        uint8_t byte = 0;
        for (int i = 0; i < 4; ++i) byte = static_cast<uint8_t>(byte | t[128 * h + m + 32 * i] << (2 * i));
        block.qs[32 * h + m] = byte;
      }
    }
    StoreBlock(block, out + b * kBlockBytes);
  }
}

void TQ2_0Format::DequantizeRow(const uint8_t* row, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kBlockSize; ++b) {
    const Block block = LoadBlock<Block>(row + b * kBlockBytes);
    const float d = FromF16(block.d);
    float* y = out + b * kBlockSize;
    for (int h = 0; h < 2; ++h) {
      for (int m = 0; m < 32; ++m) {
        for (int i = 0; i < 4; ++i) y[128 * h + m + 32 * i] = float(((block.qs[32 * h + m] >> (2 * i)) & 3) - 1) * d;
      }
    }
  }
}

// Codes {0, 1, 2} only: the quantizer never writes 3 (which would decode to
// 2d), so a rounded row stays ternary.
float TQ2_0Format::RoundInPlace(uint8_t* row, int64_t, int64_t i, float x) {
  return ggml_block::RoundElementInPlace<TQ2_0Format>(
      row, i, x, ggml_block::AllCodes{0, 2}, kTernaryDecoder, [](Block& block, int j, int t) {
        uint8_t& byte = block.qs[32 * (j / 128) + j % 32];
        const int shift = 2 * ((j % 128) / 32);
        byte = static_cast<uint8_t>((byte & ~(3 << shift)) | (t << shift));
      });
}

}  // namespace lowbit
