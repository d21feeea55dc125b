// GGUF writer: every metadata type and tensors of every lowbit format and of
// several ggml block types round-trip through GgufFile; stories260K re-written
// by lowbit is byte-identical to llama.cpp's file and loads with bit-identical
// logits; misuse fails with a message
// naming the file and leaves no file behind.
#include "io/gguf_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/format.h"
#include "io/gguf.h"
#include "model/model.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using ::lowbit::testing::SharedPath;

std::string TempPath(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "lowbit_gguf_writer";
  fs::create_directories(dir);
  const fs::path p = dir / name;
  fs::remove(p);
  return p.string();
}

// Field-by-field equality of metadata values (float32 compared after the
// rounding the file applies).
void ExpectSameValue(const GgufValue& a, const GgufValue& b, const std::string& key) {
  ASSERT_EQ(a.type, b.type) << key;
  switch (a.type) {
    case GgufType::kFloat32:
      EXPECT_EQ(float(a.f), float(b.f)) << key;
      break;
    case GgufType::kFloat64:
      EXPECT_EQ(a.f, b.f) << key;
      break;
    case GgufType::kString:
      EXPECT_EQ(a.str, b.str) << key;
      break;
    case GgufType::kArray:
      ASSERT_EQ(a.array_type, b.array_type) << key;
      ASSERT_EQ(a.array.size(), b.array.size()) << key;
      for (size_t k = 0; k < a.array.size(); ++k) ExpectSameValue(a.array[k], b.array[k], key);
      break;
    default:
      EXPECT_EQ(a.AsInt(), b.AsInt()) << key;
  }
}

// One value of every scalar type at its extremes, strings, arrays of every
// element type, nested and empty arrays.
std::vector<std::pair<std::string, GgufValue>> EveryMetadataType() {
  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back("general.architecture", GgufString("llama"));
  kv.emplace_back("t.u8", GgufUint(GgufType::kUint8, 255));
  kv.emplace_back("t.i8", GgufInt(GgufType::kInt8, -128));
  kv.emplace_back("t.u16", GgufUint(GgufType::kUint16, 65535));
  kv.emplace_back("t.i16", GgufInt(GgufType::kInt16, -32768));
  kv.emplace_back("t.u32", GgufUint(GgufType::kUint32, 4294967295u));
  kv.emplace_back("t.i32", GgufInt(GgufType::kInt32, std::numeric_limits<int32_t>::min()));
  kv.emplace_back("t.f32", GgufFloat(GgufType::kFloat32, -1.5e-7));
  kv.emplace_back("t.bool", GgufBool(true));
  kv.emplace_back("t.string", GgufString(std::string("h\xc3\xa9llo\0world", 12)));
  kv.emplace_back("t.empty_string", GgufString(""));
  kv.emplace_back("t.u64", GgufUint(GgufType::kUint64, std::numeric_limits<uint64_t>::max()));
  kv.emplace_back("t.i64", GgufInt(GgufType::kInt64, std::numeric_limits<int64_t>::min()));
  kv.emplace_back("t.f64", GgufFloat(GgufType::kFloat64, 3.141592653589793));
  kv.emplace_back("t.array.u8",
                  GgufArray(GgufType::kUint8, {GgufUint(GgufType::kUint8, 0), GgufUint(GgufType::kUint8, 7)}));
  kv.emplace_back("t.array.i8", GgufArray(GgufType::kInt8, {GgufInt(GgufType::kInt8, -1)}));
  kv.emplace_back("t.array.u16", GgufArray(GgufType::kUint16, {GgufUint(GgufType::kUint16, 300)}));
  kv.emplace_back("t.array.i16", GgufArray(GgufType::kInt16, {GgufInt(GgufType::kInt16, -300)}));
  kv.emplace_back("t.array.u32", GgufArray(GgufType::kUint32, {GgufUint(GgufType::kUint32, 1u << 31)}));
  kv.emplace_back("t.array.i32",
                  GgufArray(GgufType::kInt32, {GgufInt(GgufType::kInt32, -5), GgufInt(GgufType::kInt32, 6)}));
  kv.emplace_back("t.array.f32", GgufArray(GgufType::kFloat32,
                                           {GgufFloat(GgufType::kFloat32, 0.25), GgufFloat(GgufType::kFloat32, -0.0)}));
  kv.emplace_back("t.array.bool", GgufArray(GgufType::kBool, {GgufBool(false), GgufBool(true)}));
  kv.emplace_back("t.array.string", GgufStringArray({"<s>", "", "\xe2\x96\x81the"}));
  kv.emplace_back("t.array.u64", GgufArray(GgufType::kUint64, {GgufUint(GgufType::kUint64, uint64_t(1) << 63)}));
  kv.emplace_back("t.array.i64", GgufArray(GgufType::kInt64, {GgufInt(GgufType::kInt64, -(int64_t(1) << 62))}));
  kv.emplace_back("t.array.f64", GgufArray(GgufType::kFloat64, {GgufFloat(GgufType::kFloat64, 1e300)}));
  kv.emplace_back("t.array.empty", GgufArray(GgufType::kFloat32, {}));
  kv.emplace_back("t.array.nested",
                  GgufArray(GgufType::kArray, {GgufStringArray({"a", "b"}), GgufArray(GgufType::kUint8, {})}));
  return kv;
}

