// GGUF v3 writer: validated metadata, tensor infos with precomputed offsets,
// streamed tensor data with per-tensor alignment padding.
#include "io/gguf_writer.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr size_t kMaxNameLength = 63;  // GGML_MAX_NAME - 1, as the reader and llama.cpp require
constexpr size_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;  // the reader's nesting limit

uint64_t UnsignedMax(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return std::numeric_limits<uint8_t>::max();
    case GgufType::kUint16:
      return std::numeric_limits<uint16_t>::max();
    case GgufType::kUint32:
      return std::numeric_limits<uint32_t>::max();
    default:
      return std::numeric_limits<uint64_t>::max();
  }
}

int64_t SignedMax(GgufType t) {
  switch (t) {
    case GgufType::kInt8:
      return std::numeric_limits<int8_t>::max();
    case GgufType::kInt16:
      return std::numeric_limits<int16_t>::max();
    case GgufType::kInt32:
      return std::numeric_limits<int32_t>::max();
    default:
      return std::numeric_limits<int64_t>::max();
  }
}

// Bytes of a tensor of `type` with GGUF dims `ne` (ggml type id or
// lowbit-private format id), and whether that type is quantized. Throws for
// unknown ids and rows that are not a whole number of blocks.
uint64_t BytesOfTensor(uint32_t type, const std::vector<uint64_t>& ne, const std::string& file,
                       const std::string& tensor, bool* quantized) {
  uint64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) rows *= ne[d];
  std::string name;
  uint64_t block_size = 1, row_bytes = 0;
  if (const GgmlTypeInfo* g = FindGgmlType(type)) {
    name = g->name;
    block_size = uint64_t(g->block_size);
    row_bytes = ne[0] / block_size * uint64_t(g->type_size);
    *quantized = g->block_size > 1;  // F32/F16/BF16/F64/I8..I64 have 1-element blocks
  } else if (const FormatInfo* f = FindFormatByGgufType(type)) {
    name = std::string(f->name);
    block_size = uint64_t(f->block_size);
    row_bytes = f->RowBytes(int64_t(ne[0]));
    *quantized = f->block_size > 1 || f->row_header_bytes > 0;
  } else {
    Fail("{}: tensor '{}': unknown tensor type id {}", file, tensor, type);
  }
  if (ne[0] % block_size != 0)
    Fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", file, tensor, ne[0], name,
         block_size);
  return rows * row_bytes;
}

}  // namespace

GgufValue GgufUint(GgufType type, uint64_t value) {
  GgufValue v;
  v.type = type;
  v.u = value;
  return v;
}

GgufValue GgufInt(GgufType type, int64_t value) {
  GgufValue v;
  v.type = type;
  v.i = value;
  return v;
}

GgufValue GgufFloat(GgufType type, double value) {
  GgufValue v;
  v.type = type;
  v.f = value;
  return v;
}

GgufValue GgufBool(bool value) { return GgufUint(GgufType::kBool, value ? 1 : 0); }

GgufValue GgufString(std::string value) {
  GgufValue v;
  v.type = GgufType::kString;
  v.str = std::move(value);
  return v;
}

GgufValue GgufArray(GgufType element_type, std::vector<GgufValue> elements) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.array_type = element_type;
  v.array = std::move(elements);
  return v;
}

GgufValue GgufStringArray(const std::vector<std::string>& values) {
  std::vector<GgufValue> elements;
  elements.reserve(values.size());
  for (const auto& s : values) elements.push_back(GgufString(s));
  return GgufArray(GgufType::kString, std::move(elements));
}

GgufWriter::GgufWriter(std::string path, uint32_t alignment)
    : path_(std::move(path)), alignment_(alignment), out_(path_) {
  if (alignment == 0 || alignment % 8 != 0 || (alignment & (alignment - 1)) != 0)
    Fail("{}: GGUF alignment {} is not a power of two multiple of 8", path_, alignment);
}

