// Resource checks before long work: free disk space for an output, memory for a job. Each failure is
// one line naming what needs the space, how much, and how much there is.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace spin {

// Bytes available to an unprivileged writer on the filesystem that holds `path` (or would hold it:
// the nearest existing ancestor is asked).
uint64_t free_disk_bytes(const std::filesystem::path& path);

// Memory this process could still use: /proc/meminfo's MemAvailable, lowered to the cgroup v2 limit's
// headroom (memory.max - memory.current) inside a container. 0 if neither can be read.
uint64_t available_memory_bytes();

// Throws spin::Error when fewer than `bytes` are free where `path` will be written, e.g.
// "spintrain: the export to /x/out needs about 2.1 GiB but only 0.4 GiB is free on /x".
void require_disk(const std::filesystem::path& path, uint64_t bytes, const std::string& what);

// Throws spin::Error when `bytes` more than are in use now would exceed available_memory_bytes()
// (skipped when that is unknown).
void require_memory(uint64_t bytes, const std::string& what);

// Resident set size of this process now, in bytes (VmRSS; 0 where /proc is missing).
int64_t rss_bytes();

// Peak resident set size of this process in bytes (VmHWM, else getrusage's ru_maxrss).
int64_t peak_rss_bytes();

// Restarts VmHWM from the current RSS (Linux >= 4.0), so a later peak excludes earlier work; false if
// the kernel refused.
bool reset_peak_rss();

// "1.23 GiB" / "456.0 MiB".
std::string format_bytes(uint64_t bytes);

}  // namespace spin
