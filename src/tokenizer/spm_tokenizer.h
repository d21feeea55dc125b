// SentencePiece-style BPE as llama.cpp's SPM tokenizer does it: spaces become
// U+2581, a dummy space is prepended, UTF-8 characters are merged pairwise
// (highest-scoring merged token first, leftmost on ties), and pieces that are
// not tokens fall back to <0xXX> byte tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/merge_table.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace lowbit {

class SpmTokenizer final : public Tokenizer {
 public:
  // With an empty `merges`, a pair merges when its concatenation is a token and
  // the merged token's score orders the merges (GGUF, tokenizer.model,
  // llama2.c). With merges (a Hugging Face tokenizer.json), a pair merges only
  // when it is listed, lowest rank first.
  SpmTokenizer(Vocab vocab, bool add_space_prefix, MergeTable merges = {});

  TokenizerKind kind() const override { return TokenizerKind::kSpm; }
  int32_t vocab_size() const override { return vocab_.size(); }
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override;
  std::string TokenToPiece(int32_t token) const override;
  const std::string& TokenText(int32_t token) const override;

  const Vocab& vocab() const { return vocab_; }
  bool add_space_prefix() const { return add_space_prefix_; }

 private:
  // Tokenizes text whose spaces are already U+2581.
  void EncodeEscaped(std::string_view text, std::vector<int32_t>& out) const;

  Vocab vocab_;
  bool add_space_prefix_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_tokens_;
  bool split_at_word_starts_ = false;  // -1 where neither <0xXX>, the byte, nor unk exists
};

}  // namespace lowbit
