// Bad input through the real `lowbit` binary: corrupt or truncated models,
// unknown architectures, shape mismatches, NaN weights, a missing tokenizer
// and bad flags each give one clear error naming the file and a non-zero
// exit code, never a crash.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/mapped_file.h"
#include "test_util.h"

namespace lowbit {
namespace {

using ::lowbit::testing::CommandResult;
using ::lowbit::testing::RunLowbit;

namespace fs = std::filesystem;
using ::lowbit::testing::SharedPath;


std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/lowbit_bad_input/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// Expects a clean failure: exit code 1 and one "lowbit: error:" line that
// mentions `file` and `problem`.
void ExpectCleanError(const std::string& args, const std::string& file, const std::string& problem) {
  const CommandResult r = RunLowbit(args);
  EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
  EXPECT_NE(r.output.find("lowbit: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(file), std::string::npos) << "error does not name " << file << ": " << r.output;
  EXPECT_NE(r.output.find(problem), std::string::npos) << "expected '" << problem << "' in: " << r.output;
}

constexpr const char* kGguf = "models/stories260K/stories260K-f32.llamacpp.gguf";
constexpr const char* kBin = "models/stories260K/stories260K.bin";

TEST(BadInput, MissingFile) {
  ExpectCleanError("inspect /nonexistent/model.gguf", "/nonexistent/model.gguf", "no such file");
}

TEST(BadInput, TruncatedGgufAtManyPoints) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  const std::string full = ReadFileToString(SharedPath(kGguf));
  const std::string dir = TempDir("trunc_gguf");
  for (size_t len : {size_t(3), size_t(20), size_t(5000), size_t(20000), full.size() / 2, full.size() - 1}) {
    const std::string path = dir + "/m" + std::to_string(len) + ".gguf";
    WriteFile(path, full.substr(0, len));
    ExpectCleanError("inspect " + path, path, len < 4 ? "too short" : "truncated");
  }
}

TEST(BadInput, TruncatedLlama2cCheckpoint) {
  LOWBIT_REQUIRE_SHARED(kBin);
  const std::string dir = TempDir("trunc_bin");
  const std::string full = ReadFileToString(SharedPath(kBin));
  fs::copy_file(SharedPath("models/stories260K/tok512.bin"), dir + "/tok512.bin");
  WriteFile(dir + "/m.bin", full.substr(0, full.size() / 3));
  ExpectCleanError("inspect " + dir + "/m.bin", dir + "/m.bin", "truncated");
}

TEST(BadInput, MissingTokenizerBesideLlama2cCheckpoint) {
  LOWBIT_REQUIRE_SHARED(kBin);
  const std::string dir = TempDir("no_tok");
  fs::copy_file(SharedPath(kBin), dir + "/m.bin");
  ExpectCleanError("run " + dir + "/m.bin -n 4", dir + "/m.bin", "no tokenizer found");
}

TEST(BadInput, NanWeight) {
  LOWBIT_REQUIRE_SHARED(kBin);
  const std::string dir = TempDir("nan");
  std::string bytes = ReadFileToString(SharedPath(kBin));
  const float nan = std::nanf("");
  std::memcpy(&bytes[28 + 4 * 1000], &nan, 4);  // inside token_embd.weight
  WriteFile(dir + "/m.bin", bytes);
  fs::copy_file(SharedPath("models/stories260K/tok512.bin"), dir + "/tok512.bin");
  ExpectCleanError("run " + dir + "/m.bin -n 4", dir + "/m.bin", "non-finite value");
}

// Replaces the first occurrence of `from` with `to` (same length) in a copy of the GGUF.
std::string PatchedGguf(const std::string& name, const std::string& from, const std::string& to) {
  std::string bytes = ReadFileToString(SharedPath(kGguf));
  const size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(from.size(), to.size());
  bytes.replace(at, from.size(), to);
  const std::string path = TempDir(name) + "/m.gguf";
  WriteFile(path, bytes);
  return path;
}

TEST(BadInput, UnknownArchitecture) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  // general.architecture's value is the string "llama" stored right after its key and type.
  std::string key = "general.architecture";
  std::string from = key + std::string("\x08\0\0\0\x05\0\0\0\0\0\0\0llama", 17);
  std::string to = key + std::string("\x08\0\0\0\x05\0\0\0\0\0\0\0mamba", 17);
  const std::string path = PatchedGguf("arch", from, to);
  ExpectCleanError("inspect " + path, path, "unsupported architecture 'mamba'");
}

TEST(BadInput, ShapeMismatch) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  // head_count_kv 4 -> 2: attn_k/attn_v no longer match the config.
  std::string key = "llama.attention.head_count_kv";
  const std::string path = PatchedGguf("shape", key + std::string("\x04\0\0\0\x04\0\0\0", 8),
                                       key + std::string("\x04\0\0\0\x02\0\0\0", 8));
  ExpectCleanError("inspect " + path, path, "has shape (32, 64), expected (16, 64)");
}

TEST(BadInput, BadFlagsAndArguments) {
  EXPECT_NE(RunLowbit("").exit_code, 0);
  EXPECT_NE(RunLowbit("frobnicate").exit_code, 0);
  EXPECT_NE(RunLowbit("run").exit_code, 0);  // MODEL is required
  LOWBIT_REQUIRE_SHARED(kGguf);
  const CommandResult r = RunLowbit("run " + SharedPath(kGguf) + " --temp -1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--temp"), std::string::npos) << r.output;
  ExpectCleanError("ppl " + SharedPath(kGguf) + " --data /nonexistent.txt", "/nonexistent.txt", "cannot open");
  const std::string dir = TempDir("short");
  WriteFile(dir + "/short.txt", "Once upon a time.");
  ExpectCleanError("ppl " + SharedPath(kGguf) + " --data " + dir + "/short.txt --ctx 64", dir + "/short.txt",
                   "too little data");
  ExpectCleanError("kld " + SharedPath(kGguf) + " --base " + dir + "/short.txt", dir + "/short.txt", "truncated");
}

TEST(BadInput, EveryCommandHasHelp) {
  for (const char* cmd : {"", "run ", "ppl ", "kld ", "inspect "}) {
    const CommandResult r = RunLowbit(std::string(cmd) + "--help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << cmd << r.output;
  }
}

TEST(Cli, RunJsonReportsTextAndSpeed) {
  LOWBIT_REQUIRE_SHARED(kGguf);
  const CommandResult r = RunLowbit("run " + SharedPath(kGguf) + " -n 12 --json --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"text\": \"Once upon a time, there was a little girl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"gen_tokens_per_s\""), std::string::npos);
  EXPECT_NE(r.output.find("\"prompt_tokens_per_s\""), std::string::npos);
}

}  // namespace
}  // namespace lowbit
