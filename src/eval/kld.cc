// KLD base file writing and the comparison statistics.
#include "eval/kld.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/atomic_file.h"

namespace lowbit {

namespace {

constexpr char kMagic[8] = {'L', 'B', 'K', 'L', 'D', '0', '0', '1'};
constexpr float kClip = 16.0f;  // log-prob range kept below the maximum (llama.cpp's choice)

struct Header {
  char magic[8];
  uint32_t ctx, vocab, chunks, scored_per_chunk;
};

// Log-softmax of `logits` into `out` (double precision sum, float result).
void LogSoftmax(std::span<const float> logits, std::vector<float>* out) {
  float max = logits[0];
  for (float l : logits) max = std::max(max, l);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(double(l - max));
  const float lse = float(std::log(sum));
  out->resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) (*out)[i] = logits[i] - max - lse;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + int64_t(k), v.end());
  return v[k];
}

}  // namespace

void SaveKldBase(Session& session, const ChunkPlan& plan, const std::string& path, bool progress) {
  AtomicFileWriter out(path);
  const uint32_t vocab = uint32_t(session.model().config.vocab_size);
  Header h;
  std::memcpy(h.magic, kMagic, 8);
  h.ctx = uint32_t(plan.ctx);
  h.vocab = vocab;
  h.chunks = uint32_t(plan.chunks);
  h.scored_per_chunk = uint32_t(plan.scored_per_chunk);
  out.WritePod(h);
  // Chunk tokens as evaluated are written first, so collect them up front.
  const Tokenizer& tok = *session.model().tokenizer;
  for (int c = 0; c < plan.chunks; ++c) {
    std::vector<int32_t> chunk(plan.tokens.begin() + int64_t(c) * plan.ctx,
                               plan.tokens.begin() + int64_t(c + 1) * plan.ctx);
    if (tok.add_bos() && tok.bos() >= 0) chunk[0] = tok.bos();
    out.Write(chunk.data(), chunk.size() * sizeof(int32_t));
  }
  std::vector<float> lp;
  std::vector<uint16_t> q(vocab);
  ForEachChunk(session, plan, progress, [&](int, std::span<const int32_t> chunk, std::span<const float> logits) {
    for (int j = plan.first_scored; j < plan.first_scored + plan.scored_per_chunk; ++j) {
      LogSoftmax(logits.subspan(size_t(j) * vocab, vocab), &lp);
      const float top = *std::max_element(lp.begin(), lp.end());
      const float lo = std::max(*std::min_element(lp.begin(), lp.end()), top - kClip);
      const float scale = top > lo ? (top - lo) / 65535.0f : 1.0f;
      for (uint32_t i = 0; i < vocab; ++i)
        q[i] = lp[i] <= lo ? 0 : uint16_t(std::min(65535.0f, std::nearbyint((lp[i] - lo) / scale)));
      const float nll = -lp[size_t(chunk[size_t(j) + 1])];
      out.WritePod(nll);
      out.WritePod(scale);
      out.WritePod(lo);
      out.Write(q.data(), q.size() * sizeof(uint16_t));
    }
  });
  out.Commit();
}

int KldBaseContext(const std::string& base_path) {
  MappedFile file(base_path);
  Header h;
  if (file.size() < sizeof(h)) Fail("{}: truncated KLD base file", base_path);
  std::memcpy(&h, file.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, 8) != 0) Fail("{}: not a lowbit KLD base file (bad magic)", base_path);
  if (h.ctx < 8 || h.ctx > (1u << 20)) Fail("{}: corrupt header (ctx {})", base_path, h.ctx);
  return int(h.ctx);
}

