// llama2.c tokenizer.bin files, loaded the way llama.cpp's
// convert-llama2c-to-ggml converts them so encodings match its GGUF.
#include <cstring>

#include "core/error.h"
#include "tokenizer/loaders.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/utf8.h"

namespace lowbit {
namespace {

template <typename T>
T ReadLe(std::span<const uint8_t> bytes, size_t pos) {
  T value;
  std::memcpy(&value, bytes.data() + pos, sizeof(T));  // lowbit targets little-endian hosts
  return value;
}

}  // namespace

std::unique_ptr<Tokenizer> ParseLlama2cVocab(std::span<const uint8_t> bytes, const std::string& name,
                                             int32_t vocab_size) {
  if (vocab_size < 0) Fail("{}: vocab size {} is negative", name, vocab_size);
  if (bytes.size() < 4) Fail("{}: truncated: {} bytes, too short for the max_token_length header", name, bytes.size());
  const int32_t max_token_length = ReadLe<int32_t>(bytes, 0);
  if (max_token_length < 0) Fail("{}: max_token_length {} is negative", name, max_token_length);

  Vocab vocab;
  size_t pos = 4;
  while (vocab_size == 0 ? pos < bytes.size() : vocab.tokens.size() < static_cast<size_t>(vocab_size)) {
    const size_t id = vocab.tokens.size();
    if (bytes.size() - pos < 8)
      Fail("{}: truncated at byte {}: token {} of {} has no score/length", name, pos, id, vocab_size);
    const float score = ReadLe<float>(bytes, pos);
    const int32_t length = ReadLe<int32_t>(bytes, pos + 4);
    pos += 8;
    if (length < 0) Fail("{}: token {} has negative length {} (byte {})", name, id, length, pos - 4);
    if (static_cast<size_t>(length) > bytes.size() - pos)
      Fail("{}: truncated: token {} needs {} bytes at byte {}, {} left", name, id, length, pos, bytes.size() - pos);
    std::string text(reinterpret_cast<const char*>(bytes.data() + pos), static_cast<size_t>(length));
    pos += static_cast<size_t>(length);

    TokenType type = TokenType::kNormal;
    // llama2.c writes BOS/EOS as "\n<s>\n" and "\n</s>\n"; llama.cpp's converter renames them.
    if (id == 0) {
      text = "<unk>";
      type = TokenType::kUnknown;
    } else if (id == 1) {
      text = "<s>";
      type = TokenType::kControl;
    } else if (id == 2) {
      text = "</s>";
      type = TokenType::kControl;
    } else if (ParseByteToken(text) >= 0) {
      type = TokenType::kByte;
    }
    // The export decoded U+2581 back to ' '; SPM merging needs it escaped again.
    std::string escaped;
    escaped.reserve(text.size());
    for (char c : text) {
      if (c == ' ') {
        escaped += kSpmSpace;
      } else {
        escaped += c;
      }
    }
    vocab.tokens.push_back(std::move(escaped));
    vocab.scores.push_back(score);
    vocab.types.push_back(type);
  }
  if (pos != bytes.size())
    Fail("{}: {} bytes left after {} tokens: the file has more tokens than the model's vocab size", name,
         bytes.size() - pos, vocab.tokens.size());
  if (vocab.tokens.empty()) Fail("{}: no tokens", name);
  const int32_t n = static_cast<int32_t>(vocab.tokens.size());
  vocab.unk = 0;
  vocab.bos = n > 1 ? 1 : -1;
  vocab.eos = n > 2 ? 2 : -1;
  vocab.add_bos = true;
  vocab.Finalize(name);
  return std::make_unique<SpmTokenizer>(std::move(vocab), /*add_space_prefix=*/true);
}

}  // namespace lowbit
