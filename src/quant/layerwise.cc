// The block-by-block calibrated quantization engine (quant/layerwise.h):
// method parsing, the concrete BlockContext over one block, and the driver
// that runs the blocks in order on demand.
#include "quant/layerwise.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "kernels/packed.h"
#include "model/model.h"
#include "quant/method.h"
#include "quant/prune.h"
#include "quant/recipe.h"
#include "runtime/block.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::string_view kStages[] = {"awq", "smoothquant", "gptq"};
constexpr std::string_view kBases[] = {"rtn", "rtn-mse", "imatrix", "hqq"};

bool IsStage(std::string_view s) { return std::find(std::begin(kStages), std::end(kStages), s) != std::end(kStages); }
bool IsBase(std::string_view s) { return std::find(std::begin(kBases), std::end(kBases), s) != std::end(kBases); }

int64_t RowsOf(const std::vector<int64_t>& shape) {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

}  // namespace

int BlockLayer(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  int layer = 0;
  size_t i = 4;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) layer = layer * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' ? layer : -1;
}

std::vector<std::vector<std::string>> TrueSequentialGroups(const ModelConfig& config, int layer) {
  // Members of one group read the same input (the GPTQ stage accumulates one
  // Hessian per group); groups are in forward order.
  const std::vector<std::vector<const char*>> llama = {
      {"attn_q.weight", "attn_k.weight", "attn_v.weight"},
      {"attn_output.weight"},
      {"ffn_gate.weight", "ffn_up.weight"},
      {"ffn_down.weight"}};
  const std::vector<std::vector<const char*>> gpt2 = {
      {"attn_qkv.weight"}, {"attn_output.weight"}, {"ffn_up.weight"}, {"ffn_down.weight"}};
  std::vector<std::vector<std::string>> out;
  for (const auto& g : config.arch == Arch::kGpt2 ? gpt2 : llama) {
    std::vector<std::string> names;
    for (const char* s : g) names.push_back(fmt::format("blk.{}.{}", layer, s));
    out.push_back(std::move(names));
  }
  return out;
}

std::string MethodSpecHelp() {
  return "rtn, rtn-mse, imatrix, hqq (no calibration); gptq, awq, smoothquant (block-by-block on --data), "
         "combined with '+': stages first, a base last (awq+gptq, smoothquant+gptq, awq+rtn-mse)";
}

MethodSpec ParseMethodSpec(std::string_view method) {
  MethodSpec spec;
  spec.name = std::string(method);
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t plus = method.find('+', start);
    parts.emplace_back(method.substr(start, plus == std::string_view::npos ? std::string_view::npos : plus - start));
    if (plus == std::string_view::npos) break;
    start = plus + 1;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (IsStage(p)) {
      if (std::find(spec.stages.begin(), spec.stages.end(), p) != spec.stages.end())
        Fail("--method '{}': '{}' is named twice", method, p);
      if (!spec.stages.empty() && spec.stages.back() == "gptq")
        Fail("--method '{}': '{}' must come before gptq (gptq encodes the weights; a stage after it has nothing "
             "left to rescale)",
             method, p);
      spec.stages.push_back(p);
    } else if (IsBase(p)) {
      if (i + 1 != parts.size())
        Fail("--method '{}': the base method '{}' must be the last part (stages first: awq+gptq, awq+rtn-mse)",
             method, p);
      spec.base = p;
    } else {
      Fail("unknown quantization method '{}' in --method '{}'; known: {}", p.empty() ? std::string("(empty)") : p,
           method, MethodSpecHelp());
    }
  }
  return spec;
}

// ---------------------------------------------------------------- engine

namespace {

// One tensor of the block being processed.
struct BlockTensor {
  const TensorView* source = nullptr;
  size_t plan = 0;  // index in the recipe
  bool loaded = false;
  std::vector<float> f32;
  bool encoded = false;
  std::vector<uint8_t> bytes;
  int64_t zeros = 0;
  bool finalized = false;  // step 3 done for it: what the forward with quantized weights reads
  // The encoding in the packed layout the runtime's Session multiplies with
  // (kernels/packed.h), made when a forward first reads it; null when the
  // format or the CPU has none.
  std::unique_ptr<PackedWeights> packed;
  bool pack_tried = false;
};

// Rows of one linear's inputs gathered during the forward with quantized
// weights, for its reconstruction error.
struct ReconInput {
  int64_t n = 0;
  std::vector<float> rows;  // (m, n)
};

}  // namespace

