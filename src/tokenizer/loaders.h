// Tokenizer parsers over bytes already in memory. The file loaders in
// tokenizer.h read a file and call these; the fuzzers call them directly.
// Every malformed input is reported as Error("<name>: <problem>").
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace lowbit {

// A SentencePiece ModelProto (tokenizer.model): pieces, scores and types, the
// trainer's unk/bos/eos ids and the normalizer's add_dummy_prefix.
std::unique_ptr<Tokenizer> ParseSentencePieceModel(std::span<const uint8_t> bytes, const std::string& name);

// A llama2.c tokenizer.bin: int32 max_token_length, then per token float32
// score, int32 length and the bytes. `vocab_size` 0 reads tokens up to the end.
std::unique_ptr<Tokenizer> ParseLlama2cVocab(std::span<const uint8_t> bytes, const std::string& name,
                                             int32_t vocab_size);

// A Hugging Face tokenizer.json with a BPE model: GPT-2 byte-level, or the
// Llama kind (byte_fallback, U+2581 for spaces). `config_json` is the optional
// tokenizer_config.json text (bos/eos tokens, add_bos_token).
std::unique_ptr<Tokenizer> ParseTokenizerJson(std::string_view json, const std::string& name,
                                              std::string_view config_json = {});

// GPT-2's vocab.json and merges.txt.
std::unique_ptr<Tokenizer> ParseGpt2VocabAndMerges(std::string_view vocab_json, std::string_view merges_txt,
                                                   const std::string& vocab_name, const std::string& merges_name);

// Reads a whole file; throws Error naming it when it cannot.
std::string ReadTokenizerFile(const std::string& path);

}  // namespace lowbit
