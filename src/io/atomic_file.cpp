#include "src/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "src/base/check.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

// "out/" and "out" name the same output; the temporary must sit beside it, not inside.
fs::path without_trailing_slash(const fs::path& path) {
  const fs::path p = path.lexically_normal();
  return p.has_filename() || !p.has_parent_path() ? p : p.parent_path();
}

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

// Removes "<path>.tmp.<pid>" leftovers of writers that were killed (their pid no longer exists on
// this machine), so SIGKILLed runs do not pile up half-written copies next to their outputs.
void remove_stale_temps(const fs::path& path) {
  const std::string prefix = path.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent_or_dot(path), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(std::stoi(pid), 0) == -1 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
}

}  // namespace

void write_file_atomic(const fs::path& given, const std::function<void(const fs::path&)>& write) {
  const fs::path path = without_trailing_slash(given);
  const fs::path tmp = temp_name(path);
  fs::create_directories(parent_or_dot(path));
  remove_stale_temps(path);
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

void write_dir_atomic(const fs::path& given, const std::function<void(const fs::path&)>& fill) {
  const fs::path dir = without_trailing_slash(given);
  const fs::path tmp = temp_name(dir);
  std::error_code ec;
  fs::create_directories(parent_or_dot(dir));
  remove_stale_temps(dir);
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