struct LayerwiseQuantizer::Impl {
  Args a;
  std::map<std::string, size_t> plan_index;
  int samples = 0, seq_len = 0;
  int64_t dim = 0;
  std::vector<float> x;           // (samples * seq_len, dim): the residual stream entering block next_layer
  std::vector<float> mid;         // (samples * seq_len, max(q, ffn)): a resumed block's attention output or
                                  // MLP hidden state (BlockContext::ForwardGroup), allocated on first use
  std::vector<float> key_cache;   // (kv heads, seq_len, head_dim) scratch
  std::vector<float> value_cache;
  int next_layer = 0;
  bool embedded = false;
  std::map<std::string, LayerwiseTensor> results;
  LayerwiseTimings own_timings;
  LayerwiseTimings& T() { return a.timings != nullptr ? *a.timings : own_timings; }
  std::vector<std::string> notes;

  void Embed();
  void RunLayer(int layer);
};

namespace {

// Whether a block tensor still equals its source (no stage touched it).
bool SameAsSource(const BlockTensor& t) {
  const std::vector<float> src = ToF32(*t.source);
  return src.size() == t.f32.size() && std::memcmp(src.data(), t.f32.data(), src.size() * sizeof(float)) == 0;
}

class Block final : public BlockContext {
 public:
  Block(LayerwiseQuantizer::Impl& e, int layer)
      : e_(e), layer_(layer), groups_(TrueSequentialGroups(e.a.model->config, layer)) {
    const std::string prefix = fmt::format("blk.{}.", layer);
    for (const TensorView& v : e.a.model->tensors()) {
      if (!v.name.starts_with(prefix)) continue;
      auto it = e.plan_index.find(v.name);
      LOWBIT_CHECK(it != e.plan_index.end());
      BlockTensor& t = tensors_[v.name];
      t.source = &v;
      t.plan = it->second;
    }
    // The quantized linears' inputs are subsampled for their reconstruction
    // errors: recon_rows rows over all samples, evenly spaced in each window.
    per_sample_ = std::clamp<int64_t>((e.a.recon_rows + e.samples - 1) / std::max(1, e.samples), 1,
                                      int64_t(e.seq_len));
    for (const auto& group : groups_)
      for (const std::string& name : group)
        if (Has(name) && Quantized(name)) recon_[name].n = Shape(name).back();
  }

  const ModelConfig& config() const override { return e_.a.model->config; }
  int layer() const override { return layer_; }
  ThreadPool& pool() override { return *e_.a.pool; }
  const std::vector<std::vector<std::string>>& groups() const override { return groups_; }
  bool Has(const std::string& name) const override { return tensors_.count(name) > 0; }
  const std::vector<int64_t>& Shape(const std::string& name) const override { return Get(name).source->shape; }
  std::vector<float>& Weight(const std::string& name) override { return Load(name).f32; }
  const FormatInfo& Format(const std::string& name) const override { return *Plan(name).format; }
  bool Quantized(const std::string& name) const override { return Plan(name).quantize; }
  const float* Importance(const std::string& name) const override { return e_.a.importance[Get(name).plan]; }

  void Forward(const MatMulInputFn& on_input, const char* stop_after) override {
    if (parts_done_ > 1)
      Fail("internal error: block {}: Forward after ForwardGroup has overwritten the block's input", layer_);
    const auto t0 = Clock::now();
    double hook_s = 0;
    MatMulInputHook hook = [&](const TensorView& w, const float* x, int64_t n) {
      const auto h0 = Clock::now();
      on_input(w.name, x, n);
      hook_s += Since(h0);
    };
    Run(on_input ? &hook : nullptr, stop_after, /*in_place=*/false);
    e_.T().stage_forward_s += Since(t0) - hook_s;
  }

  void ForwardGroup(size_t g, const MatMulInputFn& on_input) override {
    if (groups_.size() != kParts || g >= kParts || int(g) < parts_done_ || !Has(groups_[g].front()))
      Fail("internal error: block {}: ForwardGroup({}) after {} parts", layer_, g, parts_done_);
    const auto t0 = Clock::now();
    const double gather_before = gather_s_;
    AdvanceTo(int(g));
    // Group g's input only: stop at its first product (its members share
    // that input) and hand the input to every member.
    double hook_s = 0;
    const std::vector<std::string>& members = groups_[g];
    MatMulInputHook hook = [&](const TensorView&, const float* x, int64_t n) {
      const auto h0 = Clock::now();
      for (const std::string& name : members)
        if (Has(name)) on_input(name, x, n);
      hook_s += Since(h0);
    };
    const std::string& first = members.front();
    const std::string stop = first.substr(first.find('.', 4) + 1);  // "attn_q.weight"
    RunPart(int(g), &hook, stop.c_str(), &members);
    e_.T().stage_forward_s += Since(t0) - hook_s - (gather_s_ - gather_before);
  }

