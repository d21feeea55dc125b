// GGUF parsing with bounds checks on every read.
#include "io/gguf.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},        {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},        {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},
};

constexpr uint64_t kMaxDims = 4;
constexpr uint64_t kMaxNameLength = 63;      // GGML_MAX_NAME - 1
constexpr uint64_t kMaxArrayDepth = 8;

// Sequential little-endian reader over the file bytes.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& name) : base_(base), size_(size), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void Need(uint64_t n, const char* what) const {
    if (n > size_ - pos_)
      Fail("{}: truncated: need {} bytes for {} at offset {}, file has {}", name_, n, what, pos_, size_);
  }
  template <typename T>
  T Read(const char* what) {
    Need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string ReadString(const char* what) {
    const uint64_t n = Read<uint64_t>(what);
    Need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& name_;
};

// Smallest encoded size of one element, used to reject absurd array counts
// before allocating.
uint64_t MinEncodedSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: case GgufType::kString: return 8;
    case GgufType::kArray: return 12;
  }
  return 1;
}

bool ValidType(uint32_t t) { return t <= 12; }

GgufValue ReadValue(Cursor& c, GgufType type, const std::string& key, const std::string& file, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::kUint8: v.u = c.Read<uint8_t>("uint8 value"); break;
    case GgufType::kInt8: v.i = c.Read<int8_t>("int8 value"); break;
    case GgufType::kUint16: v.u = c.Read<uint16_t>("uint16 value"); break;
    case GgufType::kInt16: v.i = c.Read<int16_t>("int16 value"); break;
    case GgufType::kUint32: v.u = c.Read<uint32_t>("uint32 value"); break;
    case GgufType::kInt32: v.i = c.Read<int32_t>("int32 value"); break;
    case GgufType::kUint64: v.u = c.Read<uint64_t>("uint64 value"); break;
    case GgufType::kInt64: v.i = c.Read<int64_t>("int64 value"); break;
    case GgufType::kFloat32: v.f = c.Read<float>("float32 value"); break;
    case GgufType::kFloat64: v.f = c.Read<double>("float64 value"); break;
    case GgufType::kBool: {
      const uint8_t b = c.Read<uint8_t>("bool value");
      if (b > 1) Fail("{}: metadata key '{}': bool value {} is not 0 or 1", file, key, b);
      v.u = b;
      break;
    }
    case GgufType::kString: v.str = c.ReadString("string value"); break;
    case GgufType::kArray: {
      if (depth >= int(kMaxArrayDepth)) Fail("{}: metadata key '{}': arrays nested too deeply", file, key);
      const uint32_t et = c.Read<uint32_t>("array element type");
      if (!ValidType(et)) Fail("{}: metadata key '{}': unknown array element type {}", file, key, et);
      v.array_type = GgufType(et);
      const uint64_t n = c.Read<uint64_t>("array length");
      if (n > c.remaining() / MinEncodedSize(v.array_type))
        Fail("{}: metadata key '{}': array of {} elements runs past the end of the file", file, key, n);
      v.array.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.array.push_back(ReadValue(c, v.array_type, key, file, depth + 1));
      break;
    }
  }
  return v;
}

}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

std::string GgufTypeName(GgufType type) {
  static const char* const kNames[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                       "bool",  "string", "array",  "uint64", "int64", "float64"};
  const auto t = uint32_t(type);
  return t <= 12 ? kNames[t] : "unknown";
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kUint16: case GgufType::kInt16:
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kUint64: case GgufType::kInt64:
    case GgufType::kBool:
      return true;
    default:
      return false;
  }
}

bool GgufValue::IsFloat() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }

int64_t GgufValue::AsInt() const {
  switch (type) {
    case GgufType::kUint8: case GgufType::kUint16: case GgufType::kUint32: case GgufType::kUint64:
    case GgufType::kBool:
      return int64_t(u);
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64:
      return i;
    default:
      Fail("expected an integer, found {}", GgufTypeName(type));
  }
}

double GgufValue::AsDouble() const {
  if (IsFloat()) return f;
  if (IsInteger()) return double(AsInt());
  Fail("expected a number, found {}", GgufTypeName(type));
}