KldStats CompareKld(Session& session, const std::string& base_path, bool progress) {
  MappedFile file(base_path);
  Header h;
  if (file.size() < sizeof(h)) Fail("{}: truncated KLD base file", base_path);
  std::memcpy(&h, file.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, 8) != 0) Fail("{}: not a lowbit KLD base file (bad magic)", base_path);
  if (h.vocab != uint32_t(session.model().config.vocab_size))
    Fail("{}: base vocab {} differs from the model's {}", base_path, h.vocab, session.model().config.vocab_size);
  if (h.ctx < 8 || h.ctx > (1u << 20) || h.chunks > (1u << 24) || h.scored_per_chunk >= h.ctx)
    Fail("{}: corrupt header", base_path);
  const size_t entry = 12 + size_t(h.vocab) * 2;
  const size_t need = sizeof(h) + size_t(h.chunks) * h.ctx * 4 + size_t(h.chunks) * h.scored_per_chunk * entry;
  if (file.size() != need) Fail("{}: size {} does not match its header (expected {})", base_path, file.size(), need);
  if (h.ctx > uint32_t(session.max_context()))
    Fail("{}: base ctx {} is larger than the session context {}", base_path, h.ctx, session.max_context());

  ChunkPlan plan;
  plan.protocol = Protocol::kGptq;  // chunks are replayed verbatim (BOS already substituted)
  plan.ctx = int(h.ctx);
  plan.chunks = int(h.chunks);
  plan.scored_per_chunk = int(h.scored_per_chunk);
  plan.first_scored = plan.ctx - 1 - plan.scored_per_chunk;
  plan.tokens.resize(size_t(h.chunks) * h.ctx);
  std::memcpy(plan.tokens.data(), file.data() + sizeof(h), plan.tokens.size() * 4);
  for (int32_t t : plan.tokens)
    if (t < 0 || t >= int32_t(h.vocab)) Fail("{}: token id {} out of range", base_path, t);
  const uint8_t* entries = file.data() + sizeof(h) + plan.tokens.size() * 4;

  std::vector<double> klds, dps;
  double nll_base = 0, nll = 0;
  int64_t same_top = 0;
  std::vector<float> lp;
  size_t index = 0;
  ForEachChunk(session, plan, progress, [&](int, std::span<const int32_t> chunk, std::span<const float> logits) {
    for (int j = plan.first_scored; j < plan.first_scored + plan.scored_per_chunk; ++j, ++index) {
      const uint8_t* e = entries + index * entry;
      float base_nll, scale, lo;
      std::memcpy(&base_nll, e, 4);
      std::memcpy(&scale, e + 4, 4);
      std::memcpy(&lo, e + 8, 4);
      const uint16_t* q = reinterpret_cast<const uint16_t*>(e + 12);
      LogSoftmax(logits.subspan(size_t(j) * h.vocab, h.vocab), &lp);
      const int32_t next = chunk[size_t(j) + 1];
      double kld = 0;
      uint32_t base_top = 0;
      for (uint32_t i = 0; i < h.vocab; ++i) {
        uint16_t qi;
        std::memcpy(&qi, q + i, 2);
        if (qi > 0) {
          const double pb = double(lo) + double(scale) * qi;
          kld += std::exp(pb) * (pb - double(lp[i]));
        }
        uint16_t qt;
        std::memcpy(&qt, q + base_top, 2);
        if (qi > qt) base_top = i;
      }
      const uint32_t top = uint32_t(std::max_element(lp.begin(), lp.end()) - lp.begin());
      same_top += top == base_top;
      klds.push_back(kld);
      dps.push_back(std::exp(double(lp[size_t(next)])) - std::exp(-double(base_nll)));
      nll_base += base_nll;
      nll -= lp[size_t(next)];
    }
  });
  KldStats s;
  const double n = double(klds.size());
  s.tokens = int64_t(klds.size());
  if (klds.empty()) return s;
  s.ppl_base = std::exp(nll_base / n);
  s.ppl = std::exp(nll / n);
  auto mean_stderr = [n](const std::vector<double>& v, double* mean, double* stderr_out) {
    double sum = 0, sum2 = 0;
    for (double x : v) sum += x, sum2 += x * x;
    *mean = sum / n;
    const double var = sum2 / n - *mean * *mean;
    *stderr_out = (var > 0 && n > 1) ? std::sqrt(var / (n - 1)) : 0;
  };
  mean_stderr(klds, &s.kld_mean, &s.kld_stderr);
  mean_stderr(dps, &s.dp_mean, &s.dp_stderr);
  double sum2 = 0;
  for (double d : dps) sum2 += d * d;
  s.dp_rms = std::sqrt(sum2 / n);
  s.kld_median = Percentile(klds, 0.5);
  s.kld_p99 = Percentile(klds, 0.99);
  s.kld_max = *std::max_element(klds.begin(), klds.end());
  s.top1_agreement = double(same_top) / n;
  s.top1_stderr = std::sqrt(s.top1_agreement * (1 - s.top1_agreement) / n);
  return s;
}

}  // namespace lowbit
