#include "src/io/resources.h"

#include <sys/resource.h>

#include <fstream>
#include <iomanip>
#include <sstream>

#include "src/base/check.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

// The first number in `file` after `key` (e.g. "MemAvailable:" in kB), or -1.
int64_t read_number(const fs::path& file, const std::string& key = "") {
  std::ifstream in(file);
  std::string word;
  if (key.empty()) return (in >> word) && word != "max" ? std::stoll(word) : -1;
  while (in >> word)
    if (word == key && (in >> word)) return std::stoll(word);
  return -1;
}

fs::path existing_ancestor(fs::path p) {
  p = fs::absolute(p);
  std::error_code ec;
  while (!fs::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  return p;
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(bytes >= (1ull << 30) ? 2 : 1);
  if (bytes >= (1ull << 30))
    os << bytes / double(1ull << 30) << " GiB";
  else
    os << bytes / double(1ull << 20) << " MiB";
  return os.str();
}

uint64_t free_disk_bytes(const fs::path& path) {
  std::error_code ec;
  const fs::space_info s = fs::space(existing_ancestor(path), ec);
  SPIN_CHECK(!ec, path.string(), ": cannot query free disk space (", ec.message(), ")");
  return s.available;
}

uint64_t available_memory_bytes() {
  const int64_t kb = read_number("/proc/meminfo", "MemAvailable:");
  uint64_t avail = kb > 0 ? uint64_t(kb) * 1024 : 0;
  const int64_t max = read_number("/sys/fs/cgroup/memory.max"), cur = read_number("/sys/fs/cgroup/memory.current");
  if (max > 0 && cur >= 0) {
    const uint64_t headroom = max > cur ? uint64_t(max - cur) : 0;
    avail = avail == 0 ? headroom : std::min(avail, headroom);
  }
  return avail;
}

void require_disk(const fs::path& path, uint64_t bytes, const std::string& what) {
  const uint64_t free = free_disk_bytes(path);
  SPIN_CHECK(free >= bytes, what, ": writing ", path.string(), " needs about ", format_bytes(bytes), " but only ",
             format_bytes(free), " is free on ", existing_ancestor(path).string());
}

void require_memory(uint64_t bytes, const std::string& what) {
  const uint64_t avail = available_memory_bytes();
  SPIN_CHECK(avail == 0 || bytes <= avail, what, " needs about ", format_bytes(bytes), " more memory but only ",
             format_bytes(avail), " is available (MemAvailable / cgroup limit)");
}

int64_t rss_bytes() { return std::max<int64_t>(0, read_number("/proc/self/status", "VmRSS:")) * 1024; }

int64_t peak_rss_bytes() {
  if (const int64_t hwm = read_number("/proc/self/status", "VmHWM:"); hwm >= 0) return hwm * 1024;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5" << std::flush;
  return f.good();
}

}  // namespace spin
