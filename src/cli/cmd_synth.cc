// `lowbit synth --arch llama|gpt2 --shape NAME -o OUT.gguf [--type FORMAT] [--seed S]`:
// writes a random-weight model with the exact tensor shapes of a real one
// (for speed and memory measurements without downloading weights), with a
// real tokenizer copied from a vocab GGUF so the model runs anywhere.
//
// Weights are N(0, 0.02^2) like GPT-2/Llama initialisation: a row of d such
// weights times an RMS-normalised input has std 0.02 * sqrt(d) (0.9 for
// d = 2048), so activations stay O(1) through the layers; norm weights are 1.
// Every row draws from its own stream seeded by (seed, tensor name, row), so
// the file depends on the seed only, not on threads or tensor order. Tensors
// are generated, quantized and written one at a time: peak memory is one
// tensor in f32 plus its encoded bytes.
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace lowbit::cli {

namespace {

struct SynthShape {
  const char* name;
  Arch arch;
  int dim, n_layers, n_heads, n_kv_heads, ffn_dim, context;
  float norm_eps, rope_theta;
};

// Hyper-parameters of the real models (their config.json); the vocab size
// comes from the vocab file. "tiny" keeps every row length a multiple of 256
// so that every block format applies.
constexpr SynthShape kShapes[] = {
    {"tiny", Arch::kLlama, 256, 2, 4, 2, 768, 256, 1e-5f, 10000.0f},
    {"tinyllama-1.1b", Arch::kLlama, 2048, 22, 32, 4, 5632, 2048, 1e-5f, 10000.0f},
    {"llama2-7b", Arch::kLlama, 4096, 32, 32, 32, 11008, 4096, 1e-5f, 10000.0f},
    {"tiny", Arch::kGpt2, 256, 2, 4, 4, 1024, 256, 1e-5f, 0.0f},
    {"gpt2-124m", Arch::kGpt2, 768, 12, 12, 12, 3072, 1024, 1e-5f, 0.0f},
    {"gpt2-355m", Arch::kGpt2, 1024, 24, 16, 16, 4096, 1024, 1e-5f, 0.0f},
};

constexpr const char* kLlamaVocab = "ggml-vocab-llama-spm.gguf";
constexpr const char* kGpt2Vocab = "ggml-vocab-gpt-2.gguf";

std::string ShapeNames(Arch arch) {
  std::string s;
  for (const SynthShape& sh : kShapes)
    if (sh.arch == arch) s += (s.empty() ? "" : ", ") + std::string(sh.name);
  return s;
}

// llama.cpp's llama_ftype for files whose matrices are all of one ggml type
// (cosmetic: llama.cpp guesses it when absent). 0 when there is none.
uint32_t LlamaFileType(uint32_t gguf_type) {
  switch (gguf_type) {
    case 0:
      return 0;  // ALL_F32
    case 1:
      return 1;  // MOSTLY_F16
    case 2:
      return 2;  // MOSTLY_Q4_0
    case 3:
      return 3;  // MOSTLY_Q4_1
    case 8:
      return 7;  // MOSTLY_Q8_0
    case 6:
      return 8;  // MOSTLY_Q5_0
    case 7:
      return 9;  // MOSTLY_Q5_1
    case 10:
      return 10;  // MOSTLY_Q2_K
    case 12:
      return 14;  // MOSTLY_Q4_K_S
    case 13:
      return 16;  // MOSTLY_Q5_K_S
    case 14:
      return 18;  // MOSTLY_Q6_K
    case 20:
      return 25;  // MOSTLY_IQ4_NL
    case 23:
      return 30;  // MOSTLY_IQ4_XS
    case 30:
      return 32;  // MOSTLY_BF16
    default:
      return 0;
  }
}

// The vocab GGUF: --vocab-from, else data/tokenizer-tests/<file> under
// $LOWBIT_SHARED, ../shared, or a "shared" folder beside any parent of the
// working directory or of the lowbit binary (the checkout's sibling).
std::string FindVocab(const std::string& given, const char* file) {
  namespace fs = std::filesystem;
  if (!given.empty()) {
    if (!fs::exists(given)) Fail("{}: vocab file not found (--vocab-from)", given);
    return given;
  }
  const fs::path rel = fs::path("data/tokenizer-tests") / file;
  std::vector<fs::path> roots;
  if (const char* env = std::getenv("LOWBIT_SHARED")) roots.emplace_back(env);
  roots.emplace_back("../shared");
  std::error_code ec;
  for (fs::path start : {fs::current_path(ec), fs::read_symlink("/proc/self/exe", ec).parent_path()})
    for (fs::path p = start; !p.empty() && p != p.root_path(); p = p.parent_path()) roots.push_back(p / "shared");
  for (const fs::path& r : roots)
    if (fs::exists(r / rel, ec)) return (r / rel).string();
  Fail(
      "vocab file {} not found under $LOWBIT_SHARED, ../shared or a shared/ folder beside the checkout; "
      "pass --vocab-from PATH/{}",
      rel.string(), file);
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Fills row-major (rows, n) with N(0, std^2) by Box-Muller, one stream per row.
void FillGaussian(uint64_t seed, const std::string& name, float std, int64_t rows, int64_t n, float* out,
                  ThreadPool& pool) {
  const uint64_t base = seed * 0x9E3779B97F4A7C15ull ^ HashName(name);
  pool.ParallelFor(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint64_t s = base + uint64_t(r) * 0xD1B54A32D192ED03ull;
      SplitMix64(s);
      float* row = out + r * n;
      for (int64_t i = 0; i < n; i += 2) {
        const double u1 = double((SplitMix64(s) >> 11) + 1) * 0x1p-53;  // (0, 1]
        const double u2 = double(SplitMix64(s) >> 11) * 0x1p-53;        // [0, 1)
        const double radius = std * std::sqrt(-2.0 * std::log(u1));
        row[i] = float(radius * std::cos(2.0 * M_PI * u2));
        if (i + 1 < n) row[i + 1] = float(radius * std::sin(2.0 * M_PI * u2));
      }
    }
  });
}

// One tensor of the model: its shape and how to initialise it.
struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;  // row-major
  float value;                 // Gaussian std, or the constant when `constant`
  bool constant = false;       // all elements = value (norm weights: 1)
};

