// A minimal protobuf wire-format reader for SentencePiece's ModelProto
// (sentencepiece_model.proto), enough to build an SPM tokenizer.
#include <cstring>

#include "core/error.h"
#include "tokenizer/loaders.h"
#include "tokenizer/spm_tokenizer.h"

namespace lowbit {
namespace {

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Reads one message's fields; `base` is its offset in the file, for error messages.
class WireReader {
 public:
  WireReader(std::span<const uint8_t> bytes, size_t base, const std::string& name)
      : bytes_(bytes), base_(base), name_(name) {}

  bool Done() const { return pos_ >= bytes_.size(); }

  // Reads a field key; returns false at the end of the message.
  bool Next() {
    if (Done()) return false;
    field_start_ = pos_;
    const uint64_t key = Varint();
    field_ = key >> 3;
    wire_ = static_cast<int>(key & 7);
    if (field_ == 0 || field_ > (1u << 29)) Fail("{}: invalid protobuf field number {} at byte {}", name_, field_, Offset());
    return true;
  }
  uint64_t field() const { return field_; }
  size_t field_offset() const { return base_ + field_start_; }

  uint64_t ReadVarint(const char* what) {
    Expect(kVarint, what);
    return Varint();
  }
  float ReadFloat(const char* what) {
    Expect(kFixed32, what);
    const auto b = Take(4);
    uint32_t u = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  // Returns the payload and its offset in the file.
  std::span<const uint8_t> ReadBytes(const char* what, size_t* offset = nullptr) {
    Expect(kLengthDelimited, what);
    const uint64_t n = Varint();
    if (n > bytes_.size() - pos_)
      Fail("{}: truncated protobuf: {} needs {} bytes at byte {}, {} left", name_, what, n, Offset(),
           bytes_.size() - pos_);
    if (offset != nullptr) *offset = Offset();
    return Take(static_cast<size_t>(n));
  }
  void Skip() {
    switch (wire_) {
      case kVarint: Varint(); break;
      case kFixed64: Take(8); break;
      case kFixed32: Take(4); break;
      case kLengthDelimited: {
        const uint64_t n = Varint();
        if (n > bytes_.size() - pos_)
          Fail("{}: truncated protobuf: field {} needs {} bytes at byte {}, {} left", name_, field_, n, Offset(),
               bytes_.size() - pos_);
        Take(static_cast<size_t>(n));
        break;
      }
      default:
        Fail("{}: unsupported protobuf wire type {} for field {} at byte {}", name_, wire_, field_, field_offset());
    }
  }

 private:
  size_t Offset() const { return base_ + pos_; }
  void Expect(int wire, const char* what) {
    if (wire_ != wire)
      Fail("{}: {} (field {}) at byte {} has protobuf wire type {}, expected {}", name_, what, field_,
           field_offset(), wire_, wire);
  }
  uint64_t Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= bytes_.size()) Fail("{}: truncated protobuf varint at byte {}", name_, Offset());
      const uint8_t b = bytes_[pos_++];
      value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return value;
    }
    Fail("{}: protobuf varint longer than 10 bytes at byte {}", name_, Offset());
  }
  std::span<const uint8_t> Take(size_t n) {
    if (n > bytes_.size() - pos_)
      Fail("{}: truncated protobuf: field {} needs {} bytes at byte {}, {} left", name_, field_, n, Offset(),
           bytes_.size() - pos_);
    auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  std::span<const uint8_t> bytes_;
  size_t base_;
  const std::string& name_;
  size_t pos_ = 0;
  size_t field_start_ = 0;
  uint64_t field_ = 0;
  int wire_ = 0;
};

// int32 fields are written as sign-extended 64-bit varints.
int32_t ToInt32(uint64_t v, const std::string& name, const char* what) {
  const int64_t s = static_cast<int64_t>(v);
  if (s < INT32_MIN || s > INT32_MAX) Fail("{}: {} {} does not fit in int32", name, what, s);
  return static_cast<int32_t>(s);
}

}  // namespace

std::unique_ptr<Tokenizer> ParseSentencePieceModel(std::span<const uint8_t> bytes, const std::string& name) {
  Vocab vocab;
  vocab.unk = 0;
  vocab.bos = 1;
  vocab.eos = 2;
  vocab.add_bos = true;
  bool add_dummy_prefix = true;

  WireReader model(bytes, 0, name);
  while (model.Next()) {
    switch (model.field()) {
      case 1: {  // repeated SentencePiece pieces
        size_t offset = 0;
        WireReader piece(model.ReadBytes("piece", &offset), offset, name);
        std::string text;
        float score = 0;
        uint64_t type = 1;  // NORMAL
        while (piece.Next()) {
          if (piece.field() == 1) {
            auto b = piece.ReadBytes("piece text");
            text.assign(reinterpret_cast<const char*>(b.data()), b.size());
          } else if (piece.field() == 2) {
            score = piece.ReadFloat("piece score");
          } else if (piece.field() == 3) {
            type = piece.ReadVarint("piece type");
          } else {
            piece.Skip();
          }
        }
        if (type < 1 || type > 6)
          Fail("{}: piece {} ('{}') has type {}, not a SentencePiece type (1..6)", name, vocab.tokens.size(), text,
               type);
        vocab.tokens.push_back(std::move(text));
        vocab.scores.push_back(score);
        vocab.types.push_back(static_cast<TokenType>(type));
        break;
      }
      case 2: {  // TrainerSpec
        size_t offset = 0;
        WireReader trainer(model.ReadBytes("trainer_spec", &offset), offset, name);
        while (trainer.Next()) {
          switch (trainer.field()) {
            case 40: vocab.unk = ToInt32(trainer.ReadVarint("unk_id"), name, "unk_id"); break;
            case 41: vocab.bos = ToInt32(trainer.ReadVarint("bos_id"), name, "bos_id"); break;
            case 42: vocab.eos = ToInt32(trainer.ReadVarint("eos_id"), name, "eos_id"); break;
            default: trainer.Skip();
          }
        }
        break;
      }
      case 3: {  // NormalizerSpec
        size_t offset = 0;
        WireReader normalizer(model.ReadBytes("normalizer_spec", &offset), offset, name);
        while (normalizer.Next()) {
          if (normalizer.field() == 3) {
            add_dummy_prefix = normalizer.ReadVarint("add_dummy_prefix") != 0;
          } else {
            normalizer.Skip();
          }
        }
        break;
      }
      default:
        model.Skip();
    }
  }
  if (vocab.tokens.empty()) Fail("{}: no pieces: not a SentencePiece model", name);
  vocab.Finalize(name);
  return std::make_unique<SpmTokenizer>(std::move(vocab), add_dummy_prefix);
}

}  // namespace lowbit
