// safetensors reading (mmap, fully validated) and writing (atomic).
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
// then the data area; offsets are relative to the data area's start.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace spin {

struct TensorInfo {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data area
};

// A read-only view of one .safetensors file. Construction validates the whole header; any
// violation throws spin::Error naming the file (and tensor). Tensors are copied out on get().
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  // An owned CPU tensor with the stored dtype and shape.
  torch::Tensor get(const std::string& name) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Largest header we accept; real checkpoints have headers of a few hundred KiB.
constexpr uint64_t kMaxSafetensorsHeader = 64ull << 20;

// Writes tensors (any of F64/F32/F16/BF16/I64/I32/I8/U8/BOOL, CPU or not) in the given order, atomically.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" <-> torch::kFloat32 etc.
torch::ScalarType dtype_from_safetensors(const std::string& name, const std::string& where);
std::string dtype_to_safetensors(torch::ScalarType dtype);

}  // namespace spin