struct TestTensor {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  std::vector<uint8_t> bytes;
};

// Tensors of every lowbit format (quantized from Gaussian rows with the
// format's own codec) and raw blocks of ggml types lowbit may not decode.
std::vector<TestTensor> SomeTensors() {
  std::mt19937 rng(7);
  std::normal_distribution<float> gauss;
  std::vector<TestTensor> out;
  for (const FormatInfo& f : AllFormats()) {
    const int64_t n = (512 + f.block_size - 1) / f.block_size * f.block_size, rows = 3;
    std::vector<float> x(size_t(rows * n));
    for (float& v : x) v = gauss(rng);
    TestTensor t{fmt::format("fmt.{}", f.name), {uint64_t(n), uint64_t(rows)}, f.gguf_type, {}};
    t.bytes.resize(size_t(rows) * f.RowBytes(n));
    f.quantize(x.data(), rows, n, t.bytes.data(), nullptr);
    out.push_back(std::move(t));
  }
  // Raw ggml blocks (Q4_0: 18 B per 32, Q8_0: 34 B per 32, Q4_K: 144 B per 256), 3-D and 1-D shapes.
  for (const auto& [name, ne, type] : std::vector<std::tuple<const char*, std::vector<uint64_t>, uint32_t>>{
           {"raw.q4_0", {64, 3, 2}, 2}, {"raw.q8_0", {32}, 8}, {"raw.q4_k", {256, 5}, 12}}) {
    TestTensor t{name, ne, type, {}};
    uint64_t el = 1;
    for (uint64_t d : ne) el *= d;
    const GgmlTypeInfo* g = FindGgmlType(type);
    t.bytes.resize(size_t(el / uint64_t(g->block_size) * uint64_t(g->type_size)));
    for (uint8_t& b : t.bytes) b = uint8_t(rng());
    out.push_back(std::move(t));
  }
  return out;
}

void WriteAll(GgufWriter& w, const std::vector<TestTensor>& tensors, size_t piece) {
  for (const TestTensor& t : tensors) w.AddTensor(t.name, t.ne, t.type);
  for (const TestTensor& t : tensors) {
    EXPECT_EQ(w.next_tensor_name(), t.name);
    for (size_t at = 0; at < t.bytes.size(); at += piece)
      w.WriteTensorData(std::span(t.bytes).subspan(at, std::min(piece, t.bytes.size() - at)));
  }
  EXPECT_EQ(w.next_tensor_name(), "");
}

void ExpectTensorsRoundTrip(const GgufFile& f, const std::vector<TestTensor>& tensors) {
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const GgufTensorInfo& info = f.tensors()[k];
    const TestTensor& t = tensors[k];
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.ne, t.ne) << t.name;
    EXPECT_EQ(info.ggml_type, t.type) << t.name;
    ASSERT_EQ(info.bytes, t.bytes.size()) << t.name;
    EXPECT_EQ(info.offset % f.alignment(), 0u) << t.name;
    EXPECT_EQ(std::memcmp(info.data, t.bytes.data(), t.bytes.size()), 0) << t.name;
  }
}