  void SetEncoded(const std::string& name, std::vector<uint8_t> bytes) override {
    BlockTensor& t = Get(name);
    const TensorPlan& p = e_.a.recipe->tensors[t.plan];
    if (t.finalized) Fail("internal error: '{}' set after the forward with quantized weights read it", name);
    if (bytes.size() != size_t(p.rows()) * p.format->RowBytes(p.row_length()))
      Fail("internal error: {} bytes set for '{}' in {}, expected {}", bytes.size(), name, p.format->name,
           size_t(p.rows()) * p.format->RowBytes(p.row_length()));
    Load(name);  // the f32 values the encoding stands for (the reconstruction error's W)
    t.bytes = std::move(bytes);
    t.encoded = true;
    t.packed.reset();
    t.pack_tried = false;
  }
  bool Encoded(const std::string& name) const override { return Get(name).encoded; }

  void Note(std::string line) override {
    if (e_.a.log) std::fprintf(stderr, "%s\n", line.c_str());
    e_.notes.push_back(std::move(line));
  }

  // Step 3 for one tensor: a quantized tensor no stage encoded gets the base
  // method's encoding; a float tensor a stage changed (or pruning zeroed) is
  // re-encoded in its own type. From then on it is what the forward with
  // quantized weights reads and what the writer gets.
  void Finalize(const std::string& name) {
    BlockTensor& t = Get(name);
    if (t.finalized) return;
    const auto t0 = Clock::now();
    const TensorPlan& p = e_.a.recipe->tensors[t.plan];
    const int64_t rows = p.rows(), n = p.row_length();
    if (t.loaded)
      for (size_t i = 0; i < t.f32.size(); ++i)
        if (!std::isfinite(t.f32[i]))
          Fail("quantize: the {} stage left a non-finite value ({}) in '{}' (element {}); nothing was written",
               stage_, t.f32[i], name, i);
    if (p.quantize && !t.encoded) {
      Load(name);
      std::vector<uint8_t> bytes(size_t(rows) * p.format->RowBytes(n));
      e_.a.base->QuantizeTensor(name, t.f32.data(), rows, n, *p.format, e_.a.importance[t.plan], bytes.data());
      t.bytes = std::move(bytes);
      t.encoded = true;
    } else if (!p.quantize && t.loaded && (t.zeros > 0 || !SameAsSource(t))) {
      std::vector<uint8_t> bytes(size_t(rows) * p.format->RowBytes(n));
      p.format->quantize(t.f32.data(), rows, n, bytes.data(), nullptr);
      t.bytes = std::move(bytes);
      t.encoded = true;
    }
    t.finalized = true;
    e_.T().base_s += Since(t0);
  }

  // Step 4: the forward with every encoding in place, from the block's input
  // or from where ForwardGroup stopped, into the stored activations (the
  // next block's input), gathering the quantized linears' input rows.
  void FinishForward() {
    const auto t0 = Clock::now();
    const double gather_before = gather_s_;
    if (parts_done_ > 0 || resumed_) {
      AdvanceTo(int(kParts));
    } else {
      MatMulInputHook hook = [this](const TensorView& w, const float* x, int64_t n) { Gather(w, x, n); };
      Run(&hook, nullptr, /*in_place=*/true);
    }
    e_.T().final_forward_s += Since(t0) - (gather_s_ - gather_before);
  }

  std::map<std::string, ReconInput>& recon() { return recon_; }
  void SetStage(std::string_view stage) { stage_ = std::string(stage); }

