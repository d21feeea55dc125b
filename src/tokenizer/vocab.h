// The token table shared by both tokenizer kinds: texts, scores, llama.cpp
// token types, special ids, the text -> id index, and the splitting of raw text
// around user-defined tokens that llama.cpp does even with parse_special=false.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

// llama.cpp / GGUF token types (SentencePiece piece types use the same numbers).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Hash for unordered maps keyed by std::string that accept std::string_view lookups.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// One piece of input text: either raw text to tokenize or an already-known token.
struct TextFragment {
  std::string_view text;  // raw text when token < 0
  int32_t token = -1;
};

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;     // empty or one per token
  std::vector<TokenType> types;  // empty or one per token; empty means all normal
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;
  bool add_bos = false;
  bool add_eos = false;

  // Checks sizes, types and special ids (naming `name` in errors), then builds
  // the text index (a later duplicate text wins, as in llama.cpp) and the list of
  // user-defined tokens. Call once after filling the fields.
  void Finalize(const std::string& name);

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  TokenType type(int32_t id) const { return types.empty() ? TokenType::kNormal : types[id]; }
  float score(int32_t id) const { return scores.empty() ? 0.0f : scores[id]; }
  // Returns -1 when `text` is not a token.
  int32_t Find(std::string_view text) const {
    if (slots_.empty()) return -1;
    const size_t hash = std::hash<std::string_view>{}(text);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const int32_t id = slots_[i];
      if (id < 0) return -1;
      if (slot_hashes_[i] == static_cast<uint32_t>(hash) && tokens[id] == text) return id;
    }
  }

  // Splits `text` around occurrences of user-defined tokens, longest token first
  // (llama.cpp's tokenizer_st_partition with parse_special=false).
  std::vector<TextFragment> Partition(std::string_view text) const;

 private:
  // Open-addressing text -> id index (linear probing, at most half full): the
  // merge loops look tokens up millions of times, and this avoids node chasing.
  std::vector<int32_t> slots_;
  std::vector<uint32_t> slot_hashes_;
  size_t mask_ = 0;
  std::vector<int32_t> user_defined_;  // sorted by text length, longest first
};

// Parses "<0xXX>" (upper- or lower-case hex); returns -1 for anything else.
int ParseByteToken(std::string_view text);

}  // namespace lowbit
