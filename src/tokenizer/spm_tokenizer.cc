// llama.cpp-compatible SentencePiece-style BPE encoding and piece decoding.
#include "tokenizer/spm_tokenizer.h"

#include <queue>
#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace lowbit {
namespace {

// A run of input bytes in the merge chain; n == 0 once merged into its left neighbour.
struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t n;
  int32_t id;  // token for this text, or -1
};

struct Bigram {
  double priority;  // higher merges first: the merged token's score, or -rank
  int32_t left;
  uint32_t left_n;  // sizes when queued, to skip pairs made stale by other merges
  uint32_t size;
  int32_t merged;
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  }
};

// Merges symbols[begin, end) (a linked chain) pairwise, highest priority first.
template <typename Queue, typename TryAdd>
void RunMerges(std::vector<Symbol>& symbols, int32_t begin, int32_t end, Queue& queue, TryAdd&& try_add) {
  for (int32_t i = begin + 1; i < end; ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    if (left.n != bigram.left_n || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.n == 0 || left.n + right.n != bigram.size) continue;
    left.n += right.n;
    left.id = bigram.merged;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }
}

}  // namespace

SpmTokenizer::SpmTokenizer(Vocab vocab, bool add_space_prefix, MergeTable merges)
    : vocab_(std::move(vocab)), add_space_prefix_(add_space_prefix), merges_(std::move(merges)) {
  bos_ = vocab_.bos;
  eos_ = vocab_.eos;
  add_bos_ = vocab_.add_bos;
  // Words can be merged one at a time when every U+2581 inside a token follows
  // another U+2581 (true of SentencePiece vocabs split on whitespace): then no
  // merge can join a word start to the text before it.
  split_at_word_starts_ = true;
  for (const std::string& token : vocab_.tokens) {
    for (size_t pos = token.find(kSpmSpace, 1); pos != std::string::npos; pos = token.find(kSpmSpace, pos + 1)) {
      if (pos < kSpmSpace.size() || token.compare(pos - kSpmSpace.size(), kSpmSpace.size(), kSpmSpace) != 0)
        split_at_word_starts_ = false;
    }
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const char name[] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    int32_t id = vocab_.Find(std::string_view(name, 6));
    if (id < 0) id = vocab_.Find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    if (id < 0) id = vocab_.unk;
    byte_tokens_[b] = id;
  }
}

std::vector<int32_t> SpmTokenizer::Encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  // A fragment that starts the text or follows a special token gets the dummy prefix.
  bool after_special = true;
  std::string escaped;
  for (const TextFragment& fragment : vocab_.Partition(text)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      after_special = true;
      continue;
    }
    escaped.clear();
    escaped.reserve(fragment.text.size() + 3);
    if (add_space_prefix_ && after_special) escaped += kSpmSpace;
    for (char c : fragment.text) {
      if (c == ' ') {
        escaped += kSpmSpace;
      } else {
        escaped += c;
      }
    }
    EncodeEscaped(escaped, out);
    after_special = false;
  }
  if (add_special && vocab_.add_eos && eos_ >= 0) out.push_back(eos_);
  return out;
}

void SpmTokenizer::EncodeEscaped(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (text.size() >= UINT32_MAX) Fail("tokenizer: text of {} bytes is too long to encode at once", text.size());
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const uint32_t n = static_cast<uint32_t>(
        std::min(Utf8SequenceLength(static_cast<uint8_t>(text[offset])), text.size() - offset));
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, index + 1, static_cast<uint32_t>(offset), n, vocab_.Find(text.substr(offset, n))});
    offset += n;
  }
  auto is_space = [&](const Symbol& s) { return text.substr(s.start, s.n) == kSpmSpace; };
  auto ends_with_space = [&](const Symbol& s) { return text.substr(0, s.start + s.n).ends_with(kSpmSpace); };

  // Merge each word on its own when no token can span a word start (see the
  // constructor); the result is the same, and small queues stay in cache.
  const int32_t count = static_cast<int32_t>(symbols.size());
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    if (merges_.empty()) {
      const int32_t merged = vocab_.Find(text.substr(l.start, l.n + r.n));
      if (merged < 0) return;
      queue.push({vocab_.score(merged), left, l.n, l.n + r.n, merged});
    } else {
      const MergeTable::Entry* entry = merges_.Find(l.id, r.id);
      if (entry == nullptr || entry->merged < 0) return;
      queue.push({-static_cast<double>(entry->rank), left, l.n, l.n + r.n, entry->merged});
    }
  };
  for (int32_t begin = 0; begin < count;) {
    int32_t end = begin + 1;
    while (end < count && !(split_at_word_starts_ && is_space(symbols[end]) && !ends_with_space(symbols[end - 1])))
      ++end;
    symbols[begin].prev = -1;
    symbols[end - 1].next = -1;
    RunMerges(symbols, begin, end, queue, try_add);
    for (int32_t i = begin; i != -1; i = symbols[i].next) {
      const Symbol& s = symbols[i];
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      for (uint32_t j = 0; j < s.n; ++j) {
        const int32_t id = byte_tokens_[static_cast<uint8_t>(text[s.start + j])];
        if (id >= 0) out.push_back(id);
      }
    }
    begin = end;
  }
}

const std::string& SpmTokenizer::TokenText(int32_t token) const {
  if (token < 0 || token >= vocab_.size())
    Fail("tokenizer: token id {} is out of range (vocab has {} tokens)", token, vocab_.size());
  return vocab_.tokens[token];
}

std::string SpmTokenizer::TokenToPiece(int32_t token) const {
  const std::string& text = TokenText(token);
  switch (vocab_.type(token)) {
    case TokenType::kNormal: {
      std::string piece;
      piece.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
          piece += ' ';
          i += kSpmSpace.size();
        } else {
          piece += text[i++];
        }
      }
      return piece;
    }
    case TokenType::kByte: {
      const int byte = ParseByteToken(text);
      return byte < 0 ? text : std::string(1, static_cast<char>(byte));
    }
    case TokenType::kUserDefined:
      return text;
    default:  // control, unknown, unused: not printed
      return "";
  }
}

}  // namespace lowbit
