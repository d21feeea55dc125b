// safetensors parsing with every header field checked against the file bytes,
// and the sharded-checkpoint index.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lowbit {

namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers over 100 MB; a real header
// (tens of bytes per tensor) never comes close, so anything larger is corrupt.
constexpr uint64_t kMaxHeaderSize = 100'000'000;
constexpr size_t kMaxDims = 8;

struct DTypeEntry {
  const char* name;
  size_t size;
};
// Every fixed-width dtype the format defines. Sub-byte ones (F4, F6_*) have no
// whole-byte element size and are reported as unknown.
constexpr DTypeEntry kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},     {"C64", 8},
};

std::string Truncated(const std::string& s) { return s.size() <= 64 ? s : s.substr(0, 61) + "..."; }

uint64_t ReadU64Le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON number that must be a non-negative integer (shapes and offsets).
uint64_t AsCount(const Json& v, const std::string& file, const std::string& tensor, const char* field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  Fail("{}: tensor '{}': {} holds {}, expected a non-negative integer", file, Truncated(tensor), field,
       Truncated(v.dump()));
}

}  // namespace

size_t SafetensorsDTypeSize(const std::string& dtype) {
  for (const DTypeEntry& e : kDTypes)
    if (dtype == e.name) return e.size;
  return 0;
}

