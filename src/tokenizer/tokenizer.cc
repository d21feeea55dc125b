// Decoding shared by both kinds, and the file-level loaders.
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/loaders.h"

namespace lowbit {

std::string Tokenizer::DecodeNext(int32_t prev, int32_t token) const {
  std::string piece = TokenToPiece(token);
  // SentencePiece drops the dummy-prefix space of the first piece after BOS.
  if (kind() == TokenizerKind::kSpm && prev == bos_ && prev >= 0 && !piece.empty() && piece[0] == ' ')
    piece.erase(0, 1);
  return piece;
}

std::string Tokenizer::Decode(std::span<const int32_t> tokens) const {
  std::string text;
  size_t i = 0;
  if (!tokens.empty() && bos_ >= 0 && tokens[0] == bos_) ++i;
  // The start of the text counts as following BOS, so Decode inverts Encode with or without it.
  int32_t prev = bos_;
  for (; i < tokens.size(); ++i) {
    text += DecodeNext(prev, tokens[i]);
    prev = tokens[i];
  }
  return text;
}

std::string ReadTokenizerFile(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) Fail("{}: not found or not a regular file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("{}: cannot open for reading", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) Fail("{}: read error", path);
  return std::move(buffer).str();
}

namespace {

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::unique_ptr<Tokenizer> LoadLlama2cTokenizer(const std::string& path, int32_t vocab_size) {
  const std::string bytes = ReadTokenizerFile(path);
  return ParseLlama2cVocab(AsBytes(bytes), path, vocab_size);
}

std::unique_ptr<Tokenizer> LoadTokenizerFromHfFolder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error)) Fail("{}: not a directory", dir);
  const fs::path root(dir);
  const std::string json_path = (root / "tokenizer.json").string();
  const std::string config_path = (root / "tokenizer_config.json").string();
  const std::string vocab_path = (root / "vocab.json").string();
  const std::string merges_path = (root / "merges.txt").string();
  const std::string model_path = (root / "tokenizer.model").string();
  if (fs::exists(json_path, error)) {
    const std::string config = fs::exists(config_path, error) ? ReadTokenizerFile(config_path) : std::string();
    return ParseTokenizerJson(ReadTokenizerFile(json_path), json_path, config);
  }
  if (fs::exists(vocab_path, error)) {
    if (!fs::exists(merges_path, error)) Fail("{}: has vocab.json but no merges.txt", dir);
    return ParseGpt2VocabAndMerges(ReadTokenizerFile(vocab_path), ReadTokenizerFile(merges_path), vocab_path,
                                   merges_path);
  }
  if (fs::exists(model_path, error)) {
    const std::string bytes = ReadTokenizerFile(model_path);
    return ParseSentencePieceModel(AsBytes(bytes), model_path);
  }
  Fail("{}: no tokenizer.json, vocab.json + merges.txt, or tokenizer.model", dir);
}

}  // namespace lowbit
