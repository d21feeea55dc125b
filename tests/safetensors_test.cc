// safetensors reader and Hugging Face loader: valid files parse, and every
// corrupt or inconsistent input gives an Error naming the file and the problem.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "model/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> Bytes(const std::string& header, const std::vector<uint8_t>& data, uint64_t length_field) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(length_field >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// A file image with `header` padded by spaces to 8 bytes, so data offsets are aligned.
std::vector<uint8_t> Image(std::string header, size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return Bytes(header, std::vector<uint8_t>(data_bytes, 0), header.size());
}

// Parses `image` and returns the error message ("" if it parsed).
std::string ParseError(const std::vector<uint8_t>& image) {
  try {
    SafetensorsFile file(std::span<const uint8_t>(image), "test.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PARSE_ERROR(image, problem)                         \
  do {                                                             \
    const std::string message = ParseError(image);                 \
    EXPECT_NE(message.find("test.safetensors: "), std::string::npos) << message; \
    EXPECT_NE(message.find(problem), std::string::npos) << message; \
  } while (0)

TEST(Safetensors, ParsesTensorsAndIgnoresMetadata) {
  // a: F32 (2, 3) = 0..5 at [0, 24); b: BF16 (2,) at [24, 28); c: I64 (1,) at [32, 40).
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"c":{"dtype":"I64","shape":[1],"data_offsets":[32,40]}})";
  std::vector<uint8_t> image = Image(header, 40);
  const size_t data = image.size() - 40;
  for (int i = 0; i < 6; ++i) {
    const float v = float(i);
    std::memcpy(&image[data + 4 * size_t(i)], &v, 4);
  }
  const uint16_t b[2] = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  std::memcpy(&image[data + 24], b, 4);

  SafetensorsFile file(std::span<const uint8_t>(image), "test.safetensors");
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "a");  // sorted by offset
  const TensorView a = file.View("a");
  EXPECT_EQ(a.type, DType::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ToF32(a), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(ToF32(file.View("b")), (std::vector<float>{1.0f, -2.0f}));
  ASSERT_NE(file.Find("c"), nullptr);
  EXPECT_EQ(file.Find("c")->dtype, "I64");
  try {
    file.View("c");
    FAIL() << "an I64 view should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test.safetensors: tensor 'c' has dtype I64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(file.View("missing"), Error);
}

TEST(Safetensors, EmptyHeaderObjectIsValid) { EXPECT_EQ(ParseError(Image("{}", 0)), ""); }

TEST(Safetensors, RejectsTruncatedAndOversizedHeaders) {
  EXPECT_PARSE_ERROR(std::vector<uint8_t>(3, 1), "too short");
  EXPECT_PARSE_ERROR(Bytes("{}", std::vector<uint8_t>(), 1000), "runs past the end of the file");
  EXPECT_PARSE_ERROR(Bytes("{}", std::vector<uint8_t>(), ~uint64_t(0)), "runs past the end of the file");
  EXPECT_PARSE_ERROR(Bytes("[]", std::vector<uint8_t>(), 2), "does not start with '{'");
}

TEST(Safetensors, RejectsBadJson) {
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32",)", 0), "not valid JSON");
  EXPECT_PARSE_ERROR(Image(R"({"a":1})", 0), "entry is a JSON number");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "no dtype");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "no shape");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "non-negative");
}

TEST(Safetensors, RejectsDuplicateNames) {
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                     "lists tensor 'a' twice");
}

TEST(Safetensors, RejectsUnknownDtype) {
  EXPECT_PARSE_ERROR(Image(R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,2]}})", 2), "unknown dtype 'Q4'");
}

TEST(Safetensors, RejectsBadOffsets) {
  EXPECT_PARSE_ERROR(Image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "out of range");
  EXPECT_PARSE_ERROR(Image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), "begin after end");
  EXPECT_PARSE_ERROR(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                     "overlap");
  EXPECT_PARSE_ERROR(Image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8), "not a multiple of its 4-byte");
}

TEST(Safetensors, RejectsShapeSizeMismatch) {
  EXPECT_PARSE_ERROR(Image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24), "needs 24 bytes");
  EXPECT_PARSE_ERROR(
      Image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8),
      "absurd shape");
}

// ---------------------------------------------------------------- files on disk

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            fmt::format("lowbit_safetensors_test_{}_{}", getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Path(const std::string& name = "") const { return name.empty() ? path_.string() : (path_ / name).string(); }

 private:
  fs::path path_;
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

struct TestTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // written as F32
};

void WriteSafetensors(const std::string& path, const std::vector<TestTensor>& tensors) {
  std::string header = "{";
  std::vector<uint8_t> data;
  for (const TestTensor& t : tensors) {
    const size_t begin = data.size();
    data.resize(begin + 4 * t.values.size());
    std::memcpy(data.data() + begin, t.values.data(), 4 * t.values.size());
    header += fmt::format(R"({}"{}":{{"dtype":"F32","shape":[{}],"data_offsets":[{},{}]}})", header.size() > 1 ? "," : "",
                          t.name, fmt::join(t.shape, ","), begin, data.size());
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::vector<uint8_t> image = Bytes(header, data, header.size());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(image.data()), std::streamsize(image.size()));
}

