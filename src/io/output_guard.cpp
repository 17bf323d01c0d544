#include "src/io/output_guard.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <set>

#include "data/hdf5_file.h"
#include "src/base/check.h"
#include "src/base/json_input.h"
#include "src/io/atomic_file.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

constexpr const char* kFormat = "spintrain-output/1";
constexpr const char* kLogMarkerKey = "spintrain_output";
constexpr int kMaxSymlinks = 40;                   // as the kernel's ELOOP limit
constexpr std::uintmax_t kMaxMarkerBytes = 1 << 20;  // a marker lists file names: far below this

bool is_dir_kind(OutputKind kind) { return kind == OutputKind::checkpoint_dir || kind == OutputKind::state_dir; }

const char* kind_phrase(OutputKind kind) {
  switch (kind) {
    case OutputKind::checkpoint_dir: return "checkpoint directory";
    case OutputKind::state_dir: return "training-state directory";
    case OutputKind::calib_file: return "calibration file";
    case OutputKind::log_file: return "training log";
  }
  return "output";
}

// File names and markers come from the disk and may hold any byte; a message stays one line.
std::string printable(const std::string& s) {
  std::string out = s.substr(0, 200);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out.size() < s.size() ? out + "..." : out;
}

// ---------------------------------------------------------------- resolving paths

struct Resolution {
  fs::path path;
  std::string problem;  // "" when resolved
};

// The absolute path `given` names, with "." and "..", empty components (trailing slashes) and every
// symbolic link resolved, also one whose target does not exist yet. Below the first component that
// does not exist the rest is taken as written (nothing there can be a link).
Resolution resolve(const fs::path& given) {
  std::error_code ec;
  const fs::path here = given.is_absolute() ? fs::path("/") : fs::current_path(ec);
  if (ec) return {given, cat("is relative, but the current directory cannot be read (", ec.message(), ")")};
  std::deque<fs::path> todo;
  for (const fs::path& c : here / given) todo.push_back(c);
  fs::path cur = "/";
  bool missing = false;  // cur does not exist
  int links = 0;
  while (!todo.empty()) {
    const fs::path c = todo.front();
    todo.pop_front();
    if (c.empty() || c == ".") continue;
    if (c == "/") {
      cur = "/", missing = false;
      continue;
    }
    if (c == "..") {
      // cur is canonical while it exists, so its parent is the real "..".
      cur = cur.parent_path();
      struct stat st;
      missing = ::lstat(cur.c_str(), &st) != 0;
      continue;
    }
    const fs::path next = cur / c;
    if (missing) {
      cur = next;
      continue;
    }
    struct stat st;
    if (::lstat(next.c_str(), &st) != 0) {
      if (errno == ENOENT) {
        cur = next, missing = true;
        continue;
      }
      if (errno == ENOTDIR) return {next, cat(printable(cur.string()), " is not a directory")};
      return {next, cat("cannot examine ", printable(next.string()), ": ", std::strerror(errno))};
    }
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxSymlinks) return {next, "too many levels of symbolic links"};
      const fs::path target = fs::read_symlink(next, ec);
      if (ec) return {next, cat("cannot read the symbolic link ", printable(next.string()), ": ", ec.message())};
      std::vector<fs::path> parts(target.begin(), target.end());
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_front(*it);
      continue;  // relative targets continue from cur, absolute ones restart at "/"
    }
    cur = next;
  }
  return {cur, ""};
}

// What a path is on disk: existing paths (and their ancestors) are identified by device and inode, so
// two names of one file or directory compare equal; paths that do not exist by their resolved name.
struct Id {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const Id& o) const { return dev == o.dev && ino == o.ino; }
};

std::optional<Id> id_of(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return Id{st.st_dev, st.st_ino};
}

struct Node {
  fs::path path;
  std::optional<Id> id;
  std::vector<std::pair<fs::path, std::optional<Id>>> ancestors;  // parent first, "/" last
};

Node node_of(const fs::path& resolved) {
  Node n{resolved, id_of(resolved), {}};
  for (fs::path p = resolved; p.has_relative_path();) {
    p = p.parent_path();
    n.ancestors.emplace_back(p, id_of(p));
  }
  return n;
}

