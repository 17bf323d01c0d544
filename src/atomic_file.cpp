#include "src/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <fstream>

#include "src/check.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

fs::path temp_name(const fs::path& path) {
  return fs::path(path.string() + ".tmp." + std::to_string(::getpid()));
}

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

fs::path parent_or_dot(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::function<void(const fs::path&)>& write) {
  const fs::path tmp = temp_name(path);
  fs::create_directories(parent_or_dot(path));
  try {
    write(tmp);
    fsync_path(tmp);
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(parent_or_dot(path));
}

void write_text_atomic(const fs::path& path, const std::string& contents) {
  write_file_atomic(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out << contents;
    SPIN_CHECK(out.good(), tmp.string(), ": write failed");
  });
}

void write_dir_atomic(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
  const fs::path tmp = temp_name(dir);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    fill(tmp);
    for (const auto& entry : fs::directory_iterator(tmp)) fsync_path(entry.path());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  if (fs::exists(dir)) {
    // Swap both names in one step: at no moment is `dir` missing or partial.
    SPIN_CHECK(::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0,
               dir.string(), ": cannot replace directory atomically");
    fs::remove_all(tmp, ec);  // now holds the previous contents
  } else {
    fs::rename(tmp, dir);
  }
  fsync_path(parent_or_dot(dir));
}

}  // namespace spin