std::vector<float> Ramp(int64_t n, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * float((i * 37) % 17 - 8);
  return v;
}

// A GPT-2 folder: n_embd 4, 1 layer, 2 heads, 8 positions, the real GPT-2 vocab.
constexpr int kVocab = 50257, kDim = 4, kFfn = 16, kPositions = 8;
const char* kGpt2Config =
    R"({"model_type":"gpt2","n_embd":4,"n_layer":1,"n_head":2,"n_inner":null,"n_positions":8,"vocab_size":50257})";

std::vector<TestTensor> Gpt2Tensors(const std::string& prefix) {
  std::vector<TestTensor> t = {
      {prefix + "wte.weight", {kVocab, kDim}, Ramp(int64_t(kVocab) * kDim, 0.01f)},
      {prefix + "wpe.weight", {kPositions, kDim}, Ramp(kPositions * kDim, 0.01f)},
      {prefix + "ln_f.weight", {kDim}, std::vector<float>(kDim, 1.0f)},
      {prefix + "ln_f.bias", {kDim}, std::vector<float>(kDim, 0.0f)},
      {prefix + "h.0.attn.bias", {1, 1, kPositions, kPositions}, std::vector<float>(kPositions * kPositions, 1.0f)},
  };
  auto add = [&](const char* name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    t.push_back({prefix + "h.0." + name, shape, Ramp(n, 0.1f)});
  };
  add("ln_1.weight", {kDim});
  add("ln_1.bias", {kDim});
  add("attn.c_attn.weight", {kDim, 3 * kDim});
  add("attn.c_attn.bias", {3 * kDim});
  add("attn.c_proj.weight", {kDim, kDim});
  add("attn.c_proj.bias", {kDim});
  add("ln_2.weight", {kDim});
  add("ln_2.bias", {kDim});
  add("mlp.c_fc.weight", {kDim, kFfn});
  add("mlp.c_fc.bias", {kFfn});
  add("mlp.c_proj.weight", {kFfn, kDim});
  add("mlp.c_proj.bias", {kDim});
  return t;
}

// Writes a GPT-2 folder; the tokenizer files come from ../shared (callers check it exists).
void WriteGpt2Folder(const TempDir& dir, const std::vector<TestTensor>& tensors, bool tokenizer = true) {
  WriteFile(dir.Path("config.json"), kGpt2Config);
  WriteSafetensors(dir.Path("model.safetensors"), tensors);
  if (tokenizer)
    for (const char* f : {"vocab.json", "merges.txt"})
      fs::copy_file(testing::SharedPath(std::string("tokenizers/gpt2/") + f), dir.Path(f));
}