  BlockTensor& Load(const std::string& name) {
    BlockTensor& t = Get(name);
    if (!t.loaded) {
      const auto t0 = Clock::now();
      const TensorPlan& p = e_.a.recipe->tensors[t.plan];
      const int64_t rows = RowsOf(t.source->shape), n = t.source->RowLength();
      t.f32.resize(size_t(rows * n));
      DequantizeRows(*t.source, 0, rows, t.f32.data());
      for (size_t i = 0; i < t.f32.size(); ++i)
        if (!std::isfinite(t.f32[i]))
          Fail("{}: tensor '{}' holds a non-finite weight ({}) at row {}, column {}", e_.a.model->path, name,
               t.f32[i], int64_t(i) / n, int64_t(i) % n);
      if (p.weight && e_.a.prune != nullptr && e_.a.prune->kind != PruneSpec::Kind::kNone)
        t.zeros = Prune(*e_.a.prune, t.f32.data(), rows, n);
      t.loaded = true;
      e_.T().load_s += Since(t0);
    }
    return t;
  }

  BlockTensor& Get(const std::string& name) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) Fail("internal error: block {} has no tensor '{}'", layer_, name);
    return it->second;
  }
  const BlockTensor& Get(const std::string& name) const { return const_cast<Block*>(this)->Get(name); }
  const TensorPlan& Plan(const std::string& name) const { return e_.a.recipe->tensors[Get(name).plan]; }

  std::map<std::string, BlockTensor>& tensors() { return tensors_; }

 private:
  // The parts of runtime/block.h, in order; part g holds true-sequential group g's products.
  static constexpr size_t kParts = 4;

  // The view a forward reads for a block tensor: its encoding (with its
  // packed copy where the runtime's Session would make one, so the forward
  // computes what inference computes), else its f32 values.
  const TensorView& ViewOf(const std::string& name) {
    BlockTensor& t = Get(name);
    const TensorPlan& p = e_.a.recipe->tensors[t.plan];
    TensorView& v = views_[name];
    v.name = name;
    v.shape = t.source->shape;
    v.packed = nullptr;
    if (t.encoded) {
      v.type = p.format->id;
      v.data = t.bytes.data();
      v.bytes = t.bytes.size();
      if (!t.pack_tried) {
        t.pack_tried = true;
        if (HasPackedLayout(v.type) && HasFastPackedKernel()) t.packed = PackWeights(v, *e_.a.pool);
      }
      v.packed = t.packed.get();
    } else {
      Load(name);
      v.type = DType::kF32;
      v.data = t.f32.data();
      v.bytes = t.f32.size() * sizeof(float);
    }
    return v;
  }

  BlockContextArgs Args(const WeightLookup* lookup, const MatMulInputHook* hook, const char* stop_after) {
    BlockContextArgs args;
    args.config = &e_.a.model->config;
    args.weights = lookup;
    args.pool = e_.a.pool;
    args.layer = layer_;
    args.pos0 = 0;
    args.key_cache = e_.key_cache.data();
    args.value_cache = e_.value_cache.data();
    args.cache_rows = e_.seq_len;
    args.on_matmul_input = hook;
    args.stop_after = stop_after;
    return args;
  }

  // Runs the whole block over every sample. In place: the stored activations
  // become the block's output (the next block's input); otherwise each sample
  // is copied into a scratch buffer first.
  void Run(const MatMulInputHook* hook, const char* stop_after, bool in_place) {
    for (auto& [name, t] : tensors_) ViewOf(name);
    const Model& model = *e_.a.model;
    WeightLookup lookup = [this, &model](const std::string& name) -> const TensorView& {
      auto it = views_.find(name);
      return it != views_.end() ? it->second : model.Get(name);
    };
    const BlockContextArgs args = Args(&lookup, hook, stop_after);
    const int64_t T = e_.seq_len, d = e_.dim;
    std::vector<float> scratch(in_place ? 0 : size_t(T * d));  // (seq_len, dim)
    for (int s = 0; s < e_.samples; ++s) {
      ThrowIfInterrupted();
      float* xs = &e_.x[size_t(s) * size_t(T * d)];
      if (!in_place) {
        std::copy(xs, xs + T * d, scratch.begin());
        xs = scratch.data();
      }
      ForwardBlock(args, xs, T);
    }
  }

  // Runs part `part` of the block over every sample, from and into the kept
  // state: the stored activations x (block input; after part 1 the stream
  // after attention; after part 3 the block output) and e_.mid (part 0's
  // attention output, part 2's MLP hidden state). Every block tensor it reads
  // is finalized first, except `unfinished` (the members of the group whose
  // input a stopped run captures).
  void RunPart(int part, const MatMulInputHook* hook, const char* stop_after,
               const std::vector<std::string>* unfinished) {
    resumed_ = true;
    const ModelConfig& c = e_.a.model->config;
    const int64_t T = e_.seq_len, d = e_.dim;
    const int64_t mid_width = std::max<int64_t>(int64_t(c.n_heads) * c.head_dim, c.ffn_dim);
    if (e_.mid.empty()) e_.mid.assign(size_t(e_.samples) * size_t(T) * size_t(mid_width), 0.0f);
    const Model& model = *e_.a.model;
    WeightLookup lookup = [this, &model, unfinished](const std::string& name) -> const TensorView& {
      if (!Has(name)) return model.Get(name);
      if (unfinished == nullptr ||
          std::find(unfinished->begin(), unfinished->end(), name) == unfinished->end())
        Finalize(name);
      return ViewOf(name);
    };
    const BlockContextArgs args = Args(&lookup, hook, stop_after);
    for (int s = 0; s < e_.samples; ++s) {
      ThrowIfInterrupted();
      float* xs = &e_.x[size_t(s) * size_t(T * d)];
      float* ms = &e_.mid[size_t(s) * size_t(T * mid_width)];
      switch (part) {
        case 0: BlockAttention(args, xs, T, ms); break;
        case 1: BlockAttentionOutput(args, ms, T, xs); break;
        case 2: BlockMlpHidden(args, xs, T, ms); break;
        default: BlockMlpOutput(args, ms, T, xs); break;
      }
    }
  }

  // Runs the parts before `part` that have not run yet, in full, gathering
  // the quantized linears' inputs for their reconstruction errors.
  void AdvanceTo(int part) {
    MatMulInputHook hook = [this](const TensorView& w, const float* x, int64_t n) { Gather(w, x, n); };
    for (; parts_done_ < part; ++parts_done_) RunPart(parts_done_, &hook, nullptr, nullptr);
  }

  void Gather(const TensorView& w, const float* x, int64_t n) {
    auto it = recon_.find(w.name);
    if (it == recon_.end()) return;
    const auto h0 = Clock::now();
    ReconInput& r = it->second;
    for (int64_t i = 0; i < per_sample_; ++i) {
      const int64_t t = i * n / per_sample_;
      r.rows.insert(r.rows.end(), x + t * r.n, x + (t + 1) * r.n);
    }
    gather_s_ += Since(h0);
  }

  LayerwiseQuantizer::Impl& e_;
  int layer_;
  std::vector<std::vector<std::string>> groups_;
  std::map<std::string, BlockTensor> tensors_;
  std::map<std::string, TensorView> views_;  // ViewOf's views (stable addresses)
  int parts_done_ = 0;     // parts run in full by ForwardGroup / FinishForward
  bool resumed_ = false;   // ForwardGroup has run: the block finishes part by part
  int64_t per_sample_ = 1;
  std::map<std::string, ReconInput> recon_;
  double gather_s_ = 0;
  std::string stage_;  // the stage running now, for messages
};

}  // namespace

