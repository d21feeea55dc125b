// GPT-2 byte-level BPE: the GPT-2 pre-tokenizer regex (PCRE2, Unicode
// properties) splits text into words, each word's bytes are mapped to printable
// code points, and adjacent symbols merge lowest merge rank first. Results are
// cached per word, so running text costs little more than the regex.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/merge_table.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace lowbit {

// The GPT-2 pre-tokenizer. Invalid UTF-8 never matches the pattern; such bytes
// become words of their own, so no input byte is lost.
class Gpt2PreTokenizer {
 public:
  Gpt2PreTokenizer();
  ~Gpt2PreTokenizer();
  Gpt2PreTokenizer(const Gpt2PreTokenizer&) = delete;
  Gpt2PreTokenizer& operator=(const Gpt2PreTokenizer&) = delete;

  // Appends the words of `text` (views into it) to `words`.
  void Split(std::string_view text, std::vector<std::string_view>& words) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// GPT-2's bytes_to_unicode table: byte -> code point as UTF-8.
const std::array<std::string, 256>& ByteToUnicode();

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges);

  TokenizerKind kind() const override { return TokenizerKind::kBpe; }
  int32_t vocab_size() const override { return vocab_.size(); }
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override;
  std::string TokenToPiece(int32_t token) const override;
  const std::string& TokenText(int32_t token) const override;

  const Vocab& vocab() const { return vocab_; }
  size_t merge_count() const { return merges_.size(); }
  // The merges as given, in rank order, as "left right" lines (GGUF's
  // tokenizer.ggml.merges), for writing the tokenizer back out.
  const std::vector<std::string>& merge_lines() const { return merge_lines_; }

 private:
  // BPE of one pre-tokenized word (raw bytes), appended to `out`.
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;
  // Decodes byte-level text back to bytes; code points outside the table stay as they are.
  std::string DecodeByteLevel(std::string_view text) const;

  Vocab vocab_;
  MergeTable merges_;
  std::vector<std::string> merge_lines_;
  Gpt2PreTokenizer pre_tokenizer_;
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;

  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringViewHash, std::equal_to<>> cache_;
};

}  // namespace lowbit