GgufFile::GgufFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)), name_(path) {
  base_ = map_->data();
  size_ = map_->size();
  Parse();
}

GgufFile::GgufFile(std::span<const uint8_t> bytes, std::string name) : name_(std::move(name)) {
  base_ = bytes.data();
  size_ = bytes.size();
  Parse();
}

void GgufFile::Parse() {
  Cursor c(base_, size_, name_);
  if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0) Fail("{}: not a GGUF file (bad magic)", name_);
  c.Read<uint32_t>("magic");
  version_ = c.Read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    Fail("{}: unsupported GGUF version {} (this reader handles 2 and 3)", name_, version_);
  const uint64_t n_tensors = c.Read<uint64_t>("tensor count");
  const uint64_t n_kv = c.Read<uint64_t>("metadata count");
  // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
  if (n_kv > c.remaining() / 13) Fail("{}: metadata count {} is larger than the file allows", name_, n_kv);
  if (n_tensors > c.remaining() / 32) Fail("{}: tensor count {} is larger than the file allows", name_, n_tensors);

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.ReadString("metadata key");
    const uint32_t t = c.Read<uint32_t>("metadata value type");
    if (!ValidType(t)) Fail("{}: metadata key '{}' has unknown value type {}", name_, key, t);
    GgufValue v = ReadValue(c, GgufType(t), key, name_, 0);
    if (metadata_index_.count(key)) Fail("{}: duplicate metadata key '{}'", name_, key);
    metadata_index_[key] = metadata_.size();
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->IsInteger()) Fail("{}: general.alignment must be an integer", name_);
    const int64_t al = a->AsInt();
    if (al <= 0 || al % 8 != 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      Fail("{}: general.alignment {} is not a power of two multiple of 8", name_, al);
    alignment_ = uint32_t(al);
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo info;
    info.name = c.ReadString("tensor name");
    if (info.name.size() > kMaxNameLength)
      Fail("{}: tensor name '{}...' is longer than {} bytes", name_, info.name.substr(0, 32), kMaxNameLength);
    const uint32_t nd = c.Read<uint32_t>("tensor dimension count");
    if (nd == 0 || nd > kMaxDims) Fail("{}: tensor '{}' has {} dimensions (1 to 4 allowed)", name_, info.name, nd);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t ne = c.Read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (uint64_t(1) << 40) || elements > (uint64_t(1) << 50) / ne)
        Fail("{}: tensor '{}' has invalid dimension {} = {}", name_, info.name, d, ne);
      elements *= ne;
      info.ne.push_back(ne);
    }
    info.ggml_type = c.Read<uint32_t>("tensor type");
    if (const GgmlTypeInfo* ti = FindGgmlType(info.ggml_type)) {
      if (info.ne[0] % uint64_t(ti->block_size) != 0)
        Fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", name_, info.name,
             info.ne[0], ti->name, ti->block_size);
      info.bytes = elements / uint64_t(ti->block_size) * uint64_t(ti->type_size);
    } else if (const FormatInfo* f = FindFormatByGgufType(info.ggml_type)) {
      // A lowbit-private format (id >= 1024, which llama.cpp rejects as an invalid type).
      if (info.ne[0] % uint64_t(f->block_size) != 0)
        Fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", name_, info.name,
             info.ne[0], f->name, f->block_size);
      info.bytes = elements / info.ne[0] * f->RowBytes(int64_t(info.ne[0]));
    } else {
      Fail("{}: tensor '{}' has unknown ggml type {}", name_, info.name, info.ggml_type);
    }
    info.offset = c.Read<uint64_t>("tensor offset");
    if (info.offset % alignment_ != 0)
      Fail("{}: tensor '{}' offset {} is not a multiple of the alignment {}", name_, info.name, info.offset,
           alignment_);
    if (tensor_index_.count(info.name)) Fail("{}: duplicate tensor name '{}'", name_, info.name);
    tensor_index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }

  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size_)
    Fail("{}: truncated: data section would start at {} but the file has {} bytes", name_, data_offset_, size_);
  for (auto& t : tensors_) {
    const uint64_t avail = size_ - data_offset_;
    if (t.offset > avail || t.bytes > avail - t.offset)
      Fail("{}: truncated: tensor '{}' needs bytes {}..{} of the data section, which has {}", name_, t.name,
           t.offset, t.offset + t.bytes, avail);
    t.data = base_ + data_offset_ + t.offset;
  }
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