std::vector<TensorPlan> PlanTensors(const SynthShape& s, int vocab) {
  constexpr float kStd = 0.02f;
  const int64_t d = s.dim, f = s.ffn_dim, v = vocab, hd = s.dim / s.n_heads;
  const int64_t q = int64_t(s.n_heads) * hd, kv = int64_t(s.n_kv_heads) * hd;
  std::vector<TensorPlan> t;
  auto blk = [](int l, const char* n) { return fmt::format("blk.{}.{}", l, n); };
  t.push_back({"token_embd.weight", {v, d}, kStd});
  if (s.arch == Arch::kGpt2) {
    t.push_back({"position_embd.weight", {s.context, d}, 0.01f});  // GPT-2 initialises wpe at 0.01
    for (int l = 0; l < s.n_layers; ++l) {
      t.push_back({blk(l, "attn_norm.weight"), {d}, 1.0f, true});
      t.push_back({blk(l, "attn_norm.bias"), {d}, kStd});
      t.push_back({blk(l, "attn_qkv.weight"), {3 * d, d}, kStd});
      t.push_back({blk(l, "attn_qkv.bias"), {3 * d}, kStd});
      t.push_back({blk(l, "attn_output.weight"), {d, d}, kStd});
      t.push_back({blk(l, "attn_output.bias"), {d}, kStd});
      t.push_back({blk(l, "ffn_norm.weight"), {d}, 1.0f, true});
      t.push_back({blk(l, "ffn_norm.bias"), {d}, kStd});
      t.push_back({blk(l, "ffn_up.weight"), {f, d}, kStd});
      t.push_back({blk(l, "ffn_up.bias"), {f}, kStd});
      t.push_back({blk(l, "ffn_down.weight"), {d, f}, kStd});
      t.push_back({blk(l, "ffn_down.bias"), {d}, kStd});
    }
    t.push_back({"output_norm.weight", {d}, 1.0f, true});
    t.push_back({"output_norm.bias", {d}, kStd});
  } else {
    for (int l = 0; l < s.n_layers; ++l) {
      t.push_back({blk(l, "attn_norm.weight"), {d}, 1.0f, true});
      t.push_back({blk(l, "attn_q.weight"), {q, d}, kStd});
      t.push_back({blk(l, "attn_k.weight"), {kv, d}, kStd});
      t.push_back({blk(l, "attn_v.weight"), {kv, d}, kStd});
      t.push_back({blk(l, "attn_output.weight"), {d, q}, kStd});
      t.push_back({blk(l, "ffn_norm.weight"), {d}, 1.0f, true});
      t.push_back({blk(l, "ffn_gate.weight"), {f, d}, kStd});
      t.push_back({blk(l, "ffn_up.weight"), {f, d}, kStd});
      t.push_back({blk(l, "ffn_down.weight"), {d, f}, kStd});
    }
    t.push_back({"output_norm.weight", {d}, 1.0f, true});
  }
  // llama.cpp's gpt2 graph needs an explicit output head (GPT-2's is tied; the converter duplicates it).
  t.push_back({"output.weight", {v, d}, kStd});
  return t;
}

}  // namespace

