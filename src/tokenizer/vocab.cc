// Vocab validation, the text index and user-defined-token partitioning.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lowbit {
namespace {

void CheckSpecialId(const std::string& name, const char* what, int32_t id, int32_t n) {
  if (id < -1 || id >= n) Fail("{}: {} token id {} is out of range (vocab has {} tokens)", name, what, id, n);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int hi = HexDigit(text[3]), lo = HexDigit(text[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

void Vocab::Finalize(const std::string& name) {
  const size_t n = tokens.size();
  if (n == 0) Fail("{}: the vocabulary is empty", name);
  if (n > static_cast<size_t>(INT32_MAX)) Fail("{}: {} tokens is too many", name, n);
  if (!scores.empty() && scores.size() != n)
    Fail("{}: {} scores for {} tokens", name, scores.size(), n);
  if (!types.empty() && types.size() != n) Fail("{}: {} token types for {} tokens", name, types.size(), n);
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) Fail("{}: token {} has a non-finite score {}", name, i, scores[i]);
  }
  for (size_t i = 0; i < types.size(); ++i) {
    int32_t t = static_cast<int32_t>(types[i]);
    if (t < 0 || t > 6) Fail("{}: token {} has type {}, which is not a token type (0..6)", name, i, t);
  }
  const int32_t count = size();
  CheckSpecialId(name, "BOS", bos, count);
  CheckSpecialId(name, "EOS", eos, count);
  CheckSpecialId(name, "unknown", unk, count);

  size_t capacity = 16;
  while (capacity < 2 * n) capacity *= 2;
  slots_.assign(capacity, -1);
  slot_hashes_.assign(capacity, 0);
  mask_ = capacity - 1;
  for (int32_t id = 0; id < count; ++id) {
    const size_t hash = std::hash<std::string_view>{}(tokens[id]);
    size_t i = hash & mask_;
    // A later duplicate text takes over the slot, as in llama.cpp's token_to_id map.
    while (slots_[i] >= 0 && !(slot_hashes_[i] == static_cast<uint32_t>(hash) && tokens[slots_[i]] == tokens[id]))
      i = (i + 1) & mask_;
    slots_[i] = id;
    slot_hashes_[i] = static_cast<uint32_t>(hash);
  }

  user_defined_.clear();
  for (int32_t i = 0; i < count; ++i) {
    if (type(i) == TokenType::kUserDefined && !tokens[i].empty()) user_defined_.push_back(i);
  }
  std::stable_sort(user_defined_.begin(), user_defined_.end(),
                   [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });
}

std::vector<TextFragment> Vocab::Partition(std::string_view text) const {
  std::vector<TextFragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({text, -1});
  for (int32_t id : user_defined_) {
    const std::string& special = tokens[id];
    std::vector<TextFragment> next;
    next.reserve(fragments.size());
    for (const TextFragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t pos; (pos = rest.find(special)) != std::string_view::npos;) {
        if (pos > 0) next.push_back({rest.substr(0, pos), -1});
        next.push_back({{}, id});
        rest.remove_prefix(pos + special.size());
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace lowbit