TEST(GgufWriter, EveryMetadataTypeAndFormatRoundTrips) {
  const std::string path = TempPath("every_type.gguf");
  const auto kv = EveryMetadataType();
  const auto tensors = SomeTensors();
  {
    GgufWriter w(path);
    for (const auto& [k, v] : kv) w.Set(k, v);
    WriteAll(w, tensors, size_t(1) << 20);
    EXPECT_FALSE(fs::exists(path)) << "the file must appear only on Finish";
    w.Finish();
  }
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_FALSE(f.Has("general.alignment")) << "the default alignment is implicit";
  // Quantized tensors (q4_0 ...) make the writer add the quantization version.
  ASSERT_EQ(f.metadata().size(), kv.size() + 1);
  for (size_t k = 0; k < kv.size(); ++k) {
    EXPECT_EQ(f.metadata()[k].first, kv[k].first);
    ExpectSameValue(f.metadata()[k].second, kv[k].second, kv[k].first);
  }
  EXPECT_EQ(f.GetInt("general.quantization_version"), 2);
  EXPECT_EQ(f.Find("general.quantization_version")->type, GgufType::kUint32);
  ExpectTensorsRoundTrip(f, tensors);
  // Every lowbit format's tensor is also a valid view for the model loaders.
  for (const FormatInfo& fi : AllFormats()) {
    const TensorView v = f.View(*f.FindTensor(fmt::format("fmt.{}", fi.name)));
    EXPECT_EQ(v.type, fi.id);
    EXPECT_EQ(v.shape, (std::vector<int64_t>{3, int64_t(v.RowLength())}));
  }
  // The data section ends padded to the alignment, as ggml writes it.
  EXPECT_EQ(f.file_size() % 32, 0u);
}

TEST(GgufWriter, StreamsPiecesAndHonoursAlignment) {
  const std::string path = TempPath("aligned.gguf");
  const auto tensors = SomeTensors();
  GgufWriter w(path, 128);
  w.SetString("general.architecture", "llama");
  WriteAll(w, tensors, 7);  // pieces that never line up with blocks or tensors
  w.Finish();
  GgufFile f(path);
  EXPECT_EQ(f.alignment(), 128u);
  EXPECT_EQ(f.Find("general.alignment")->type, GgufType::kUint32);
  EXPECT_EQ(f.data_offset() % 128, 0u);
  ExpectTensorsRoundTrip(f, tensors);
}

TEST(GgufWriter, FloatOnlyFilesHaveNoQuantizationVersion) {
  const std::string path = TempPath("float.gguf");
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  GgufWriter w(path);
  w.SetString("general.architecture", "llama");
  w.AddTensor("a", {2, 3}, GetFormat(DType::kF32));
  w.WriteTensorData(std::span(reinterpret_cast<const uint8_t*>(x.data()), 24));
  w.Finish();
  GgufFile f(path);
  EXPECT_FALSE(f.Has("general.quantization_version"));
  const TensorView v = f.View(*f.FindTensor("a"));
  EXPECT_EQ(v.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.tensors()[0].ne, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(std::memcmp(v.data, x.data(), 24), 0);
}

// Runs fn, expects an Error whose message contains every fragment.
template <typename Fn>
void ExpectError(Fn&& fn, std::initializer_list<const char*> fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const char* s : fragments) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

TEST(GgufWriter, MisuseFailsNamingTheFileAndLeavesNoFile) {
  const std::string path = TempPath("bad.gguf");
  ExpectError([&] { GgufWriter w(path, 24); }, {"bad.gguf", "alignment 24"});
  ExpectError([&] { GgufWriter("/nonexistent-dir/x.gguf"); }, {"/nonexistent-dir/x.gguf"});
  {
    GgufWriter w(path);
    w.SetUint32("a", 1);
    ExpectError([&] { w.SetUint32("a", 2); }, {"bad.gguf", "duplicate metadata key 'a'"});
    ExpectError([&] { w.SetUint32("general.alignment", 64); }, {"general.alignment"});
    ExpectError(
        [&] {
          w.Set("big", GgufUint(GgufType::kUint8, 256));
          w.WriteHeader();
        },
        {"'big'", "uint8"});
  }
  {
    GgufWriter w(path);
    w.Set("mixed", GgufArray(GgufType::kUint8, {GgufInt(GgufType::kInt32, 1)}));
    ExpectError([&] { w.WriteHeader(); }, {"'mixed'", "array of uint8 holds a int32"});
  }
  {
    GgufWriter w(path);
    w.AddTensor("t", {32, 2}, 8);
    ExpectError([&] { w.AddTensor("t", {32}, 8); }, {"duplicate tensor name 't'"});
    ExpectError([&] { w.AddTensor(std::string(64, 'x'), {32}, 8); }, {"1 to 63 bytes"});
    ExpectError([&] { w.AddTensor("odd", {48}, 8); }, {"'odd'", "row length 48", "Q8_0 block size 32"});
    ExpectError([&] { w.AddTensor("five", {1, 1, 1, 1, 1}, 0); }, {"'five'", "5 dimensions"});
    ExpectError([&] { w.AddTensor("unknown", {8}, 999); }, {"'unknown'", "unknown tensor type id 999"});
    const std::vector<uint8_t> bytes(100);
    w.WriteTensorData(std::span(bytes).first(60));
    ExpectError([&] { w.WriteTensorData(std::span(bytes).first(20)); }, {"bad.gguf", "'t' takes 68 bytes"});
    ExpectError([&] { w.AddTensor("late", {32}, 8); }, {"after the header"});
    ExpectError([&] { w.Finish(); }, {"bad.gguf", "'t' got 60 of its 68 bytes"});
  }
  EXPECT_FALSE(fs::exists(path));
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().find("bad.gguf.tmp"), std::string::npos) << e.path();
}