Runner AddSynthCommand(CLI::App& app) {
  struct Options {
    std::string arch = "llama";
    std::string shape;
    std::string output;
    std::string type = "f16";
    uint64_t seed = 1;
    std::string vocab_from;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight GGUF model with the shapes of a real one");
  cmd->add_option("--arch", o->arch, "architecture: llama or gpt2")->check(CLI::IsMember({"llama", "gpt2"}));
  cmd->add_option("--shape", o->shape,
                  fmt::format("llama: {}; gpt2: {}", ShapeNames(Arch::kLlama), ShapeNames(Arch::kGpt2)))
      ->required();
  cmd->add_option("-o,--output", o->output, "output .gguf file")->required();
  cmd->add_option("--type", o->type, "format of the 2-D weights (1-D norms and biases stay f32)");
  cmd->add_option("--seed", o->seed, "random seed");
  cmd->add_option("--vocab-from", o->vocab_from,
                  fmt::format("GGUF whose tokenizer.ggml.* keys to copy (default: ../shared/data/tokenizer-tests/{} "
                              "or {})",
                              kLlamaVocab, kGpt2Vocab));
  cmd->add_option("-t,--threads", o->threads, "worker threads for generation (default: one per core)")
      ->check(CLI::Range(0, 1024));
  return [o] {
    const Arch arch = o->arch == "gpt2" ? Arch::kGpt2 : Arch::kLlama;
    const SynthShape* shape = nullptr;
    for (const SynthShape& s : kShapes)
      if (s.arch == arch && o->shape == s.name) shape = &s;
    if (shape == nullptr) Fail("unknown --shape '{}' for --arch {} (known: {})", o->shape, o->arch, ShapeNames(arch));
    const FormatInfo* format = FindFormatByName(o->type);
    if (format == nullptr || !format->weight_format)
      Fail("unknown weight format --type '{}' (known: {})", o->type, FormatNames(true));

    const std::string vocab_path = FindVocab(o->vocab_from, arch == Arch::kGpt2 ? kGpt2Vocab : kLlamaVocab);
    const GgufFile vocab_file(vocab_path);
    const std::string tokenizer_model = vocab_file.GetString("tokenizer.ggml.model");
    if (tokenizer_model != (arch == Arch::kGpt2 ? "gpt2" : "llama"))
      Fail("{}: tokenizer.ggml.model is '{}', which does not suit --arch {}", vocab_path, tokenizer_model, o->arch);
    const int vocab = int(vocab_file.GetStringArray("tokenizer.ggml.tokens").size());
    const std::vector<TensorPlan> plan = PlanTensors(*shape, vocab);
    for (const TensorPlan& t : plan)
      if (t.shape.size() == 2 && t.shape[1] % format->block_size != 0)
        Fail("--type {}: tensor '{}' has rows of {} elements, not a multiple of the block size {}", format->name,
             t.name, t.shape[1], format->block_size);

    GgufWriter w(o->output);
    const std::string a(ArchName(arch));
    w.SetString("general.architecture", a);
    w.SetString("general.name", fmt::format("lowbit synth {} seed {}", shape->name, o->seed));
    if (format->ggml_native && (format->gguf_type == 0 || LlamaFileType(format->gguf_type) != 0))
      w.SetUint32("general.file_type", LlamaFileType(format->gguf_type));
    w.SetUint32(a + ".context_length", uint32_t(shape->context));
    w.SetUint32(a + ".embedding_length", uint32_t(shape->dim));
    w.SetUint32(a + ".block_count", uint32_t(shape->n_layers));
    w.SetUint32(a + ".feed_forward_length", uint32_t(shape->ffn_dim));
    w.SetUint32(a + ".attention.head_count", uint32_t(shape->n_heads));
    if (arch == Arch::kGpt2) {
      w.SetFloat32(a + ".attention.layer_norm_epsilon", shape->norm_eps);
    } else {
      w.SetUint32(a + ".attention.head_count_kv", uint32_t(shape->n_kv_heads));
      w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", shape->norm_eps);
      w.SetFloat32(a + ".rope.freq_base", shape->rope_theta);
      w.SetUint32(a + ".rope.dimension_count", uint32_t(shape->dim / shape->n_heads));
    }
    w.SetUint32(a + ".vocab_size", uint32_t(vocab));
    for (const auto& [key, value] : vocab_file.metadata())
      if (key.starts_with("tokenizer.")) w.Set(key, value);

    const FormatInfo& f32 = GetFormat(DType::kF32);
    int64_t total = 0;
    for (const TensorPlan& t : plan) {
      w.AddTensor(t.name, t.shape, t.shape.size() == 2 ? *format : f32);
      int64_t n = 1;
      for (int64_t s : t.shape) n *= s;
      total += n;
    }
    w.WriteHeader();

    ThreadPool pool(o->threads);
    Progress progress("synth", total);
    int64_t done = 0;
    std::vector<float> x;
    std::vector<uint8_t> bytes;
    for (size_t k = 0; k < plan.size(); ++k) {
      ThrowIfInterrupted();
      const TensorPlan& t = plan[k];
      const int64_t n = t.shape.back(), rows = t.shape.size() == 2 ? t.shape[0] : 1;
      x.resize(size_t(rows * n));
      if (t.constant)
        std::fill(x.begin(), x.end(), t.value);
      else
        FillGaussian(o->seed, t.name, t.value, rows, n, x.data(), pool);
      const FormatInfo& tf = t.shape.size() == 2 ? *format : f32;
      bytes.resize(w.TensorBytes(k));
      LOWBIT_CHECK(bytes.size() == size_t(rows) * tf.RowBytes(n));
      tf.quantize(x.data(), rows, n, bytes.data(), nullptr);  // whole tensor: per-tensor formats share a scale
      w.WriteTensorData(bytes);
      done += rows * n;
      progress.Update(done, t.name);
    }
    w.Finish();
    progress.Finish();
    fmt::print(stderr, "wrote {} ({} {}, {} tensors, {} parameters, {}, vocab {} from {})\n", o->output, a, shape->name,
               plan.size(), total, format->name, vocab, vocab_path);
  };
}

}  // namespace lowbit::cli