bool same_place(const fs::path& a, const std::optional<Id>& ida, const Node& b) {
  if (ida && b.id) return *ida == *b.id;
  return !ida && !b.id && a == b.path;
}

bool same(const Node& a, const Node& b) { return same_place(a.path, a.id, b); }

// a lies strictly inside b.
bool inside(const Node& a, const Node& b) {
  for (const auto& [path, id] : a.ancestors)
    if (same_place(path, id, b)) return true;
  return false;
}

// ---------------------------------------------------------------- markers

nlohmann::json marker_object(OutputKind kind, const std::string& tool) {
  return {{"format", kFormat}, {"kind", kind_name(kind)}, {"tool", tool}};
}

std::optional<std::string> string_field(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) return std::nullopt;
  return j[key].get<std::string>();
}

// "" when `m` is a marker of `kind` by `tool`.
std::string why_not_marker(const nlohmann::json& m, OutputKind kind, const std::string& tool) {
  if (!m.is_object() || string_field(m, "format") != kFormat) return cat("its marker is not ", kFormat);
  const auto k = string_field(m, "kind"), t = string_field(m, "tool");
  if (!k || !t) return "its marker has no kind or tool";
  if (*k != kind_name(kind)) return cat("is marked as output kind ", printable(*k), ", not ", kind_name(kind));
  if (*t != tool) return cat("was written by ", printable(*t));
  return "";
}

// "" and the parsed JSON of `text`, or why it is not valid JSON.
std::string parse_marker(const std::string& text, const std::string& what, nlohmann::json& out) {
  try {
    out = parse_untrusted_json(text.begin(), text.end(), what);
    return "";
  } catch (const Error&) {
    return cat("its ", what, " is not valid JSON");
  }
}

// A file's name inside a checkpoint: no separators, not "." or "..".
bool plain_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

// "<listed>.tmp.<digits>": a temporary of write_file_atomic inside the directory (a killed writer's).
bool temporary_of(const std::string& name, const std::set<std::string>& files) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at + 5 == name.size()) return false;
  if (name.find_first_not_of("0123456789", at + 5) != std::string::npos) return false;
  return files.count(name.substr(0, at)) > 0;
}

// Entry names of `dir`, sorted (messages name the first one deterministically).
std::vector<std::string> entry_names(const fs::path& dir, std::error_code& ec) {
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string why_not_our_dir(const fs::path& dir, OutputKind kind, const std::string& tool) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "is not a directory";
  const fs::path file = dir / kOutputMarkerFile;
  if (!fs::is_regular_file(file, ec)) return cat("has no ", kOutputMarkerFile);
  if (fs::file_size(file, ec) > kMaxMarkerBytes) return cat("its ", kOutputMarkerFile, " is too large");
  std::ifstream in(file, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  nlohmann::json m;
  if (std::string why = parse_marker(text, kOutputMarkerFile, m); !why.empty()) return why;
  if (std::string why = why_not_marker(m, kind, tool); !why.empty()) return why;
  if (!m.contains("files") || !m["files"].is_array()) return cat("its ", kOutputMarkerFile, " lists no files");
  std::set<std::string> files;
  for (const auto& f : m["files"]) {
    if (!f.is_string() || !plain_name(f.get<std::string>()))
      return cat("its ", kOutputMarkerFile, " lists an invalid file name");
    files.insert(f.get<std::string>());
  }
  const std::vector<std::string> names = entry_names(dir, ec);
  if (ec) return cat("cannot be listed (", ec.message(), ")");
  for (const std::string& name : names)
    if (name != kOutputMarkerFile && !files.count(name) && !temporary_of(name, files))
      return cat("holds ", printable(name), ", which ", tool, " did not write");
  return "";
}

std::string why_not_our_log(const fs::path& path, OutputKind kind, const std::string& tool) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  char c = 0;
  while (line.size() < 4096 && in.get(c) && c != '\n') line += c;
  if (c != '\n' || line.empty()) return "its first line is not a spintrain-output marker";
  nlohmann::json j;
  if (!parse_marker(line, "first line", j).empty() || !j.is_object() || j.size() != 1 || !j.contains(kLogMarkerKey))
    return "its first line is not a spintrain-output marker";
  return why_not_marker(j[kLogMarkerKey], kind, tool);
}

