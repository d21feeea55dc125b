// libFuzzer target: SentencePiece tokenizer.model (protobuf) bytes -> ParseSentencePieceModel,
// then encode/decode a little text with whatever tokenizer comes out.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = lowbit::ParseSentencePieceModel({data, size}, "fuzz/tokenizer.model");
    const std::string text(reinterpret_cast<const char*>(data), size < 64 ? size : 64);
    const auto ids = tok->Encode(text + " Hello  world\n", true);
    tok->Decode(ids);
  } catch (const lowbit::Error&) {
  }
  return 0;
}