// Copies every key and tensor of `src` (llama.cpp's stories260K) in order.
void Rewrite(const GgufFile& src, const std::string& path) {
  GgufWriter w(path, src.alignment());
  for (const auto& [k, v] : src.metadata()) w.Set(k, v);
  for (const GgufTensorInfo& t : src.tensors()) w.AddTensor(t.name, t.ne, t.ggml_type);
  for (const GgufTensorInfo& t : src.tensors()) w.WriteTensorData(std::span(t.data, t.bytes));
  w.Finish();
}

TEST(GgufWriter, RewrittenStories260KGivesIdenticalLogits) {
  const char* rel = "models/stories260K/stories260K-f32.llamacpp.gguf";
  LOWBIT_REQUIRE_SHARED(rel);
  const std::string path = TempPath("stories260K-rewritten.gguf");
  GgufFile src(SharedPath(rel));
  Rewrite(src, path);
  GgufFile copy(path);
  ASSERT_EQ(copy.metadata().size(), src.metadata().size());
  for (size_t k = 0; k < src.metadata().size(); ++k) {
    EXPECT_EQ(copy.metadata()[k].first, src.metadata()[k].first);
    ExpectSameValue(copy.metadata()[k].second, src.metadata()[k].second, src.metadata()[k].first);
  }
  ASSERT_EQ(copy.tensors().size(), src.tensors().size());
  for (size_t k = 0; k < src.tensors().size(); ++k) {
    EXPECT_EQ(copy.tensors()[k].offset, src.tensors()[k].offset);
    EXPECT_EQ(std::memcmp(copy.tensors()[k].data, src.tensors()[k].data, src.tensors()[k].bytes), 0);
  }

  // Same keys, order, alignment and padding rules as ggml's writer: the very same bytes.
  EXPECT_EQ(copy.file_size(), src.file_size());
  EXPECT_EQ(std::memcmp(MappedFile(path).data(), MappedFile(SharedPath(rel)).data(), src.file_size()), 0);

  auto a = LoadModel(SharedPath(rel));
  auto b = LoadModel(path);
  const std::vector<int32_t> tokens = a->tokenizer->Encode("Once upon a time, there was a little", true);
  Session sa(*a, {.threads = 2}), sb(*b, {.threads = 2});
  sa.Eval(tokens, true);
  sb.Eval(tokens, true);
  ASSERT_EQ(sa.logits().size(), sb.logits().size());
  EXPECT_EQ(std::memcmp(sa.logits().data(), sb.logits().data(), sa.logits().size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace lowbit