std::string why_not_our_calib(const fs::path& path, OutputKind kind, const std::string& tool) {
  const std::string text = data::read_output_marker(path.string());
  if (text.empty()) return "no output marker in an HDF5 user block";
  nlohmann::json m;
  if (std::string why = parse_marker(text, "user block", m); !why.empty()) return why;
  return why_not_marker(m, kind, tool);
}

}  // namespace

const char* kind_name(OutputKind kind) {
  switch (kind) {
    case OutputKind::checkpoint_dir: return "checkpoint_dir";
    case OutputKind::state_dir: return "state_dir";
    case OutputKind::calib_file: return "calib_file";
    case OutputKind::log_file: return "log_file";
  }
  return "unknown";
}

std::string why_not_our_output(const fs::path& path, OutputKind kind, const std::string& tool) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "does not exist";
  switch (kind) {
    case OutputKind::checkpoint_dir:
    case OutputKind::state_dir: return why_not_our_dir(path, kind, tool);
    case OutputKind::calib_file:
    case OutputKind::log_file:
      if (!fs::is_regular_file(path, ec)) return "is not a regular file";
      return kind == OutputKind::log_file ? why_not_our_log(path, kind, tool) : why_not_our_calib(path, kind, tool);
  }
  return "unknown output kind";
}

std::string output_marker_json(OutputKind kind, const std::string& tool) { return marker_object(kind, tool).dump(); }

std::string log_marker_line(const std::string& tool) {
  return nlohmann::json{{kLogMarkerKey, marker_object(OutputKind::log_file, tool)}}.dump() + "\n";
}

void write_dir_marker(const fs::path& dir, OutputKind kind, const std::string& tool, std::vector<std::string> files) {
  SPIN_CHECK(is_dir_kind(kind), dir.string(), ": ", kind_name(kind), " is not a directory output");
  if (files.empty()) {
    std::error_code ec;
    for (const std::string& name : entry_names(dir, ec))
      if (name != kOutputMarkerFile) files.push_back(name);
    SPIN_CHECK(!ec, dir.string(), ": cannot list the directory to mark it (", ec.message(), ")");
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) SPIN_CHECK(plain_name(f), dir.string(), ": '", f, "' is not a file name");
  nlohmann::json m = marker_object(kind, tool);
  m["files"] = files;
  write_text_atomic(dir / kOutputMarkerFile, m.dump(2) + "\n");
}

// ---------------------------------------------------------------- the guard

OutputGuard::OutputGuard(std::string tool) : tool_(std::move(tool)) {}

void OutputGuard::add_input(const fs::path& path, const std::string& flag) {
  if (path.empty()) return;
  Resolution r = resolve(path);
  inputs_.push_back({path, r.path, flag, OutputKind::checkpoint_dir, r.problem});
}

fs::path OutputGuard::add_output(const fs::path& path, OutputKind kind, const std::string& flag) {
  if (path.empty()) return path;
  Resolution r = resolve(path);
  outputs_.push_back({path, r.path, flag, kind, r.problem});
  return r.problem.empty() ? r.path : path;
}

