// Crash-safe output: everything the tools write goes through these helpers.
//
// A file is written to "<path>.tmp.<pid>", fsync'ed and renamed over <path>; a directory is
// assembled under "<dir>.tmp.<pid>" and swapped into place by rename. A crash at any moment
// leaves either the previous complete output or the new one, never a half-written file. Temporaries
// left by killed writers (their pid gone) are removed by the next write of the same path.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace spin {

// Calls write(tmp_path) and then atomically renames tmp_path to `path`.
// If write throws, the temporary is removed and the exception propagates.
void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(const std::filesystem::path& tmp_path)>& write);

// Writes `contents` to `path` atomically.
void write_text_atomic(const std::filesystem::path& path, const std::string& contents);

// Calls fill(tmp_dir) on a fresh temporary directory next to `dir`, then replaces `dir` with it
// (an existing `dir` is renamed aside and removed only after the new one is in place).
void write_dir_atomic(const std::filesystem::path& dir,
                      const std::function<void(const std::filesystem::path& tmp_dir)>& fill);

}  // namespace spin