std::string LoadError(const std::string& dir) {
  try {
    LoadModel(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_LOAD_ERROR(dir, file, problem)                                \
  do {                                                                       \
    const std::string message = LoadError(dir);                              \
    EXPECT_NE(message.find(file), std::string::npos) << message;             \
    EXPECT_NE(message.find(problem), std::string::npos) << message;          \
  } while (0)

TEST(SafetensorsFile, ReportsTruncatedFileByPath) {
  TempDir dir;
  WriteSafetensors(dir.Path("model.safetensors"), {{"w", {4}, {1, 2, 3, 4}}});
  const std::string path = dir.Path("model.safetensors");
  EXPECT_EQ(SafetensorsFile(path).View("w").NumElements(), 4);
  fs::resize_file(path, fs::file_size(path) - 2);
  try {
    SafetensorsFile file(path);
    FAIL() << "truncated file parsed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": tensor 'w'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsCheckpoint, ReadsShardsAndChecksTheIndex) {
  TempDir dir;
  WriteSafetensors(dir.Path("a.safetensors"), {{"x", {2}, {1, 2}}});
  WriteSafetensors(dir.Path("b.safetensors"), {{"y", {1}, {3}}});
  const std::string index = dir.Path("model.safetensors.index.json");
  WriteFile(index, R"({"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  SafetensorsCheckpoint ckpt(dir.Path());
  EXPECT_EQ(ckpt.TensorNames(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(ToF32(ckpt.View("y")), std::vector<float>{3});
  EXPECT_EQ(ckpt.files().size(), 2u);

  auto expect_error = [&](const std::string& json, const std::string& problem) {
    WriteFile(index, json);
    try {
      SafetensorsCheckpoint bad(dir.Path());
      ADD_FAILURE() << "accepted " << json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(index), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"weight_map":{"x":"b.safetensors"}})", "has no such tensor");
  expect_error(R"({"weight_map":{"x":"c.safetensors"}})", "does not exist");
  expect_error(R"({"weight_map":{"x":"../a.safetensors"}})", "not a plain file name");
  expect_error(R"({"weight_map":{}})", "weight_map is empty");
  expect_error(R"({"weight_map":)", "not valid JSON");
}

TEST(HfLoader, LoadsGpt2AndTransposesConv1D) {
  LOWBIT_REQUIRE_SHARED("tokenizers/gpt2/vocab.json");
  TempDir dir;
  const std::vector<TestTensor> tensors = Gpt2Tensors("transformer.");
  WriteGpt2Folder(dir, tensors);
  const std::unique_ptr<Model> model = LoadModel(dir.Path());
  EXPECT_EQ(model->source_format, "safetensors");
  EXPECT_EQ(model->config.arch, Arch::kGpt2);
  EXPECT_EQ(model->config.ffn_dim, 4 * kDim);  // n_inner null
  EXPECT_EQ(model->config.context_length, kPositions);
  EXPECT_TRUE(model->config.tied_output);
  // c_attn (in 4, out 12) -> attn_qkv (12, 4): element (o, i) = c_attn[i][o].
  const auto it = std::find_if(tensors.begin(), tensors.end(),
                               [](const TestTensor& t) { return t.name == "transformer.h.0.attn.c_attn.weight"; });
  ASSERT_NE(it, tensors.end());
  const std::vector<float>& c_attn = it->values;
  const TensorView& qkv = model->Get("blk.0.attn_qkv.weight", {3 * kDim, kDim});
  const std::vector<float> got = ToF32(qkv);
  for (int o = 0; o < 3 * kDim; ++o)
    for (int i = 0; i < kDim; ++i) EXPECT_EQ(got[size_t(o * kDim + i)], c_attn[size_t(i * 3 * kDim + o)]);
  EXPECT_EQ(model->Find("blk.0.attn.bias"), nullptr);
}

TEST(HfLoader, MissingConfig) {
  TempDir dir;
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path(), "no config.json");
}

TEST(HfLoader, BadConfigJson) {
  TempDir dir;
  WriteFile(dir.Path("config.json"), R"({"model_type": "gpt2", )");
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("config.json"), "not valid JSON");
  WriteFile(dir.Path("config.json"), R"({"model_type":"gpt2","n_embd":"big","n_layer":1,"n_head":2})");
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("config.json"), "\"n_embd\" is \"big\", expected an integer");
  WriteFile(dir.Path("config.json"),
            R"({"model_type":"llama","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,)"
            R"("intermediate_size":8,"vocab_size":8,"rope_scaling":{"rope_type":"llama3","factor":8.0}})");
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("config.json"), "rope_scaling");
}

TEST(HfLoader, UnknownModelType) {
  TempDir dir;
  WriteFile(dir.Path("config.json"), R"({"model_type": "falcon"})");
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("config.json"), "unsupported model_type \"falcon\"");
}

TEST(HfLoader, MissingWeights) {
  TempDir dir;
  WriteFile(dir.Path("config.json"), kGpt2Config);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path(), "no model.safetensors");
}

TEST(HfLoader, UnexpectedTensor) {
  TempDir dir;
  std::vector<TestTensor> tensors = Gpt2Tensors("");
  tensors.push_back({"h.0.attn.c_attn.qweight", {2}, {0, 0}});
  WriteGpt2Folder(dir, tensors, /*tokenizer=*/false);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("model.safetensors"), "unexpected tensor 'h.0.attn.c_attn.qweight'");
}

TEST(HfLoader, LayerBeyondConfig) {
  TempDir dir;
  std::vector<TestTensor> tensors = Gpt2Tensors("");
  tensors.push_back({"h.1.ln_1.bias", {kDim}, std::vector<float>(kDim, 0.0f)});
  WriteGpt2Folder(dir, tensors, /*tokenizer=*/false);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("model.safetensors"), "config.json has 1 layers");
}

TEST(HfLoader, CorruptWeightsFile) {
  TempDir dir;
  WriteGpt2Folder(dir, Gpt2Tensors(""), /*tokenizer=*/false);
  fs::resize_file(dir.Path("model.safetensors"), 100);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path("model.safetensors"), "runs past the end of the file");
}

TEST(HfLoader, MissingTokenizer) {
  TempDir dir;
  WriteGpt2Folder(dir, Gpt2Tensors(""), /*tokenizer=*/false);
  const std::string message = LoadError(dir.Path());
  EXPECT_NE(message.find(dir.Path()), std::string::npos) << message;
  EXPECT_NE(message.find("tokenizer"), std::string::npos) << message;
}

TEST(HfLoader, ShapeMismatch) {
  LOWBIT_REQUIRE_SHARED("tokenizers/gpt2/vocab.json");
  TempDir dir;
  std::vector<TestTensor> tensors = Gpt2Tensors("");
  tensors[2] = {"ln_f.weight", {kDim + 1}, std::vector<float>(kDim + 1, 1.0f)};
  WriteGpt2Folder(dir, tensors);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path(), "'output_norm.weight' has shape (5), expected (4)");
}

TEST(HfLoader, NanWeights) {
  LOWBIT_REQUIRE_SHARED("tokenizers/gpt2/vocab.json");
  TempDir dir;
  std::vector<TestTensor> tensors = Gpt2Tensors("");
  tensors[1].values[5] = std::numeric_limits<float>::quiet_NaN();  // wpe
  WriteGpt2Folder(dir, tensors);
  EXPECT_LOAD_ERROR(dir.Path(), dir.Path(), "'position_embd.weight' holds a non-finite value");
}

}  // namespace
}  // namespace lowbit