std::optional<DType> SafetensorsToDType(const std::string& dtype) {
  if (dtype == "F32") return DType::kF32;
  if (dtype == "F16") return DType::kF16;
  if (dtype == "BF16") return DType::kBF16;
  return std::nullopt;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : map_(std::make_unique<MappedFile>(path)), name_(path), base_(map_->data()), size_(map_->size()) {
  Parse();
}

SafetensorsFile::SafetensorsFile(std::span<const uint8_t> bytes, std::string name)
    : name_(std::move(name)), base_(bytes.data()), size_(bytes.size()) {
  Parse();
}

void SafetensorsFile::Parse() {
  if (size_ < 8) Fail("{}: file is too short for a safetensors header ({} bytes)", name_, size_);
  header_size_ = ReadU64Le(base_);
  if (header_size_ > size_ - 8)
    Fail("{}: header length {} runs past the end of the file ({} bytes); not a safetensors file or truncated",
         name_, header_size_, size_);
  if (header_size_ > kMaxHeaderSize)
    Fail("{}: header length {} exceeds the {} byte limit", name_, header_size_, kMaxHeaderSize);
  if (header_size_ < 2 || base_[8] != '{')
    Fail("{}: header does not start with '{{'; not a safetensors file", name_);

  // Duplicate top-level keys would silently shadow each other in the parsed
  // object, so they are caught while parsing.
  std::set<std::string> seen;
  const auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) Fail("{}: header lists tensor '{}' twice", name_, Truncated(key));
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(base_ + 8);
  Json header;
  try {
    header = Json::parse(text, text + header_size_, on_event);
  } catch (const Json::exception& e) {
    Fail("{}: header is not valid JSON: {}", name_, e.what());
  }
  if (!header.is_object()) Fail("{}: header is a JSON {}, expected an object", name_, header.type_name());

  const uint64_t data_start = 8 + header_size_;
  const uint64_t data_size = size_ - data_start;
  tensors_.reserve(header.size());
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;  // free-form strings (e.g. {"format": "pt"}); nothing lowbit needs
    const std::string tname = Truncated(key);
    if (!entry.is_object()) Fail("{}: tensor '{}': entry is a JSON {}, expected an object", name_, tname, entry.type_name());
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) Fail("{}: tensor '{}' has no dtype string", name_, tname);
    if (shape_it == entry.end() || !shape_it->is_array()) Fail("{}: tensor '{}' has no shape array", name_, tname);
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
      Fail("{}: tensor '{}' needs data_offsets [begin, end]", name_, tname);

    SafetensorsTensorInfo info;
    info.name = key;
    info.dtype = dtype_it->get<std::string>();
    const size_t elem = SafetensorsDTypeSize(info.dtype);
    if (elem == 0) Fail("{}: tensor '{}' has unknown dtype '{}'", name_, tname, Truncated(info.dtype));
    if (shape_it->size() > kMaxDims)
      Fail("{}: tensor '{}' has {} dimensions, more than {}", name_, tname, shape_it->size(), kMaxDims);
    // Element count and byte size, refusing anything that overflows 63 bits.
    uint64_t count = 1;
    bool overflow = false;
    for (const Json& d : *shape_it) {
      const uint64_t dim = AsCount(d, name_, key, "shape");
      if (dim > uint64_t(INT64_MAX)) overflow = true;
      info.shape.push_back(int64_t(dim & uint64_t(INT64_MAX)));
      overflow |= __builtin_mul_overflow(count, dim, &count);
    }
    uint64_t need = 0;
    overflow |= __builtin_mul_overflow(count, uint64_t(elem), &need) || need > uint64_t(INT64_MAX);
    if (overflow) Fail("{}: tensor '{}' has an absurd shape {}", name_, tname, Truncated(shape_it->dump()));
    info.begin = AsCount((*offsets_it)[0], name_, key, "data_offsets");
    info.end = AsCount((*offsets_it)[1], name_, key, "data_offsets");
    if (info.begin > info.end)
      Fail("{}: tensor '{}' has data_offsets [{}, {}] with begin after end", name_, tname, info.begin, info.end);
    if (info.end > data_size)
      Fail("{}: tensor '{}' has data_offsets [{}, {}] out of range: the data section holds {} bytes", name_, tname,
           info.begin, info.end, data_size);
    if (info.bytes() != need)
      Fail("{}: tensor '{}' has dtype {} and shape ({}), which needs {} bytes, but data_offsets [{}, {}] span {}",
           name_, tname, info.dtype, fmt::join(info.shape, ", "), need, info.begin, info.end, info.bytes());
    info.data = base_ + data_start + info.begin;
    // Views are read through typed pointers; a misaligned start would be
    // undefined behaviour (writers pad the header to 8 bytes to prevent it).
    if (reinterpret_cast<uintptr_t>(info.data) % elem != 0)
      Fail("{}: tensor '{}' ({}) starts at file offset {}, which is not a multiple of its {}-byte element size", name_,
           tname, info.dtype, data_start + info.begin, elem);
    tensors_.push_back(std::move(info));
  }

  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const SafetensorsTensorInfo* prev = nullptr;
  for (const SafetensorsTensorInfo& t : tensors_) {
    if (t.bytes() == 0) continue;  // empty tensors occupy no bytes and cannot overlap
    if (prev != nullptr && t.begin < prev->end)
      Fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", name_, Truncated(prev->name), prev->begin, prev->end,
           Truncated(t.name), t.begin, t.end);
    prev = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const SafetensorsTensorInfo* SafetensorsFile::Find(const std::string& tensor) const {
  auto it = index_.find(tensor);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::View(const SafetensorsTensorInfo& info) const {
  const std::optional<DType> type = SafetensorsToDType(info.dtype);
  if (!type)
    Fail("{}: tensor '{}' has dtype {}, which lowbit cannot compute with (F32, F16 and BF16 are supported)", name_,
         info.name, info.dtype);
  TensorView v;
  v.name = info.name;
  v.type = *type;
  v.shape = info.shape;
  v.data = info.data;
  v.bytes = info.bytes();
  return v;
}

TensorView SafetensorsFile::View(const std::string& tensor) const {
  const SafetensorsTensorInfo* info = Find(tensor);
  if (info == nullptr) Fail("{}: no tensor '{}'", name_, tensor);
  return View(*info);
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  if (fs::exists(index_path, ec)) {
    const std::string index_name = index_path.string();
    Json index;
    try {
      index = Json::parse(ReadFileToString(index_name));
    } catch (const Json::exception& e) {
      Fail("{}: not valid JSON: {}", index_name, e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      Fail("{}: expected an object with a \"weight_map\" object", index_name);
    const Json& weight_map = index["weight_map"];
    if (weight_map.empty()) Fail("{}: weight_map is empty", index_name);
    std::map<std::string, size_t> shard_index;
    for (const auto& [tensor, shard] : weight_map.items()) {
      if (!shard.is_string()) Fail("{}: weight_map entry '{}' is not a file name", index_name, tensor);
      const std::string file = shard.get<std::string>();
      // Shards must sit beside the index; a path could read any file on the machine.
      if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
          file.find('\\') != std::string::npos)
        Fail("{}: weight_map entry '{}' names '{}', which is not a plain file name", index_name, tensor, file);
      auto [it, inserted] = shard_index.emplace(file, files_.size());
      if (inserted) {
        const fs::path shard_path = fs::path(dir) / file;
        if (!fs::exists(shard_path, ec))
          Fail("{}: shard '{}' (holding '{}') does not exist", index_name, file, tensor);
        files_.push_back(std::make_shared<SafetensorsFile>(shard_path.string()));
      }
      const SafetensorsFile& f = *files_[it->second];
      if (f.Find(tensor) == nullptr)
        Fail("{}: weight_map puts '{}' in {}, which has no such tensor", index_name, tensor, f.name());
      where_[tensor] = it->second;
    }
    return;
  }
  fs::path path = single_path;
  if (!fs::exists(single_path, ec)) {
    // Some exports use another file name; one lone .safetensors file is unambiguous.
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path());
    if (found.size() != 1)
      Fail("{}: no model.safetensors or model.safetensors.index.json{}", dir,
           found.empty() ? "" : fmt::format(" (and {} other .safetensors files; which one?)", found.size()));
    path = found[0];
  }
  files_.push_back(std::make_shared<SafetensorsFile>(path.string()));
  for (const SafetensorsTensorInfo& t : files_[0]->tensors()) where_[t.name] = 0;
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

const SafetensorsFile& SafetensorsCheckpoint::FileOf(const std::string& tensor) const {
  auto it = where_.find(tensor);
  if (it == where_.end()) Fail("{}: checkpoint has no tensor '{}'", dir_, tensor);
  return *files_[it->second];
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::Info(const std::string& tensor) const {
  return *FileOf(tensor).Find(tensor);
}

TensorView SafetensorsCheckpoint::View(const std::string& tensor) const { return FileOf(tensor).View(tensor); }

}  // namespace lowbit
