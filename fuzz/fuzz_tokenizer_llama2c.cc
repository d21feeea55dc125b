// libFuzzer target: llama2.c tokenizer.bin bytes -> ParseLlama2cVocab. The first
// byte picks the expected vocab size (0 = read to the end), the rest is the file.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    auto tok = lowbit::ParseLlama2cVocab({data + 1, size - 1}, "fuzz/tokenizer.bin", data[0] % 32);
    const std::string text(reinterpret_cast<const char*>(data), size < 64 ? size : 64);
    const auto ids = tok->Encode(text + " Once upon a time", true);
    tok->Decode(ids);
  } catch (const lowbit::Error&) {
  }
  return 0;
}
