// libFuzzer target: arbitrary bytes as a llama2.c checkpoint (written to a
// temporary file, since the loader memory-maps paths), with the real
// stories260K tokenizer beside it when ../shared has one.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/lowbit-fuzz-llama2c-" + std::to_string(getpid()) + ".bin";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto model = lowbit::LoadLlama2cModel(path, LOWBIT_FUZZ_TOKENIZER);
  } catch (const lowbit::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
