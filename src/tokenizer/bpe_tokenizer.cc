// GPT-2 byte-level BPE: PCRE2 pre-tokenizer, byte <-> unicode table, rank-ordered merges.
#include "tokenizer/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <queue>
#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace lowbit {
namespace {

// GPT-2's pattern (openai/gpt-2 encoder.py), with its trailing \s+ alternative.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t n;
  int32_t id;
};

struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t merged;
};

struct BigramOrder {  // lowest rank first, then leftmost
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

struct Gpt2PreTokenizer::Impl {
  pcre2_code* code = nullptr;
};

Gpt2PreTokenizer::Gpt2PreTokenizer() : impl_(std::make_unique<Impl>()) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern.data()), kGpt2Pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset, nullptr);
  LOWBIT_CHECK(impl_->code != nullptr);
  // JIT is an optimisation only; the interpreter gives the same matches.
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

Gpt2PreTokenizer::~Gpt2PreTokenizer() { pcre2_code_free(impl_->code); }

void Gpt2PreTokenizer::Split(std::string_view text, std::vector<std::string_view>& words) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), &pcre2_match_data_free);
  LOWBIT_CHECK(match != nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(impl_->code, subject, text.size(), pos, 0, match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) Fail("tokenizer: GPT-2 pre-tokenizer regex failed: {}", Pcre2Message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t start = ovector[0], end = ovector[1];
    LOWBIT_CHECK(start >= pos && end > start && end <= text.size());
    if (start > pos) words.push_back(text.substr(pos, start - pos));  // bytes that are not UTF-8
    words.push_back(text.substr(start, end - start));
    pos = end;
  }
  if (pos < text.size()) words.push_back(text.substr(pos));
}

const std::array<std::string, 256>& ByteToUnicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      AppendUtf8(printable ? static_cast<uint32_t>(b) : next++, t[b]);
    }
    return t;
  }();
  return table;
}

BpeTokenizer::BpeTokenizer(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges)
    : vocab_(std::move(vocab)), merges_(vocab_, merges) {
  merge_lines_.reserve(merges.size());
  for (const auto& [left, right] : merges) merge_lines_.push_back(left + " " + right);
  bos_ = vocab_.bos;
  eos_ = vocab_.eos;
  add_bos_ = vocab_.add_bos;
  const auto& table = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    unicode_to_byte_[static_cast<uint32_t>(NextCodePoint(table[b], pos))] = static_cast<uint8_t>(b);
  }
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  std::vector<std::string_view> words;
  std::vector<int32_t> ids;
  for (const TextFragment& fragment : vocab_.Partition(text)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      continue;
    }
    words.clear();
    pre_tokenizer_.Split(fragment.text, words);
    for (std::string_view word : words) {
      {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(word);
        if (it != cache_.end()) {
          out.insert(out.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      ids.clear();
      EncodeWord(word, ids);
      out.insert(out.end(), ids.begin(), ids.end());
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (cache_.size() >= kMaxCacheEntries) cache_.clear();
      cache_.emplace(std::string(word), ids);
    }
  }
  if (add_special && vocab_.add_eos && eos_ >= 0) out.push_back(eos_);
  return out;
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() >= UINT32_MAX / 4) Fail("tokenizer: word of {} bytes is too long to encode", word.size());
  const auto& table = ByteToUnicode();
  std::string encoded;
  encoded.reserve(word.size() * 2);
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    const std::string& symbol = table[static_cast<uint8_t>(word[i])];
    const int32_t index = static_cast<int32_t>(i);
    symbols.push_back({index - 1, i + 1 == word.size() ? -1 : index + 1, static_cast<uint32_t>(encoded.size()),
                       static_cast<uint32_t>(symbol.size()), vocab_.Find(symbol)});
    encoded += symbol;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const MergeTable::Entry* entry = merges_.Find(symbols[left].id, symbols[right].id);
    if (entry == nullptr) return;
    queue.push({entry->rank, left, right, symbols[left].id, symbols[right].id, entry->merged});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.n == 0 || right.n == 0 || left.next != bigram.right || left.id != bigram.left_id ||
        right.id != bigram.right_id)
      continue;  // outdated by an earlier merge
    left.n += right.n;
    left.id = bigram.merged;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    // Not a token (a vocab without every byte symbol): keep the bytes that are, like llama.cpp.
    for (uint32_t j = 0; j < s.n; ++j) {
      const int32_t id = vocab_.Find(std::string_view(encoded).substr(s.start + j, 1));
      if (id >= 0) out.push_back(id);
    }
  }
}

const std::string& BpeTokenizer::TokenText(int32_t token) const {
  if (token < 0 || token >= vocab_.size())
    Fail("tokenizer: token id {} is out of range (vocab has {} tokens)", token, vocab_.size());
  return vocab_.tokens[token];
}

std::string BpeTokenizer::DecodeByteLevel(std::string_view text) const {
  std::string bytes;
  bytes.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const int32_t cp = NextCodePoint(text, pos);
    auto it = cp < 0 ? unicode_to_byte_.end() : unicode_to_byte_.find(static_cast<uint32_t>(cp));
    if (it != unicode_to_byte_.end()) {
      bytes += static_cast<char>(it->second);
    } else {
      bytes.append(text.substr(start, pos - start));
    }
  }
  return bytes;
}

std::string BpeTokenizer::TokenToPiece(int32_t token) const {
  const std::string& text = TokenText(token);
  switch (vocab_.type(token)) {
    case TokenType::kNormal:
      return DecodeByteLevel(text);
    case TokenType::kByte: {
      const int byte = ParseByteToken(text);
      return byte < 0 ? DecodeByteLevel(text) : std::string(1, static_cast<char>(byte));
    }
    case TokenType::kUserDefined:
      return text;
    default:  // control, unknown, unused: not printed
      return "";
  }
}

}  // namespace lowbit
