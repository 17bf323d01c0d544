// Output guard: the one rule for every path a tool writes, checked before any work starts.
//
// An output may replace only
//   (a) a path that does not exist yet, an empty directory where a directory is written or an
//       empty file where a file is written, or
//   (b) a previous output of the same kind written by the same tool, recognised by its marker.
// Whatever exists at an output path, the run's outputs must not be, contain or lie inside any of its
// inputs, must not overlap each other, and must not be the current directory or one of its
// ancestors. check(true) (a tool's --overwrite) also lets an output replace a foreign path of the
// right type (a file for a file, a directory for a directory) unless it is a directory holding
// subdirectories. Everything else is refused with a one-line spin::Error that names the tool, the
// flag, the path and what to do. docs/RELIABILITY.md has the table of cases.
//
// Paths are compared after resolution: absolute, every symbolic link followed (also a dangling
// one, to the path it names), "." and ".." applied, trailing slashes dropped; existing paths are
// then compared by device and inode (hard links; bind mounts too, untested), paths that do not
// exist yet by name.
//
// Markers (format "spintrain-output/1"; a marker written by one tool is never accepted for another):
//   checkpoint_dir, state_dir: DIR/spintrain-output.json =
//       {"format": "spintrain-output/1", "kind": "checkpoint_dir", "tool": "spin-rotate",
//        "files": ["config.json", "model.safetensors", ...]}
//     DIR must hold nothing but the marker, the listed files and their "<name>.tmp.<pid>"
//     temporaries; a user's file added to it makes it foreign.
//   log_file: the first line is {"spintrain_output": {"format": ..., "kind": "log_file", "tool": ...}}.
//   calib_file: the file's 512-byte HDF5 user block (before the superblock; HDF5 readers skip it)
//     holds {"format": ..., "kind": "calib_file", "tool": "spin-calib"}, NUL-padded; it is read as
//     plain bytes (data::read_output_marker), never through libhdf5.
// The check is made against mistakes before a run, not against concurrent changes: a writer that
// runs long (spintrain) should call check() again just before it replaces an output.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace spin {

enum class OutputKind {
  checkpoint_dir,  // a model directory, replaced as a whole (spin-rotate, spin-gptq, spintrain --out)
  state_dir,       // spintrain's training state, updated in place (--state-dir)
  calib_file,      // an HDF5 token file, replaced by rename (spin-calib --out)
  log_file,        // a JSON-lines log, truncated or appended in place (spintrain --log)
};

// "checkpoint_dir", ...: the name stored in markers.
const char* kind_name(OutputKind kind);

// The marker file of a directory output.
inline constexpr const char* kOutputMarkerFile = "spintrain-output.json";

class OutputGuard {
 public:
  // `tool` ("spin-rotate") starts every message and is the writer the markers must name.
  explicit OutputGuard(std::string tool);

  // A path the run reads (file or directory); `flag` ("--model") names it in messages.
  // An empty path (an unset optional flag) is ignored.
  void add_input(const std::filesystem::path& path, const std::string& flag);

  // A path the run writes. Returns the path to write: the resolved path check() examines (write
  // there, so that a symbolic link is kept and its target replaced). An empty path is ignored and
  // returned as it is.
  std::filesystem::path add_output(const std::filesystem::path& path, OutputKind kind, const std::string& flag);

  // Throws spin::Error for the first path that breaks the rule; `overwrite`: the tool's --overwrite.
  void check(bool overwrite = false) const;

 private:
  struct Path {
    std::filesystem::path given, resolved;
    std::string flag;
    OutputKind kind = OutputKind::checkpoint_dir;  // outputs only
    std::string problem;                           // why it could not be resolved; "" when resolved
  };
  std::string tool_;
  std::vector<Path> inputs_, outputs_;
};

// "" when `path` is an output of `kind` written by `tool`, by its marker; otherwise why not, as a
// phrase for a message ("has no spintrain-output.json", "holds notes.txt, which spin-rotate did
// not write", "was written by spintrain").
std::string why_not_our_output(const std::filesystem::path& path, OutputKind kind, const std::string& tool);

// ---------------------------------------------------------------- writing the markers

// {"format":"spintrain-output/1","kind":...,"tool":...} on one line: the marker of a log line or
// of a calibration file (data::write_token_ids(path, ids, attributes, output_marker_json(...))).
std::string output_marker_json(OutputKind kind, const std::string& tool);

// Writes DIR/spintrain-output.json (atomically) for a directory output of `kind`. `files`: the
// names DIR may hold besides the marker; empty: the entries DIR holds now. A checkpoint writer
// calls it last, on the temporary directory of write_dir_atomic, so the marker is published with
// the files it lists.
void write_dir_marker(const std::filesystem::path& dir, OutputKind kind, const std::string& tool,
                      std::vector<std::string> files = {});

// The first line of a log file (with its newline): {"spintrain_output": output_marker_json(log_file, tool)}.
std::string log_marker_line(const std::string& tool);

}  // namespace spin
