// End-to-end checks of loaders + reference forward pass on stories260K, a
// real model: llama2.c's golden greedy text from both the llama2.c
// checkpoint and llama.cpp's GGUF conversion, and invariances of the runtime
// (batched vs token-by-token, thread count, repeated runs).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "runtime/block.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

using ::lowbit::testing::SharedPath;

// From ../shared/README.md: llama2.c's own test expects exactly this text for
// greedy decoding from BOS with 200 steps (the BOS position counts as a step,
// so it is 199 generated tokens).
constexpr const char* kGolden =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to "
    "the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't "
    "find it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to "
    "do.\"\nLily didn't want to help her mom, so";

constexpr const char* kGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kBin = "models/stories260K/stories260K.bin";

std::string Greedy(const Model& model, int n, int threads = 2) {
  SessionOptions so;
  so.threads = threads;
  so.max_context = 512;
  Session session(model, so);
  Sampler sampler(SamplerOptions{});
  return Generate(session, "", n, sampler, nullptr).text;
}

TEST(Stories260K, GoldenTextFromGguf) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto model = LoadModel(SharedPath(kGguf));
  EXPECT_EQ(model->config.dim, 64);
  EXPECT_EQ(model->config.n_kv_heads, 4);
  EXPECT_EQ(Greedy(*model, 199), kGolden);
}

TEST(Stories260K, GoldenTextFromLlama2cCheckpoint) {
  LOWBIT_REQUIRE_SHARED(kBin);
  auto model = LoadModel(SharedPath(kBin));
  EXPECT_EQ(model->source_format, "llama2c");
  EXPECT_TRUE(model->config.tied_output);
  EXPECT_EQ(Greedy(*model, 199), kGolden);
}

TEST(Stories260K, FirstGreedyTokenIdsMatchReadme) {
  LOWBIT_REQUIRE_SHARED(kBin);
  auto model = LoadModel(SharedPath(kBin));
  Session session(*model, SessionOptions{2, 512, 512});
  Sampler sampler(SamplerOptions{});
  const GenerateResult r = Generate(session, "", 6, sampler, nullptr);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{403, 407, 261, 378, 432, 383}));
}

std::vector<float> AllLogits(const Model& model, const std::vector<int32_t>& tokens, int threads, int batch) {
  Session session(model, SessionOptions{threads, 512, batch});
  session.Eval(tokens, true);
  return {session.logits().begin(), session.logits().end()};
}

TEST(Stories260K, GgufAndLlama2cGiveTheSameLogits) {
  LOWBIT_REQUIRE_SHARED(kBin);
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto a = LoadModel(SharedPath(kBin));
  auto b = LoadModel(SharedPath(kGguf));
  const std::vector<int32_t> tokens = a->tokenizer->Encode("Once upon a time there was a cat.", true);
  EXPECT_EQ(tokens, b->tokenizer->Encode("Once upon a time there was a cat.", true));
  EXPECT_EQ(AllLogits(*a, tokens, 2, 512), AllLogits(*b, tokens, 2, 512));
}

TEST(Stories260K, BatchedEqualsTokenByTokenAndThreadCountDoesNotMatter) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto model = LoadModel(SharedPath(kGguf));
  const std::vector<int32_t> tokens = model->tokenizer->Encode("Tom and Sue went to the shop to buy milk.", true);
  const std::vector<float> batched = AllLogits(*model, tokens, 2, 512);
  // Token by token through the KV cache: same math, so bit-identical per row.
  EXPECT_EQ(AllLogits(*model, tokens, 2, 1), batched);
  EXPECT_EQ(AllLogits(*model, tokens, 1, 512), batched);
  EXPECT_EQ(AllLogits(*model, tokens, 3, 5), batched);
}

TEST(Stories260K, SamplingIsSeededAndDeterministic) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto model = LoadModel(SharedPath(kGguf));
  auto sample = [&](uint64_t seed) {
    Session session(*model, SessionOptions{2, 512, 512});
    Sampler sampler(SamplerOptions{0.8f, 40, 0.95f, seed});
    return Generate(session, "Once upon a time", 60, sampler, nullptr).tokens;
  };
  EXPECT_EQ(sample(7), sample(7));
  EXPECT_NE(sample(7), sample(8));
}

TEST(Stories260K, ContextOverflowAndBadTokensAreErrors) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto model = LoadModel(SharedPath(kGguf));
  Session session(*model, SessionOptions{1, 16, 512});
  std::vector<int32_t> tokens(17, 5);
  EXPECT_THROW(session.Eval(tokens, false), Error);
  std::vector<int32_t> bad = {1, 512};
  EXPECT_THROW(session.Eval(bad, false), Error);
}

TEST(BlockRoles, NamesParseBackToTheirLayerAndRole) {
  for (int r = 0; r < kBlockRoles; ++r)
    for (int layer : {0, 7, 21, 123456}) {
      const std::string name = "blk." + std::to_string(layer) + "." + std::string(BlockRoleName(BlockRole(r)));
      const auto parsed = ParseBlockTensor(name);
      ASSERT_TRUE(parsed.has_value()) << name;
      EXPECT_EQ(parsed->first, layer) << name;
      EXPECT_EQ(parsed->second, BlockRole(r)) << name;
    }
  for (const char* name : {"output.weight", "token_embd.weight", "blk.3.attn_q", "blk..attn_q.weight",
                           "blk.x.attn_q.weight", "blk.3attn_q.weight", "blk.3.attn_q.weight.extra", "blk.3."})
    EXPECT_FALSE(ParseBlockTensor(name).has_value()) << name;
}

TEST(BlockRoles, EveryBlockTensorOfARealModelHasARole) {
  // A role missing from the list would be a tensor the Session never resolves.
  LOWBIT_REQUIRE_SHARED(kGguf);
  auto model = LoadModel(SharedPath(kGguf));
  int blocks = 0;
  for (const TensorView& t : model->tensors())
    if (t.name.starts_with("blk.")) {
      EXPECT_TRUE(ParseBlockTensor(t.name).has_value()) << t.name;
      ++blocks;
    }
  EXPECT_GT(blocks, 0);
}

TEST(BlockRoles, ProductStepsReadEachProductWeightOnceInForwardOrder) {
  for (Arch arch : {Arch::kLlama, Arch::kGpt2}) {
    std::vector<BlockRole> seen;
    for (int step = 0; step < kProductSteps; ++step)
      for (BlockRole r : ProductStepRoles(arch, step)) {
        if (!seen.empty()) {
          EXPECT_LT(int(seen.back()), int(r)) << "step " << step;  // the arena's order
        }
        seen.push_back(r);
      }
    EXPECT_EQ(seen.size(), arch == Arch::kGpt2 ? 4u : 7u);
  }
}

}  // namespace
}  // namespace lowbit
