#include "data/hdf5_file.h"

#include <H5Cpp.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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
  // At most 400 bytes leaves room in the user block for the NULs and the file size.
  SPIN_CHECK(output_marker.size() <= 400 && output_marker.find('\0') == std::string::npos, path,
             ": an output marker must be at most 400 bytes without NUL, got ", output_marker.size(), " bytes");

  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const fs::path tmp(path + ".tmp." + std::to_string(::getpid()));
  try {
    fs::create_directories(dir);
    hdf5_guard(path, cat("write ", dataset_label(kTokenDataset)), [&] {
      H5::FileCreatPropList create;
      if (!output_marker.empty()) create.setUserblock(kOutputMarkerBytes);
      H5::H5File file(tmp.string(), H5F_ACC_TRUNC, create);
      const hsize_t dims[2] = {static_cast<hsize_t>(ids32.size(0)), static_cast<hsize_t>(ids32.size(1))};
      const H5::DataSpace space(2, dims);
      H5::DataSet ds = file.createDataSet(kTokenDataset, H5::PredType::STD_I32LE, space);
      ds.write(ids32.data_ptr<int32_t>(), H5::PredType::NATIVE_INT32);
      H5::StrType str(H5::PredType::C_S1, H5T_VARIABLE);
      str.setCset(H5T_CSET_UTF8);
      const H5::DataSpace scalar(H5S_SCALAR);
      for (const auto& [key, value] : attributes) ds.createAttribute(key, str, scalar).write(str, value);
    });
    if (!output_marker.empty()) {
      // libhdf5 reserves the user block and leaves its contents to us: the marker, NUL, the file's
      // size in decimal, NUL-padded (see read_output_marker).
      std::string block = cat(output_marker, '\0', fs::file_size(tmp));
      block.resize(kOutputMarkerBytes, '\0');
      std::fstream f(tmp, std::ios::in | std::ios::out | std::ios::binary);
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
      f.close();
      SPIN_CHECK(!f.fail(), path, ": cannot write the output marker");
    }
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
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";  // also keeps a FIFO from blocking the read
  std::ifstream in(path, std::ios::binary);
  std::string head(kOutputMarkerBytes + sizeof(kSignature), '\0');
  if (!in.read(head.data(), static_cast<std::streamsize>(head.size()))) return "";
  if (head.compare(kOutputMarkerBytes, sizeof(kSignature), kSignature, sizeof(kSignature)) != 0) return "";
  // "<marker>\0<size>\0...": the marker counts only while the file keeps the size it was written
  // with, so a copy that was cut short or extended in place (h5py mode "a") is no longer ours.
  const size_t end = head.find('\0');
  if (end == 0 || end >= kOutputMarkerBytes) return "";
  const size_t size_end = head.find('\0', end + 1);
  const std::string size = head.substr(end + 1, size_end - end - 1);
  if (size_end >= kOutputMarkerBytes || size.empty() || size.size() > 19 ||
      size.find_first_not_of("0123456789") != std::string::npos)
    return "";
  if (std::stoull(size) != fs::file_size(path, ec) || ec) return "";
  return head.substr(0, end);
}

}  // namespace spin::data
