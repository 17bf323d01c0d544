#include "data/hdf5_file.h"

#include <H5Cpp.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <vector>

#include "src/base/check.h"

namespace fs = std::filesystem;

namespace spin::data {
namespace {

// Runs f() with HDF5's stderr error printing off; an H5::Exception becomes a spin::Error
// "<path>: <what>: HDF5 <function>: <detail>". spin::Errors thrown inside f pass through.
template <typename F>
auto hdf5_guard(const std::string& path, const std::string& what, F&& f) -> decltype(f()) {
  H5::Exception::dontPrint();
  try {
    return f();
  } catch (const H5::Exception& e) {
    fail(path, ": ", what, ": HDF5 ", e.getFuncName(), ": ", e.getDetailMsg());
  }
}

std::string dataset_label(const std::string& name) { return cat("dataset '", name, "'"); }

H5::H5File open_read(const std::string& path) {
  SPIN_CHECK(fs::is_regular_file(path), path, ": no such file");
  const bool is_hdf5 = hdf5_guard(path, "open", [&] { return H5::H5File::isHdf5(path); });
  SPIN_CHECK(is_hdf5, path, ": not an HDF5 file");
  return hdf5_guard(path, "cannot open (truncated or corrupt?)", [&] { return H5::H5File(path, H5F_ACC_RDONLY); });
}

H5::DataSet open_dataset(const H5::H5File& file, const std::string& path, const std::string& name) {
  return hdf5_guard(path, dataset_label(name), [&] {
    SPIN_CHECK(file.nameExists(name), path, ": ", dataset_label(name), " not found");
    return file.openDataSet(name);
  });
}

const char* type_class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    default: return "non-numeric";
  }
}

template <typename T>
std::string join_values(const H5::Attribute& attr, const H5::PredType& mem_type, hssize_t n) {
  std::vector<T> values(static_cast<size_t>(n));
  attr.read(mem_type, values.data());
  std::ostringstream os;
  os << std::setprecision(17);
  for (size_t i = 0; i < values.size(); ++i) os << (i ? "," : "") << values[i];
  return os.str();
}

// One attribute as text (see read_attributes).
std::string attribute_text(const H5::Attribute& attr) {
  const hssize_t n = attr.getSpace().getSimpleExtentNpoints();
  switch (attr.getTypeClass()) {
    case H5T_STRING: {
      if (n != 1) return "<unsupported: string array>";
      std::string s;
      attr.read(attr.getStrType(), s);
      return s;
    }
    case H5T_INTEGER: return join_values<int64_t>(attr, H5::PredType::NATIVE_INT64, n);
    case H5T_FLOAT: return join_values<double>(attr, H5::PredType::NATIVE_DOUBLE, n);
    default: return cat("<unsupported: ", type_class_name(attr.getTypeClass()), ">");
  }
}

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

torch::Tensor read_token_ids(const std::string& path, const std::string& dataset) {
  const H5::H5File file = open_read(path);
  const H5::DataSet ds = open_dataset(file, path, dataset);
  const std::string where = cat(path, ": ", dataset_label(dataset));
  return hdf5_guard(path, dataset_label(dataset), [&] {
    const H5T_class_t cls = ds.getTypeClass();
    SPIN_CHECK(cls == H5T_INTEGER, where, ": token ids must be integers (int32 or int64), found ",
               type_class_name(cls), " data");
    const H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    SPIN_CHECK(rank == 2, where, ": expected rank 2 [N, T], found rank ", rank);
    hsize_t dims[2];
    space.getSimpleExtentDims(dims);
    SPIN_CHECK(dims[0] > 0 && dims[1] > 0, where, ": empty dataset [", dims[0], ", ", dims[1], "]");
    // A corrupt header can declare any shape; real token ids take far more than 1/64 byte each even
    // compressed, so a larger count is refused before it is allocated.
    const uint64_t max_ids = 64 * static_cast<uint64_t>(fs::file_size(path));
    SPIN_CHECK(dims[1] <= max_ids && dims[0] <= max_ids / dims[1], where, ": shape [", dims[0], ", ", dims[1],
               "] is implausible for a file of ", fs::file_size(path), " bytes (corrupt?)");
    torch::Tensor ids = torch::empty({static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1])},
                                     torch::kInt64);  // [N, T]
    ds.read(ids.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
    return ids;
  });
}