void OutputGuard::check(bool overwrite) const {
  // "--out DIR", plus where it leads when symbolic links took it elsewhere.
  auto label = [](const Path& p) {
    std::error_code ec;
    fs::path plain = fs::absolute(p.given, ec).lexically_normal();
    if (!plain.has_filename() && plain.has_relative_path()) plain = plain.parent_path();
    std::string s = cat(p.flag, " ", printable(p.given.string()));
    return plain == p.resolved ? s : cat(s, " (", printable(p.resolved.string()), ")");
  };
  auto refuse = [&](const Path& p, const std::string& what) { fail(tool_, ": ", label(p), ": ", what); };

  std::vector<Node> in, out;
  for (const Path& p : inputs_) in.push_back(node_of(p.resolved));
  for (const Path& p : outputs_) out.push_back(node_of(p.resolved));
  std::optional<Node> cwd;
  std::error_code ec;
  if (const fs::path here = fs::current_path(ec); !ec) cwd = node_of(resolve(here).path);

  for (size_t i = 0; i < outputs_.size(); ++i) {
    const Path& o = outputs_[i];
    const Node& on = out[i];
    if (!o.problem.empty()) refuse(o, cat(o.problem, "; choose another path"));

    // Replacing the current directory (or a directory above it) leaves the shell in a deleted one.
    if (cwd && same(*cwd, on)) refuse(o, "is the current directory; choose a new path below it");
    if (cwd && inside(*cwd, on)) refuse(o, "contains the current directory; choose a new path below it");

    // Inputs are never replaced, whatever they are and whatever --overwrite says.
    for (size_t k = 0; k < inputs_.size(); ++k) {
      if (!inputs_[k].problem.empty()) continue;  // the input's own loader reports it
      if (same(on, in[k]))
        refuse(o, cat("is also the input ", label(inputs_[k]), "; an input is never replaced: choose another ", o.flag));
      if (inside(on, in[k]))
        refuse(o, cat("lies inside the input ", label(inputs_[k]), "; choose a path outside it"));
      if (inside(in[k], on))
        refuse(o, cat("contains the input ", label(inputs_[k]), ", which replacing it would destroy; choose another ",
                      o.flag));
    }
    for (size_t j = i + 1; j < outputs_.size(); ++j) {
      if (same(on, out[j]))
        refuse(o, cat("is also the output ", label(outputs_[j]), "; give each output its own path"));
      if (inside(on, out[j])) refuse(o, cat("lies inside the output ", label(outputs_[j]), "; give each output its own path"));
      if (inside(out[j], on)) refuse(o, cat("contains the output ", label(outputs_[j]), "; give each output its own path"));
    }

    // What is there now.
    struct stat st;
    if (::stat(o.resolved.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // a new path
      refuse(o, cat("cannot examine it: ", std::strerror(errno)));
    }
    const std::string foreign = cat("exists and is not a ", kind_phrase(o.kind), " written by ", tool_);
    const std::string advice = "; choose a new path, or pass --overwrite to replace it";
    if (is_dir_kind(o.kind)) {
      if (!S_ISDIR(st.st_mode))
        refuse(o, cat("is a ", S_ISREG(st.st_mode) ? "file" : "non-directory", ", but ", tool_,
                      " writes a directory there; choose a new path"));
      const std::vector<std::string> names = entry_names(o.resolved, ec);
      if (ec) refuse(o, cat("cannot list it: ", ec.message()));
      if (names.empty()) continue;  // nothing to lose
      const std::string why = why_not_our_output(o.resolved, o.kind, tool_);
      if (why.empty()) continue;  // our previous output: replaced (or continued) as before
      if (!overwrite) refuse(o, cat(foreign, " (", why, ")", advice));
      // --overwrite replaces one foreign output, never a tree of them: a directory with
      // subdirectories is a place that holds outputs (".", ~/models), not one.
      for (const std::string& name : names)
        if (fs::is_directory(fs::symlink_status(o.resolved / name, ec)))
          refuse(o, cat("holds the subdirectory ", printable(name),
                        ", so it is not replaced even with --overwrite; remove it yourself or choose a new path"));
    } else {
      if (S_ISDIR(st.st_mode))
        refuse(o, cat("is a directory, but ", tool_, " writes a file there; choose a file path (e.g. ",
                      printable((o.given / (o.kind == OutputKind::log_file ? "train.log.jsonl" : "calib.h5")).string()),
                      ")"));
      // A log is written through, never renamed over: /dev/null or a pipe just receives it.
      if (o.kind == OutputKind::log_file && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) continue;
      if (!S_ISREG(st.st_mode)) refuse(o, "is not a regular file; choose a new path");
      if (st.st_size == 0) continue;  // nothing to lose
      const std::string why = why_not_our_output(o.resolved, o.kind, tool_);
      if (why.empty() || overwrite) continue;
      refuse(o, cat(foreign, " (", why, ")", advice));
    }
  }
}

}  // namespace spin