void LayerwiseQuantizer::Impl::Embed() {
  const auto t0 = Clock::now();
  const Model& model = *a.model;
  samples = int(a.samples.size());
  LOWBIT_CHECK(samples > 0);
  seq_len = int(a.samples[0].size());
  dim = model.config.dim;
  x.assign(size_t(samples) * size_t(seq_len) * size_t(dim), 0.0f);
  const WeightLookup lookup = ModelWeights(model);
  for (int s = 0; s < samples; ++s) {
    LOWBIT_CHECK(int(a.samples[size_t(s)].size()) == seq_len);
    EmbedTokens(model.config, lookup, a.samples[size_t(s)], 0, &x[size_t(s) * size_t(seq_len) * size_t(dim)]);
  }
  const size_t kv = size_t(model.config.n_kv_heads) * size_t(model.config.head_dim);
  key_cache.assign(size_t(seq_len) * kv, 0.0f);
  value_cache.assign(size_t(seq_len) * kv, 0.0f);
  embedded = true;
  T().embed_s += Since(t0);
}

void LayerwiseQuantizer::Impl::RunLayer(int layer) {
  if (!embedded) Embed();
  Block block(*this, layer);

  // 1-2. The stages, in order.
  const auto t_stages = Clock::now();
  for (const std::unique_ptr<BlockStage>& stage : a.stages) {
    block.SetStage(stage->name());
    stage->ProcessBlock(block);
    for (auto& [name, t] : block.tensors())
      if (t.loaded)
        for (size_t i = 0; i < t.f32.size(); ++i)
          if (!std::isfinite(t.f32[i]))
            Fail("quantize: the {} stage left a non-finite value ({}) in '{}' (element {}); nothing was written",
                 stage->name(), t.f32[i], name, i);
  }
  T().stages_s += Since(t_stages);

  // 3. The base method for every quantized tensor no stage encoded; changed
  // float tensors (folded norms, pruned --keep tensors) re-encoded in their
  // format (those a resumed forward has read already are done).
  std::map<std::string, bool> changed;
  for (auto& [name, t] : block.tensors()) {
    block.Finalize(name);
    changed[name] = t.encoded;
  }

  // 4. The forward with every encoding in place: the next block's input; the
  // quantized linears' inputs are subsampled for their errors.
  block.FinishForward();
  for (float v : x)
    if (!std::isfinite(v))
      Fail("quantize: block {} with quantized weights produces non-finite activations; nothing was written", layer);

  // Reconstruction error ||X W^T - X Q^T||^2 / ||X W^T||^2 on the gathered rows.
  const auto t_recon = Clock::now();
  std::map<std::string, double> errors;
  for (auto& [name, r] : block.recon()) {
    BlockTensor& t = block.Get(name);
    const TensorPlan& p = a.recipe->tensors[t.plan];
    const int64_t rows = p.rows(), n = r.n, m = int64_t(r.rows.size()) / n;
    if (m == 0) continue;
    std::vector<float> diff(size_t(rows * n));  // W - Q (rows, n)
    const size_t row_bytes = p.format->RowBytes(n);
    for (int64_t i = 0; i < rows; ++i) {
      p.format->dequantize(t.bytes.data() + size_t(i) * row_bytes, &diff[size_t(i * n)], n);
      for (int64_t j = 0; j < n; ++j) diff[size_t(i * n + j)] = t.f32[size_t(i * n + j)] - diff[size_t(i * n + j)];
    }
    std::vector<float> y(size_t(m * rows));  // (m, rows)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(rows), int(n), 1.0f, r.rows.data(), int(n),
                t.f32.data(), int(n), 0.0f, y.data(), int(rows));
    double norm = 0;
    for (float v : y) norm += double(v) * double(v);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(rows), int(n), 1.0f, r.rows.data(), int(n),
                diff.data(), int(n), 0.0f, y.data(), int(rows));
    double err = 0;
    for (float v : y) err += double(v) * double(v);
    errors[name] = norm > 0 ? err / norm : err;
  }
  T().recon_s += Since(t_recon);

  // 5. Hand the block's results over; its f32 state is freed with `block`.
  for (auto& [name, t] : block.tensors()) {
    if (!changed[name]) continue;
    LayerwiseTensor out;
    out.bytes = std::move(t.bytes);
    out.weights = std::move(t.f32);
    out.zeros = t.zeros;
    auto e = errors.find(name);
    if (e != errors.end()) out.recon_error = e->second;
    results.emplace(name, std::move(out));
  }
}