void write_token_ids(const std::string& path, const torch::Tensor& ids,
                     const std::map<std::string, std::string>& attributes, const std::string& output_marker) {
  const std::string where = cat(path, ": ", dataset_label(kTokenDataset));
  SPIN_CHECK(ids.dim() == 2, where, ": expected a [N, T] tensor, got shape ", ids.sizes());
  SPIN_CHECK(!ids.is_floating_point() && !ids.is_complex() && ids.scalar_type() != torch::kBool,
             where, ": token ids must be integers, got ", ids.scalar_type());
  SPIN_CHECK(ids.numel() > 0, where, ": refusing to write an empty tensor of shape ", ids.sizes());
  const torch::Tensor ids64 = ids.to(torch::kCPU, torch::kInt64);
  const int64_t lo = ids64.min().item<int64_t>(), hi = ids64.max().item<int64_t>();
  SPIN_CHECK(lo >= INT32_MIN && hi <= INT32_MAX, where, ": ids [", lo, ", ", hi,
             "] do not fit in int32");
  const torch::Tensor ids32 = ids64.to(torch::kInt32).contiguous();  // [N, T]

  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const fs::path tmp(path + ".tmp." + std::to_string(::getpid()));
  try {
    fs::create_directories(dir);
    hdf5_guard(path, cat("write ", dataset_label(kTokenDataset)), [&] {
      H5::H5File file(tmp.string(), H5F_ACC_TRUNC);
      const hsize_t dims[2] = {static_cast<hsize_t>(ids32.size(0)), static_cast<hsize_t>(ids32.size(1))};
      const H5::DataSpace space(2, dims);
      H5::DataSet ds = file.createDataSet(kTokenDataset, H5::PredType::STD_I32LE, space);
      ds.write(ids32.data_ptr<int32_t>(), H5::PredType::NATIVE_INT32);
      H5::StrType str(H5::PredType::C_S1, H5T_VARIABLE);
      str.setCset(H5T_CSET_UTF8);
      const H5::DataSpace scalar(H5S_SCALAR);
      for (const auto& [key, value] : attributes) ds.createAttribute(key, str, scalar).write(str, value);
      if (!output_marker.empty()) {
        H5::StrType fixed(H5::PredType::C_S1, output_marker.size());
        fixed.setStrpad(H5T_STR_NULLPAD);
        ds.createAttribute(kOutputMarkerAttribute, fixed, scalar).write(fixed, output_marker.data());
      }
    });
    fsync_path(tmp);
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail(path, ": cannot write: ", e.code().message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir);
}

std::map<std::string, std::string> read_attributes(const std::string& path) {
  const H5::H5File file = open_read(path);
  const H5::DataSet ds = open_dataset(file, path, kTokenDataset);
  return hdf5_guard(path, cat(dataset_label(kTokenDataset), " attributes"), [&] {
    std::map<std::string, std::string> out;
    const int n = ds.getNumAttrs();
    for (int i = 0; i < n; ++i) {
      const H5::Attribute attr = ds.openAttribute(static_cast<unsigned>(i));
      out[attr.getName()] = attribute_text(attr);
    }
    return out;
  });
}

std::string read_output_marker(const std::string& path) {
  constexpr size_t kMaxMarkerBytes = 4096;
  H5::Exception::dontPrint();
  try {
    if (!fs::is_regular_file(path) || !H5::H5File::isHdf5(path)) return "";
    const H5::H5File file(path, H5F_ACC_RDONLY);
    if (!file.nameExists(kTokenDataset)) return "";
    const H5::DataSet ds = file.openDataSet(kTokenDataset);
    if (!ds.attrExists(kOutputMarkerAttribute)) return "";
    const H5::Attribute attr = ds.openAttribute(kOutputMarkerAttribute);
    if (attr.getTypeClass() != H5T_STRING || attr.getSpace().getSimpleExtentType() != H5S_SCALAR) return "";
    const H5::StrType type = attr.getStrType();
    if (type.isVariableStr()) return "";
    const size_t size = type.getSize();
    if (size == 0 || size > kMaxMarkerBytes || attr.getStorageSize() != size) return "";
    std::vector<char> bytes(size);
    attr.read(type, bytes.data());  // the file's own type: a plain copy, no conversion
    return std::string(bytes.data(), strnlen(bytes.data(), size));
  } catch (...) {
    return "";
  }
}

}  // namespace spin::data