int64_t GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) Fail("{}: missing metadata key '{}'", name_, key);
  if (!v->IsInteger()) Fail("{}: metadata key '{}' is {}, expected an integer", name_, key, GgufTypeName(v->type));
  return v->AsInt();
}

int64_t GgufFile::GetInt(const std::string& key, int64_t fallback) const {
  return Has(key) ? GetInt(key) : fallback;
}

double GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) Fail("{}: missing metadata key '{}'", name_, key);
  if (!v->IsFloat() && !v->IsInteger())
    Fail("{}: metadata key '{}' is {}, expected a number", name_, key, GgufTypeName(v->type));
  return v->AsDouble();
}

double GgufFile::GetFloat(const std::string& key, double fallback) const {
  return Has(key) ? GetFloat(key) : fallback;
}

std::string GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) Fail("{}: missing metadata key '{}'", name_, key);
  if (v->type != GgufType::kString)
    Fail("{}: metadata key '{}' is {}, expected a string", name_, key, GgufTypeName(v->type));
  return v->str;
}

std::string GgufFile::GetString(const std::string& key, const std::string& fallback) const {
  return Has(key) ? GetString(key) : fallback;
}

namespace {
const GgufValue& ArrayOf(const GgufFile& f, const std::string& key, const char* what, bool (*ok)(GgufType)) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) Fail("{}: missing metadata key '{}'", f.name(), key);
  if (v->type != GgufType::kArray || !ok(v->array_type))
    Fail("{}: metadata key '{}' is not an array of {}", f.name(), key, what);
  return *v;
}
}  // namespace

std::vector<std::string> GgufFile::GetStringArray(const std::string& key) const {
  const GgufValue& v = ArrayOf(*this, key, "strings", [](GgufType t) { return t == GgufType::kString; });
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(e.str);
  return out;
}

std::vector<double> GgufFile::GetFloatArray(const std::string& key) const {
  const GgufValue& v = ArrayOf(*this, key, "numbers", [](GgufType t) {
    return t != GgufType::kString && t != GgufType::kArray;
  });
  std::vector<double> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(e.AsDouble());
  return out;
}

std::vector<int64_t> GgufFile::GetIntArray(const std::string& key) const {
  const GgufValue& v = ArrayOf(*this, key, "integers", [](GgufType t) {
    return t != GgufType::kString && t != GgufType::kArray && t != GgufType::kFloat32 && t != GgufType::kFloat64;
  });
  std::vector<int64_t> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(e.AsInt());
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView GgufFile::View(const GgufTensorInfo& info) const {
  const FormatInfo* f = FindFormatByGgufType(info.ggml_type);
  if (f == nullptr) {
    const GgmlTypeInfo* ti = FindGgmlType(info.ggml_type);
    Fail("{}: tensor '{}' has type {}, which lowbit cannot load yet", name_, info.name,
         ti ? ti->name : fmt::format("#{}", info.ggml_type));
  }
  TensorView v;
  v.name = info.name;
  v.type = f->id;
  for (auto it = info.ne.rbegin(); it != info.ne.rend(); ++it) v.shape.push_back(int64_t(*it));
  if (info.ne[0] % uint64_t(f->block_size) != 0)
    Fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", name_, info.name, info.ne[0],
         f->name, f->block_size);
  const uint64_t expect = uint64_t(v.Rows()) * f->RowBytes(v.RowLength());
  if (expect != info.bytes)
    Fail("{}: tensor '{}' of type {} needs {} bytes, the file's layout gives {}", name_, info.name, f->name, expect,
         info.bytes);
  v.data = info.data;
  v.bytes = info.bytes;
  if (f->block_size == 1 && reinterpret_cast<uintptr_t>(v.data) % uint64_t(f->block_bytes) != 0)
    Fail("{}: tensor '{}' data is misaligned", name_, info.name);
  return v;
}

}  // namespace lowbit
