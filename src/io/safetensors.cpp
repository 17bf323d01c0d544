#include "src/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "src/io/atomic_file.h"
#include "src/base/check.h"
#include "src/base/json_input.h"

namespace spin {
namespace {

const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> table = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
      {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
      {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool}};
  return table;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

torch::ScalarType dtype_from_safetensors(const std::string& name, const std::string& where) {
  for (const auto& [n, t] : dtype_table())
    if (n == name) return t;
  fail(where, ": unknown dtype '", name, "'");
}

std::string dtype_to_safetensors(torch::ScalarType dtype) {
  for (const auto& [n, t] : dtype_table())
    if (t == dtype) return n;
  fail("safetensors: cannot store dtype ", c10::toString(dtype));
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  SPIN_CHECK(fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  ::fstat(fd, &st);
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ > 0) {
    void* p = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    SPIN_CHECK(p != MAP_FAILED, path, ": mmap failed");
    map_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  try {
    SPIN_CHECK(map_size_ >= 8, path, ": file of ", map_size_, " bytes is too short for a safetensors header");
    const uint64_t header_len = read_le64(map_);
    SPIN_CHECK(header_len <= kMaxSafetensorsHeader, path, ": header length ", header_len,
               " exceeds the limit of ", kMaxSafetensorsHeader, " bytes");
    SPIN_CHECK(header_len <= map_size_ - 8, path, ": header length ", header_len, " runs past the end of the ",
               map_size_, "-byte file");
    data_start_ = 8 + header_len;
    const uint64_t data_size = map_size_ - data_start_;
    const nlohmann::json header = parse_untrusted_json(map_ + 8, map_ + 8 + header_len, path + ": header");
    SPIN_CHECK(header.is_object(), path, ": header is not a JSON object");
    for (const auto& [name, entry] : header.items()) {
      const std::string where = cat(path, ": tensor '", name, "'");
      if (name == "__metadata__") {
        SPIN_CHECK(entry.is_object(), path, ": __metadata__ is not an object");
        for (const auto& [k, v] : entry.items()) {
          SPIN_CHECK(v.is_string(), path, ": __metadata__ value for '", k, "' is not a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      SPIN_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                     entry.contains("data_offsets"),
                 where, ": entry needs dtype, shape and data_offsets");
      SPIN_CHECK(entry["dtype"].is_string(), where, ": dtype is not a string");
      TensorInfo info;
      info.name = name;
      info.dtype = dtype_from_safetensors(entry["dtype"].get<std::string>(), where);
      const auto& shape = entry["shape"];
      SPIN_CHECK(shape.is_array() && shape.size() <= 8, where, ": shape is not an array of at most 8 dims");
      uint64_t numel = 1;
      for (const auto& d : shape) {
        SPIN_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), where,
                   ": shape has a negative or non-integer dimension");
        const uint64_t dim = d.get<uint64_t>();
        SPIN_CHECK(dim == 0 || numel <= data_size / dim, where, ": shape ", shape.dump(),
                   " is larger than the file's data area");
        numel *= dim;
        info.shape.push_back(static_cast<int64_t>(dim));
      }
      const auto& off = entry["data_offsets"];
      SPIN_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                 where, ": data_offsets must be two non-negative integers");
      info.begin = off[0].get<uint64_t>();
      info.end = off[1].get<uint64_t>();
      SPIN_CHECK(info.begin <= info.end, where, ": data_offsets [", info.begin, ", ", info.end, ") are reversed");
      SPIN_CHECK(info.end <= data_size, where, ": data range [", info.begin, ", ", info.end,
                 ") exceeds the data area of ", data_size, " bytes");
      const uint64_t nbytes = numel * c10::elementSize(info.dtype);
      SPIN_CHECK(info.end - info.begin == nbytes, where, ": data range holds ", info.end - info.begin,
                 " bytes but dtype and shape ", shape.dump(), " need ", nbytes);
      index_[name] = tensors_.size();
      tensors_.push_back(std::move(info));
    }
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      SPIN_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end, path, ": tensors '", by_offset[i - 1]->name,
                 "' and '", by_offset[i]->name, "' overlap in the data area");
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  SPIN_CHECK(it != index_.end(), path_, ": no tensor '", name, "'");
  return tensors_[it->second];
}

torch::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& t = info(name);
  torch::Tensor out = torch::empty(t.shape, torch::TensorOptions().dtype(t.dtype));
  if (t.end > t.begin) std::memcpy(out.data_ptr(), map_ + data_start_ + t.begin, t.end - t.begin);
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_to_safetensors(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(c));
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keep the data area 8-byte aligned
  write_file_atomic(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((uint64_t(json.size()) >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(json.data(), json.size());
    for (const auto& c : contiguous) out.write(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
    SPIN_CHECK(out.good(), path, ": write failed (disk full?)");
  });
}

}  // namespace spin