void GgufWriter::Set(const std::string& key, GgufValue value) {
  if (header_written_) Fail("{}: metadata key '{}' added after the header was written", path_, key);
  if (key.empty()) Fail("{}: empty metadata key", path_);
  if (index_.count(key)) Fail("{}: duplicate metadata key '{}'", path_, key);
  if (key == "general.alignment" && (value.type != GgufType::kUint32 || value.u != alignment_))
    Fail("{}: general.alignment must be the uint32 {} this file is written with", path_, alignment_);
  index_[key] = metadata_.size();
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::AddTensor(const std::string& name, const std::vector<int64_t>& shape, const FormatInfo& format) {
  std::vector<uint64_t> ne;
  for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
    if (*it <= 0) Fail("{}: tensor '{}' has a non-positive dimension {}", path_, name, *it);
    ne.push_back(uint64_t(*it));
  }
  AddTensor(name, ne, format.gguf_type);
}

void GgufWriter::AddTensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t gguf_type) {
  if (header_written_) Fail("{}: tensor '{}' declared after the header was written", path_, name);
  if (name.empty() || name.size() > kMaxNameLength)
    Fail("{}: tensor name '{}' must have 1 to {} bytes", path_, name, kMaxNameLength);
  if (tensor_index_.count(name)) Fail("{}: duplicate tensor name '{}'", path_, name);
  if (ne.empty() || ne.size() > kMaxDims)
    Fail("{}: tensor '{}' has {} dimensions (1 to {} allowed)", path_, name, ne.size(), kMaxDims);
  for (size_t d = 0; d < ne.size(); ++d)
    if (ne[d] == 0) Fail("{}: tensor '{}' has an empty dimension {}", path_, name, d);
  Tensor t;
  t.name = name;
  t.ne = ne;
  t.type = gguf_type;
  t.bytes = BytesOfTensor(gguf_type, ne, path_, name, &t.quantized);
  t.offset = data_bytes_;
  data_bytes_ += (t.bytes + alignment_ - 1) / alignment_ * alignment_;
  tensor_index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

void GgufWriter::WriteString(const std::string& s) {
  out_.WritePod<uint64_t>(s.size());
  out_.Write(s.data(), s.size());
}

void GgufWriter::WriteValue(const std::string& key, const GgufValue& v, int depth) {
  switch (v.type) {
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32:
    case GgufType::kUint64:
      if (v.u > UnsignedMax(v.type))
        Fail("{}: metadata key '{}': {} does not fit in {}", path_, key, v.u, GgufTypeName(v.type));
      break;
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32:
    case GgufType::kInt64:
      if (v.i > SignedMax(v.type) || v.i < -SignedMax(v.type) - 1)
        Fail("{}: metadata key '{}': {} does not fit in {}", path_, key, v.i, GgufTypeName(v.type));
      break;
    case GgufType::kBool:
      if (v.u > 1) Fail("{}: metadata key '{}': bool value {} is not 0 or 1", path_, key, v.u);
      break;
    default:
      break;
  }
  switch (v.type) {
    case GgufType::kUint8:
      out_.WritePod(uint8_t(v.u));
      break;
    case GgufType::kUint16:
      out_.WritePod(uint16_t(v.u));
      break;
    case GgufType::kUint32:
      out_.WritePod(uint32_t(v.u));
      break;
    case GgufType::kUint64:
      out_.WritePod(uint64_t(v.u));
      break;
    case GgufType::kInt8:
      out_.WritePod(int8_t(v.i));
      break;
    case GgufType::kInt16:
      out_.WritePod(int16_t(v.i));
      break;
    case GgufType::kInt32:
      out_.WritePod(int32_t(v.i));
      break;
    case GgufType::kInt64:
      out_.WritePod(int64_t(v.i));
      break;
    case GgufType::kFloat32:
      out_.WritePod(float(v.f));
      break;
    case GgufType::kFloat64:
      out_.WritePod(double(v.f));
      break;
    case GgufType::kBool:
      out_.WritePod(uint8_t(v.u));
      break;
    case GgufType::kString:
      WriteString(v.str);
      break;
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) Fail("{}: metadata key '{}': arrays nested too deeply", path_, key);
      if (uint32_t(v.array_type) > uint32_t(GgufType::kFloat64))
        Fail("{}: metadata key '{}': invalid array element type {}", path_, key, uint32_t(v.array_type));
      out_.WritePod(uint32_t(v.array_type));
      out_.WritePod(uint64_t(v.array.size()));
      for (const GgufValue& e : v.array) {
        if (e.type != v.array_type)
          Fail("{}: metadata key '{}': array of {} holds a {}", path_, key, GgufTypeName(v.array_type),
               GgufTypeName(e.type));
        WriteValue(key, e, depth + 1);
      }
      break;
    }
    default:
      Fail("{}: metadata key '{}': invalid value type {}", path_, key, uint32_t(v.type));
  }
}