LayerwiseQuantizer::LayerwiseQuantizer(Args args) : impl_(std::make_unique<Impl>()) {
  impl_->a = std::move(args);
  LOWBIT_CHECK(impl_->a.model != nullptr && impl_->a.recipe != nullptr && impl_->a.base != nullptr &&
               impl_->a.pool != nullptr);
  LOWBIT_CHECK(impl_->a.importance.size() == impl_->a.recipe->tensors.size());
  for (size_t k = 0; k < impl_->a.recipe->tensors.size(); ++k) impl_->plan_index[impl_->a.recipe->tensors[k].name] = k;
}

LayerwiseQuantizer::~LayerwiseQuantizer() = default;

bool LayerwiseQuantizer::Take(const std::string& name, LayerwiseTensor* out) {
  const int layer = BlockLayer(name);
  if (layer < 0 || layer >= impl_->a.model->config.n_layers) return false;
  while (impl_->next_layer <= layer) impl_->RunLayer(impl_->next_layer++);
  auto it = impl_->results.find(name);
  if (it == impl_->results.end()) return false;
  *out = std::move(it->second);
  impl_->results.erase(it);
  return true;
}

LayerwiseTimings& LayerwiseQuantizer::timings() { return impl_->T(); }
const std::vector<std::string>& LayerwiseQuantizer::notes() const { return impl_->notes; }

}  // namespace lowbit
