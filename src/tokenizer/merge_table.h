// BPE merge ranks keyed by the token ids of the pair, with the id of the merged
// token precomputed, so merging never builds strings.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace lowbit {

class MergeTable {
 public:
  struct Entry {
    int32_t rank;
    int32_t merged;  // id of left+right, or -1 when the vocab lacks it
  };

  // `merges` in rank order. A pair whose halves are not both tokens can never
  // apply (every symbol that can take part in a merge is a token) and is skipped;
  // a repeated pair keeps its first rank, as in llama.cpp.
  MergeTable(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges);
  MergeTable() = default;

  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  const Entry* Find(int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return nullptr;
    auto it = map_.find(Key(left, right));
    return it == map_.end() ? nullptr : &it->second;
  }

 private:
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  std::unordered_map<uint64_t, Entry> map_;
};

inline MergeTable::MergeTable(const Vocab& vocab,
                              const std::vector<std::pair<std::string, std::string>>& merges) {
  map_.reserve(merges.size());
  int32_t rank = 0;
  for (const auto& [left, right] : merges) {
    const int32_t l = vocab.Find(left), r = vocab.Find(right);
    if (l >= 0 && r >= 0) map_.emplace(Key(l, r), Entry{rank, vocab.Find(left + right)});
    ++rank;
  }
}

}  // namespace lowbit