void GgufWriter::Pad() {
  static const uint8_t kZeros[256] = {};
  const uint64_t pad = (alignment_ - out_.bytes_written() % alignment_) % alignment_;
  for (uint64_t left = pad; left > 0;) {
    const uint64_t n = std::min<uint64_t>(left, sizeof(kZeros));
    out_.Write(kZeros, n);
    left -= n;
  }
}

void GgufWriter::WriteHeader() {
  if (header_written_) return;
  if (alignment_ != kGgufDefaultAlignment && !Has("general.alignment"))
    Set("general.alignment", GgufUint(GgufType::kUint32, alignment_));
  bool quantized = false;
  for (const Tensor& t : tensors_) quantized |= t.quantized;
  // ggml's quantization layout version; llama.cpp expects it on quantized files.
  if (quantized && !Has("general.quantization_version"))
    Set("general.quantization_version", GgufUint(GgufType::kUint32, 2));
  header_written_ = true;

  out_.Write("GGUF", 4);
  out_.WritePod(kGgufVersion);
  out_.WritePod(uint64_t(tensors_.size()));
  out_.WritePod(uint64_t(metadata_.size()));
  for (const auto& [key, value] : metadata_) {
    WriteString(key);
    out_.WritePod(uint32_t(value.type));
    WriteValue(key, value, 0);
  }
  for (const Tensor& t : tensors_) {
    WriteString(t.name);
    out_.WritePod(uint32_t(t.ne.size()));
    for (uint64_t n : t.ne) out_.WritePod(n);
    out_.WritePod(t.type);
    out_.WritePod(t.offset);
  }
  Pad();
}

const std::string& GgufWriter::next_tensor_name() const {
  static const std::string kNone;
  return current_ < tensors_.size() ? tensors_[current_].name : kNone;
}

void GgufWriter::WriteTensorData(std::span<const uint8_t> bytes) {
  WriteHeader();
  if (bytes.empty()) return;
  if (current_ >= tensors_.size()) Fail("{}: {} bytes of tensor data after the last tensor", path_, bytes.size());
  const Tensor& t = tensors_[current_];
  if (bytes.size() > t.bytes - current_written_)
    Fail("{}: tensor '{}' takes {} bytes, but {} more arrived after {}", path_, t.name, t.bytes, bytes.size(),
         current_written_);
  out_.Write(bytes.data(), bytes.size());
  current_written_ += bytes.size();
  if (current_written_ == t.bytes) {
    Pad();
    ++current_;
    current_written_ = 0;
  }
}

void GgufWriter::Finish() {
  WriteHeader();
  if (current_ < tensors_.size())
    Fail("{}: tensor '{}' got {} of its {} bytes before the file was finished", path_, tensors_[current_].name,
         current_written_, tensors_[current_].bytes);
  out_.Commit();
}

}  // namespace lowbit
