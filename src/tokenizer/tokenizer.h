// Tokenizer interface shared by the three vocab kinds lowbit reads:
// GPT-2 byte-level BPE, SentencePiece-style BPE (Llama) and llama2.c vocab
// files. Encoding matches llama.cpp's tokenizers token for token.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

class GgufFile;

enum class TokenizerKind { kBpe /*GPT-2 byte-level*/, kSpm /*SentencePiece-style BPE with byte fallback*/ };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;
  virtual int32_t vocab_size() const = 0;
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  // Whether llama.cpp would prepend BOS for this vocab (tokenizer.ggml.add_bos_token;
  // true for SPM and false for GPT-2 unless the file says otherwise).
  bool add_bos() const { return add_bos_; }

  // Encodes `text` like llama.cpp's llama_tokenize(text, add_special, parse_special=false):
  // add_special prepends BOS when add_bos() is true.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special) const = 0;

  // The raw bytes a token stands for in output text (llama.cpp's token_to_piece):
  // SPM: U+2581 -> ' ', <0xXX> -> that byte; BPE: byte-level symbols mapped back to bytes.
  // Control tokens (BOS/EOS/...) give "".
  virtual std::string TokenToPiece(int32_t token) const = 0;

  // The token's text as stored in the vocabulary (U+2581 for spaces in SPM vocabs,
  // byte-level symbols in GPT-2 vocabs). Throws Error for an id out of range.
  virtual const std::string& TokenText(int32_t token) const = 0;

  // Text of `token` when it follows `prev`, as printed during generation:
  // for SPM, the leading space of the first token after BOS is dropped (llama2.c / SentencePiece decode).
  std::string DecodeNext(int32_t prev, int32_t token) const;
  // Decodes a whole sequence (DecodeNext over consecutive pairs; a leading BOS is skipped).
  std::string Decode(std::span<const int32_t> tokens) const;

 protected:
  int32_t bos_ = -1;
  int32_t eos_ = -1;
  bool add_bos_ = false;
};

// From GGUF metadata as llama.cpp writes it (tokenizer.ggml.model "llama" or "gpt2").
std::unique_ptr<Tokenizer> LoadTokenizerFromGguf(const GgufFile& file);
// From a Hugging Face model folder: tokenizer.json, or vocab.json + merges.txt, or tokenizer.model.
std::unique_ptr<Tokenizer> LoadTokenizerFromHfFolder(const std::string& dir);
// A llama2.c tokenizer.bin / tok512.bin with `vocab_size` entries.
std::unique_ptr<Tokenizer> LoadLlama2cTokenizer(const std::string& path, int32_t vocab_size);

}  // namespace lowbit
