// libFuzzer target: tokenizer.json text -> ParseTokenizerJson, and the same bytes
// as vocab.json / merges.txt -> ParseGpt2VocabAndMerges. A NUL byte splits the
// input into the first and second file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "tokenizer/loaders.h"
#include "tokenizer/tokenizer.h"

namespace {

void Exercise(const lowbit::Tokenizer& tok, std::string_view input) {
  std::string text(input.substr(0, 64));
  const auto ids = tok.Encode(text + " Hello  world\n", true);
  tok.Decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view first = input.substr(0, nul);
  const std::string_view second = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  try {
    Exercise(*lowbit::ParseTokenizerJson(first, "fuzz/tokenizer.json", second), input);
  } catch (const lowbit::Error&) {
  }
  try {
    Exercise(*lowbit::ParseGpt2VocabAndMerges(first, second, "fuzz/vocab.json", "fuzz/merges.txt"), input);
  } catch (const lowbit::Error&) {
  }
  return 0;
}
