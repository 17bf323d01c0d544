// The output guard (src/io/output_guard.h): with real files in a scratch directory, an output
// replaces only a new path or the same tool's previous output of that kind; everything else is a
// one-line error naming the tool, the flag and the path, and the user's files stay byte-identical.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <random>

#include "data/hdf5_file.h"
#include "src/base/check.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/output_guard.h"
#include "src/quant/gptq.h"
#include "src/quant/gptq_format.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

// The scratch directory by its canonical name, so that resolved paths compare equal to it.
fs::path scratch(const std::string& name) { return fs::canonical(test::scratch(name)); }

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Every file and directory below `dir` (relative name -> contents; directories end in '/').
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> all;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    if (e.is_symlink()) all[rel] = "-> " + fs::read_symlink(e.path()).string();
    else if (e.is_directory()) all[rel + "/"] = "";
    else all[rel] = test::read_text(e.path());
  }
  return all;
}

// A user's directory: files that are nobody's output.
fs::path user_dir(const fs::path& dir) {
  write(dir / "notes.txt", "my notes\n");
  write(dir / "data.bin", std::string("\0\1\2\3", 4));
  return dir;
}

// What a checkpoint writer does once wired: assemble the directory, mark it last, swap it in.
void write_checkpoint(const fs::path& dir, const std::string& tool, const std::string& weights = "weights") {
  write_dir_atomic(dir, [&](const fs::path& tmp) {
    write_text_atomic(tmp / "config.json", "{}\n");
    write_text_atomic(tmp / "model.safetensors", weights);
    write_dir_marker(tmp, OutputKind::checkpoint_dir, tool);
  });
}

void write_log(const fs::path& path, const std::string& tool) {
  write(path, log_marker_line(tool) + "{\"step\":0,\"loss\":1.5}\n");
}

void write_calib(const fs::path& path, const std::string& marker) {
  data::write_token_ids(path.string(), torch::arange(32, torch::kInt32).view({2, 16}), {{"created_by", "spin-calib"}},
                        marker);
}

// The message check() throws; fails the test if it does not throw. Every message is one line and
// starts with the tool, the flag and the path as given.
std::string refusal(const OutputGuard& guard, bool overwrite, const std::string& tool, const std::string& flag,
                    const fs::path& path) {
  try {
    guard.check(overwrite);
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.rfind(tool + ": " + flag + " " + path.string(), 0), 0u) << m;
    return m;
  }
  ADD_FAILURE() << "accepted " << flag << " " << path;
  return "";
}

#define EXPECT_CONTAINS(text, fragment) EXPECT_NE((text).find(fragment), std::string::npos) << (text)

// Runs `body` in `dir` and returns to the previous working directory.
template <typename F>
void in_directory(const fs::path& dir, F&& body) {
  const fs::path back = fs::current_path();
  fs::current_path(dir);
  try {
    body();
  } catch (...) {
    fs::current_path(back);
    throw;
  }
  fs::current_path(back);
}

}  // namespace

TEST(OutputGuard, NewPathsAndEmptyOnesAreAccepted) {
  const fs::path dir = scratch("guard_new");
  fs::create_directories(dir / "empty");
  write(dir / "empty.h5", "");
  OutputGuard g("spintrain");
  g.add_input(test::asset("models/stories260K"), "--model");
  EXPECT_EQ(g.add_output(dir / "out", OutputKind::checkpoint_dir, "--out"), dir / "out");
  g.add_output(dir / "not" / "yet" / "state", OutputKind::state_dir, "--state-dir");
  g.add_output(dir / "out.log.jsonl", OutputKind::log_file, "--log");
  g.add_output(dir / "empty", OutputKind::checkpoint_dir, "--r1-out");
  g.add_output(dir / "empty.h5", OutputKind::calib_file, "--calib-out");
  g.add_output("", OutputKind::log_file, "--unset");  // an unset flag is ignored
  EXPECT_NO_THROW(g.check());
}

TEST(OutputGuard, UserDirectoryIsRefusedAndKeptByteIdentical) {
  const fs::path dir = scratch("guard_user_dir");
  const fs::path mine = user_dir(dir / "mine");
  const auto before = snapshot(dir);
  for (const std::string tool : {"spin-rotate", "spin-gptq", "spintrain"}) {
    OutputGuard g(tool);
    g.add_input(test::asset("models/stories260K"), "--model");
    const fs::path out = g.add_output(mine, OutputKind::checkpoint_dir, "--out");
    const std::string m = refusal(g, false, tool, "--out", mine);
    EXPECT_CONTAINS(m, "exists and is not a checkpoint directory written by " + tool);
    EXPECT_CONTAINS(m, "has no spintrain-output.json");
    EXPECT_CONTAINS(m, "pass --overwrite");
    // The tools write only after check() passed; here it did not, so nothing may have changed.
    try {
      g.check();
      write_checkpoint(out, tool);
    } catch (const Error&) {
    }
  }
  OutputGuard state("spintrain");
  state.add_output(mine, OutputKind::state_dir, "--state-dir");
  EXPECT_CONTAINS(refusal(state, false, "spintrain", "--state-dir", mine), "training-state directory");
  EXPECT_EQ(snapshot(dir), before);
}

TEST(OutputGuard, CurrentDirectoryAndItsAncestorsAreRefused) {
  const fs::path dir = scratch("guard_cwd");
  write_checkpoint(dir / "ours", "spin-rotate");
  in_directory(dir / "ours", [&] {
    for (bool overwrite : {false, true}) {
      OutputGuard here("spin-rotate");
      here.add_output(".", OutputKind::checkpoint_dir, "--out");
      EXPECT_CONTAINS(refusal(here, overwrite, "spin-rotate", "--out", "."), "is the current directory");
      OutputGuard above("spin-rotate");
      above.add_output("..", OutputKind::checkpoint_dir, "--out");
      EXPECT_CONTAINS(refusal(above, overwrite, "spin-rotate", "--out", ".."), "contains the current directory");
      OutputGuard root("spin-calib");
      root.add_output("/", OutputKind::calib_file, "--out");
      EXPECT_CONTAINS(refusal(root, overwrite, "spin-calib", "--out", "/"), "contains the current directory");
    }
  });
  EXPECT_TRUE(fs::exists(dir / "ours" / kOutputMarkerFile));
}

TEST(OutputGuard, OwnPreviousOutputIsReplacedAtomically) {
  const fs::path dir = scratch("guard_own");
  const fs::path out = dir / "rotated", state = dir / "rotated.state", log = dir / "rotated.log.jsonl";
  write_checkpoint(out, "spintrain", "old weights");
  // A training-state directory carries a fixed list; a killed writer's temporary may remain.
  fs::create_directories(state);
  write_dir_marker(state, OutputKind::state_dir, "spintrain", {"state.pt"});
  write(state / "state.pt", "state");
  write(state / "state.pt.tmp.999999", "half");
  write_log(log, "spintrain");

  OutputGuard g("spintrain");
  g.add_input(test::asset("models/stories260K"), "--model");
  const fs::path target = g.add_output(out, OutputKind::checkpoint_dir, "--out");
  g.add_output(state, OutputKind::state_dir, "--state-dir");
  g.add_output(log, OutputKind::log_file, "--log");
  ASSERT_NO_THROW(g.check());
  write_checkpoint(target, "spintrain", "new weights");
  EXPECT_EQ(test::read_text(out / "model.safetensors"), "new weights");
  EXPECT_EQ(why_not_our_output(out, OutputKind::checkpoint_dir, "spintrain"), "");
  EXPECT_NO_THROW(g.check());  // and again: a rerun of the rerun

  const fs::path calib = dir / "calib.h5";
  write_calib(calib, output_marker_json(OutputKind::calib_file, "spin-calib"));
  OutputGuard c("spin-calib");
  c.add_input(dir / "text.txt", "text file");
  c.add_output(calib, OutputKind::calib_file, "--out");
  EXPECT_NO_THROW(c.check());
}

TEST(OutputGuard, AnotherToolsOrKindsOutputIsForeign) {
  const fs::path dir = scratch("guard_other_tool");
  const fs::path rotated = dir / "rotated", state = dir / "state", log = dir / "log.jsonl";
  write_checkpoint(rotated, "spin-rotate");
  fs::create_directories(state);
  write_dir_marker(state, OutputKind::state_dir, "spintrain", {"state.pt"});
  write_log(log, "spintrain");

  // spintrain's learned rotations are not spin-rotate's to replace, nor spin-gptq's.
  for (const std::string tool : {"spin-gptq", "spintrain"}) {
    OutputGuard g(tool);
    g.add_output(rotated, OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(g, false, tool, "--out", rotated), "(was written by spin-rotate)");
    EXPECT_NO_THROW(g.check(true));
  }
  OutputGuard kinds("spintrain");
  kinds.add_output(state, OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(kinds, false, "spintrain", "--out", state), "is marked as output kind state_dir");
  OutputGuard log_as_calib("spin-calib");
  log_as_calib.add_output(log, OutputKind::calib_file, "--out");
  EXPECT_CONTAINS(refusal(log_as_calib, false, "spin-calib", "--out", log), "no output marker in an HDF5 user block");
}

TEST(OutputGuard, OwnOutputWithAUserFileIsForeign) {
  const fs::path dir = scratch("guard_own_plus_user");
  const fs::path out = dir / "rotated";
  write_checkpoint(out, "spin-rotate");
  write(out / "notes.txt", "notes about this checkpoint\n");
  const auto before = snapshot(dir);
  OutputGuard g("spin-rotate");
  g.add_output(out, OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(g, false, "spin-rotate", "--out", out), "holds notes.txt, which spin-rotate did not write");
  EXPECT_EQ(snapshot(dir), before);
  // The user's explicit --overwrite replaces it (no subdirectory, no input in it).
  ASSERT_NO_THROW(g.check(true));
  write_checkpoint(out, "spin-rotate");
  EXPECT_FALSE(fs::exists(out / "notes.txt"));
}

TEST(OutputGuard, BrokenOrForeignMarkersAreForeign) {
  const fs::path dir = scratch("guard_bad_markers");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "is not valid JSON"},
      {"[]", "its marker is not spintrain-output/1"},
      {R"({"format": "spintrain-output/2", "kind": "checkpoint_dir", "tool": "spin-rotate", "files": []})",
       "its marker is not spintrain-output/1"},
      {R"({"format": "spintrain-output/1", "kind": 3, "tool": "spin-rotate", "files": []})", "has no kind or tool"},
      {R"({"format": "spintrain-output/1", "kind": "checkpoint_dir", "tool": "spin-rotate"})", "lists no files"},
      {R"({"format": "spintrain-output/1", "kind": "checkpoint_dir", "tool": "spin-rotate", "files": ["../x"]})",
       "lists an invalid file name"},
      {R"({"format": "spintrain-output/1", "kind": "checkpoint_dir", "tool": "spin-rotate", "files": []})",
       "holds config.json, which spin-rotate did not write"},
      {std::string(1000, '[') + std::string(1000, ']'), "is not valid JSON"},  // nested too deep
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path d = dir / std::to_string(i);
    write(d / "config.json", "{}");
    write(d / kOutputMarkerFile, cases[i].first);
    EXPECT_CONTAINS(why_not_our_output(d, OutputKind::checkpoint_dir, "spin-rotate"), cases[i].second);
  }
  // An HF checkpoint is foreign, whatever its config.json says.
  const fs::path hf = dir / "hf";
  write(hf / "config.json", R"({"spintrain_output": {"kind": "checkpoint_dir", "tool": "spin-rotate"}})");
  EXPECT_EQ(why_not_our_output(hf, OutputKind::checkpoint_dir, "spin-rotate"), "has no spintrain-output.json");
  fs::create_directories(dir / "marker_is_a_dir" / kOutputMarkerFile);
  EXPECT_EQ(why_not_our_output(dir / "marker_is_a_dir", OutputKind::checkpoint_dir, "spin-rotate"),
            "has no spintrain-output.json");
}

TEST(OutputGuard, WrongTypeIsRefusedEvenWithOverwrite) {
  const fs::path dir = scratch("guard_wrong_type");
  write(dir / "model.txt", "a file\n");
  fs::create_directories(dir / "data");
  const auto before = snapshot(dir);
  for (bool overwrite : {false, true}) {
    OutputGuard rotate("spin-rotate");
    rotate.add_output(dir / "model.txt", OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(rotate, overwrite, "spin-rotate", "--out", dir / "model.txt"),
                    "is a file, but spin-rotate writes a directory there");
    OutputGuard calib("spin-calib");
    calib.add_output(dir / "data", OutputKind::calib_file, "--out");
    EXPECT_CONTAINS(refusal(calib, overwrite, "spin-calib", "--out", dir / "data"),
                    "is a directory, but spin-calib writes a file there; choose a file path (e.g. " +
                        (dir / "data" / "calib.h5").string());
    OutputGuard log("spintrain");
    log.add_output(dir / "data", OutputKind::log_file, "--log");
    EXPECT_CONTAINS(refusal(log, overwrite, "spintrain", "--log", dir / "data"), "writes a file there");
  }
  EXPECT_EQ(snapshot(dir), before);
}

TEST(OutputGuard, InputsAreNeverReplaced) {
  const fs::path dir = scratch("guard_inputs");
  const fs::path model = dir / "model", text = dir / "text.txt", calib = dir / "calib.h5";
  write_checkpoint(model, "spin-gptq");  // even the same tool's own output, once it is an input
  write(text, "Once upon a time\n");
  write_calib(calib, output_marker_json(OutputKind::calib_file, "spin-calib"));
  const auto before = snapshot(dir);
  for (bool overwrite : {false, true}) {
    OutputGuard gptq("spin-gptq");
    gptq.add_input(model, "--model");
    gptq.add_input(calib, "--calib");
    gptq.add_output(model, OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(gptq, overwrite, "spin-gptq", "--out", model),
                    "is also the input --model " + model.string() + "; an input is never replaced: choose another --out");
    OutputGuard sc("spin-calib");
    sc.add_input(text, "text file");
    sc.add_input(dir / "tokenizer.model", "--tokenizer");
    sc.add_output(text, OutputKind::calib_file, "--out");
    EXPECT_CONTAINS(refusal(sc, overwrite, "spin-calib", "--out", text), "is also the input text file");
    OutputGuard train("spintrain");
    train.add_input(model, "--model");
    train.add_input(calib, "--calib");
    train.add_output(dir / "out", OutputKind::checkpoint_dir, "--out");
    train.add_output(calib, OutputKind::log_file, "--log");
    EXPECT_CONTAINS(refusal(train, overwrite, "spintrain", "--log", calib), "is also the input --calib");
  }
  EXPECT_EQ(snapshot(dir), before);
}

TEST(OutputGuard, OutputInsideAnInputIsRefused) {
  const fs::path dir = scratch("guard_inside_input");
  const fs::path model = user_dir(dir / "model");
  for (bool overwrite : {false, true}) {
    OutputGuard g("spin-gptq");
    g.add_input(model, "--model");
    g.add_output(model / "gptq", OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(g, overwrite, "spin-gptq", "--out", model / "gptq"),
                    "lies inside the input --model " + model.string() + "; choose a path outside it");
    OutputGuard log("spintrain");
    log.add_input(model, "--r1-from");
    log.add_output(model / "logs" / "train.jsonl", OutputKind::log_file, "--log");
    EXPECT_CONTAINS(refusal(log, overwrite, "spintrain", "--log", model / "logs" / "train.jsonl"),
                    "lies inside the input --r1-from");
  }
  EXPECT_FALSE(fs::exists(model / "gptq"));
}

TEST(OutputGuard, InputInsideTheOutputIsRefused) {
  const fs::path dir = scratch("guard_input_inside");
  const fs::path work = dir / "work";
  write_checkpoint(work / "base", "spin-rotate");
  write(work / "calib.h5", "x");
  for (bool overwrite : {false, true}) {
    OutputGuard g("spin-gptq");
    g.add_input(work / "base", "--model");
    g.add_input(work / "calib.h5", "--calib");
    g.add_output(work, OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(g, overwrite, "spin-gptq", "--out", work),
                    "contains the input --model " + (work / "base").string() + ", which replacing it would destroy");
  }
  EXPECT_TRUE(fs::exists(work / "base" / "model.safetensors"));
}

TEST(OutputGuard, CollidingOutputsAreRefused) {
  const fs::path dir = scratch("guard_collide");
  struct Case {
    fs::path out, state, log;
    std::string flag, fragment;
    fs::path path;
  };
  const std::vector<Case> cases = {
      {dir / "o", dir / "o.state", dir / "o", "--out", "is also the output --log", dir / "o"},
      {dir / "o", dir / "o" / "state", dir / "o.log", "--out", "contains the output --state-dir", dir / "o"},
      {dir / "o", dir / "s", dir / "s" / "log.jsonl", "--state-dir", "contains the output --log", dir / "s"},
      {dir / "o", dir / "s", dir / "o" / ".." / "s", "--state-dir", "is also the output --log", dir / "s"},
  };
  for (const Case& c : cases) {
    OutputGuard g("spintrain");
    g.add_output(c.out, OutputKind::checkpoint_dir, "--out");
    g.add_output(c.state, OutputKind::state_dir, "--state-dir");
    g.add_output(c.log, OutputKind::log_file, "--log");
    EXPECT_CONTAINS(refusal(g, true, "spintrain", c.flag, c.path), c.fragment);
  }
}

TEST(OutputGuard, PathsAreResolvedBeforeComparing) {
  const fs::path dir = scratch("guard_resolve");
  const fs::path model = dir / "models" / "m";
  write_checkpoint(model, "spin-gptq");
  write(dir / "text.txt", "text\n");
  fs::create_symlink(model, dir / "link");                   // a second name through a link
  fs::create_directory_symlink(dir / "models", dir / "alias");  // a linked parent
  fs::create_hard_link(dir / "text.txt", dir / "hard.txt");  // one file, two names
  const std::vector<fs::path> names_of_model = {
      dir / "link", dir / "models" / ".." / "models" / "m", fs::path(model.string() + "/"),
      fs::path(model.string() + "//"), dir / "alias" / "m", dir / "alias" / "." / "m" / "",
  };
  for (const fs::path& out : names_of_model) {
    OutputGuard g("spin-gptq");
    g.add_input(model, "--model");
    g.add_output(out, OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(g, true, "spin-gptq", "--out", out), "is also the input --model");
  }
  // Relative against absolute: the same directory.
  in_directory(dir / "models", [&] {
    OutputGuard g("spin-gptq");
    g.add_input(model, "--model");
    g.add_output("m", OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(g, true, "spin-gptq", "--out", "m"), "is also the input --model");
    OutputGuard back("spin-gptq");
    back.add_input("./m/", "--model");
    back.add_output(model / "sub", OutputKind::checkpoint_dir, "--out");
    EXPECT_CONTAINS(refusal(back, true, "spin-gptq", "--out", model / "sub"), "lies inside the input --model ./m/");
  });
  OutputGuard hard("spin-calib");
  hard.add_input(dir / "text.txt", "text file");
  hard.add_output(dir / "hard.txt", OutputKind::calib_file, "--out");
  EXPECT_CONTAINS(refusal(hard, true, "spin-calib", "--out", dir / "hard.txt"), "is also the input text file");
  // A link's target is named in the message when the given path does not show it.
  OutputGuard shown("spin-gptq");
  shown.add_input(model, "--model");
  shown.add_output(dir / "link", OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(shown, true, "spin-gptq", "--out", dir / "link"),
                  "--out " + (dir / "link").string() + " (" + model.string() + "): is also the input");
  EXPECT_EQ(test::read_text(dir / "text.txt"), "text\n");
}

TEST(OutputGuard, SymbolicLinksLeadToTheirTargets) {
  const fs::path dir = scratch("guard_links");
  // A link to our previous output: its target is examined and is what the writer must replace.
  write_checkpoint(dir / "run7", "spintrain", "old");
  fs::create_directory_symlink("run7", dir / "latest");
  OutputGuard g("spintrain");
  const fs::path target = g.add_output(dir / "latest", OutputKind::checkpoint_dir, "--out");
  EXPECT_EQ(target, dir / "run7");
  ASSERT_NO_THROW(g.check());
  write_checkpoint(target, "spintrain", "new");
  EXPECT_TRUE(fs::is_symlink(dir / "latest"));
  EXPECT_EQ(test::read_text(dir / "latest" / "model.safetensors"), "new");
  // A dangling link (say to a disk where the output is to go) leads to the path it names.
  fs::create_symlink(dir / "big" / "disk" / "out", dir / "pending");
  OutputGuard d("spintrain");
  EXPECT_EQ(d.add_output(dir / "pending", OutputKind::checkpoint_dir, "--out"), dir / "big" / "disk" / "out");
  EXPECT_NO_THROW(d.check());
  // A link to a user's directory is refused like the directory itself.
  user_dir(dir / "mine");
  fs::create_directory_symlink(dir / "mine", dir / "to_mine");
  OutputGuard u("spin-rotate");
  u.add_output(dir / "to_mine", OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(u, false, "spin-rotate", "--out", dir / "to_mine"), "has no spintrain-output.json");
  // A loop of links cannot be resolved.
  fs::create_symlink(dir / "loop_b", dir / "loop_a");
  fs::create_symlink(dir / "loop_a", dir / "loop_b");
  OutputGuard loop("spin-rotate");
  loop.add_output(dir / "loop_a", OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(loop, true, "spin-rotate", "--out", dir / "loop_a"), "too many levels of symbolic links");
}

TEST(OutputGuard, ParentThatIsAFileIsRefused) {
  const fs::path dir = scratch("guard_parent_file");
  write(dir / "notes.txt", "notes\n");
  OutputGuard g("spin-rotate");
  g.add_output(dir / "notes.txt" / "model", OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(g, true, "spin-rotate", "--out", dir / "notes.txt" / "model"),
                  (dir / "notes.txt").string() + " is not a directory");
  EXPECT_EQ(test::read_text(dir / "notes.txt"), "notes\n");
}

TEST(OutputGuard, OverwriteReplacesOneForeignOutputButNoTree) {
  const fs::path dir = scratch("guard_overwrite");
  // An old checkpoint without a marker (written before markers, or by another program).
  write(dir / "old" / "config.json", "{}");
  write(dir / "old" / "model.safetensors", "w");
  write(dir / "kept" / "file.txt", "kept\n");
  fs::create_directory_symlink(dir / "kept", dir / "old" / "link_to_a_dir");  // a link is not a subdirectory
  OutputGuard g("spin-rotate");
  const fs::path old = g.add_output(dir / "old", OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(g, false, "spin-rotate", "--out", dir / "old"), "pass --overwrite");
  ASSERT_NO_THROW(g.check(true));
  write_checkpoint(old, "spin-rotate");
  EXPECT_EQ(why_not_our_output(old, OutputKind::checkpoint_dir, "spin-rotate"), "");
  EXPECT_EQ(test::read_text(dir / "kept" / "file.txt"), "kept\n");  // the link went, not its target

  // A directory of outputs (~/models, a project) is never replaced.
  const fs::path models = dir / "models";
  user_dir(models / "llama");
  write(models / "README", "my models\n");
  const auto before = snapshot(models);
  OutputGuard tree("spin-rotate");
  tree.add_output(models, OutputKind::checkpoint_dir, "--out");
  EXPECT_CONTAINS(refusal(tree, true, "spin-rotate", "--out", models),
                  "holds the subdirectory llama, so it is not replaced even with --overwrite");
  EXPECT_EQ(snapshot(models), before);

  // A foreign file.
  write(dir / "calib.h5", "someone else's data");
  OutputGuard file("spin-calib");
  file.add_output(dir / "calib.h5", OutputKind::calib_file, "--out");
  EXPECT_CONTAINS(refusal(file, false, "spin-calib", "--out", dir / "calib.h5"),
                  "exists and is not a calibration file written by spin-calib (no output marker");
  EXPECT_NO_THROW(file.check(true));
}

TEST(OutputGuard, LogFiles) {
  const fs::path dir = scratch("guard_logs");
  const fs::path ours = dir / "ours.jsonl", theirs = dir / "theirs.jsonl";
  write_log(ours, "spintrain");
  write(theirs, "{\"step\":0,\"loss\":1.5}\n");
  EXPECT_EQ(why_not_our_output(ours, OutputKind::log_file, "spintrain"), "");
  EXPECT_EQ(why_not_our_output(theirs, OutputKind::log_file, "spintrain"),
            "its first line is not a spintrain-output marker");
  write(dir / "no_newline.jsonl", log_marker_line("spintrain").substr(0, 40));
  EXPECT_NE(why_not_our_output(dir / "no_newline.jsonl", OutputKind::log_file, "spintrain"), "");
  write(dir / "extra_key.jsonl", "{\"spintrain_output\":" + output_marker_json(OutputKind::log_file, "spintrain") +
                                     ",\"step\":1}\n");
  EXPECT_NE(why_not_our_output(dir / "extra_key.jsonl", OutputKind::log_file, "spintrain"), "");

  OutputGuard g("spintrain");
  g.add_output(ours, OutputKind::log_file, "--log");
  EXPECT_NO_THROW(g.check());
  OutputGuard t("spintrain");
  t.add_output(theirs, OutputKind::log_file, "--log");
  EXPECT_CONTAINS(refusal(t, false, "spintrain", "--log", theirs), "exists and is not a training log written by spintrain");
  // A log is written through, so /dev/null takes it; a calibration file is renamed over its path.
  OutputGuard null_log("spintrain");
  null_log.add_output("/dev/null", OutputKind::log_file, "--log");
  EXPECT_NO_THROW(null_log.check());
  OutputGuard null_calib("spin-calib");
  null_calib.add_output("/dev/null", OutputKind::calib_file, "--out");
  EXPECT_CONTAINS(refusal(null_calib, true, "spin-calib", "--out", "/dev/null"), "is not a regular file");
  EXPECT_EQ(test::read_text(theirs), "{\"step\":0,\"loss\":1.5}\n");
}

TEST(OutputGuard, CalibrationFiles) {
  const fs::path dir = scratch("guard_calib");
  write_calib(dir / "ours.h5", output_marker_json(OutputKind::calib_file, "spin-calib"));
  write_calib(dir / "created_by_only.h5", "");
  write_calib(dir / "other_tool.h5", output_marker_json(OutputKind::calib_file, "spin-bench"));
  write(dir / "text.h5", "plain text\n");
  EXPECT_EQ(data::read_output_marker((dir / "ours.h5").string()), output_marker_json(OutputKind::calib_file, "spin-calib"));
  EXPECT_EQ(why_not_our_output(dir / "ours.h5", OutputKind::calib_file, "spin-calib"), "");
  EXPECT_EQ(why_not_our_output(dir / "created_by_only.h5", OutputKind::calib_file, "spin-calib"),
            "no output marker in an HDF5 user block");
  EXPECT_EQ(why_not_our_output(dir / "other_tool.h5", OutputKind::calib_file, "spin-calib"), "was written by spin-bench");
  EXPECT_NE(why_not_our_output(dir / "text.h5", OutputKind::calib_file, "spin-calib"), "");
  // The user block is invisible to HDF5 readers: ids and attributes read back as before.
  EXPECT_TRUE(data::read_token_ids((dir / "ours.h5").string()).equal(torch::arange(32, torch::kInt64).view({2, 16})));
  EXPECT_EQ(data::read_attributes((dir / "ours.h5").string()).at("created_by"), "spin-calib");
  // A well-formed block without the HDF5 signature behind it, or without its NUL, is no marker.
  const std::string tail = "not an HDF5 file";
  std::string block = output_marker_json(OutputKind::calib_file, "spin-calib") + '\0' +
                      std::to_string(data::kOutputMarkerBytes + tail.size());
  block.resize(data::kOutputMarkerBytes, '\0');
  write(dir / "no_signature.h5", block + tail);
  EXPECT_EQ(data::read_output_marker((dir / "no_signature.h5").string()), "");
  std::string full = test::read_text(dir / "ours.h5");
  std::fill(full.begin(), full.begin() + data::kOutputMarkerBytes, 'x');
  write(dir / "no_nul.h5", full);
  EXPECT_EQ(data::read_output_marker((dir / "no_nul.h5").string()), "");
  EXPECT_THROW(write_calib(dir / "big.h5", std::string(401, 'm')), Error);
  EXPECT_FALSE(fs::exists(dir / "big.h5"));
  // Ours no more once cut short or extended in place (a dataset added with h5py's mode "a").
  const std::string bytes = test::read_text(dir / "ours.h5");
  write(dir / "cut.h5", bytes.substr(0, bytes.size() / 2));
  EXPECT_EQ(why_not_our_output(dir / "cut.h5", OutputKind::calib_file, "spin-calib"),
            "no output marker in an HDF5 user block");
  write(dir / "extended.h5", bytes + "more");
  EXPECT_NE(why_not_our_output(dir / "extended.h5", OutputKind::calib_file, "spin-calib"), "");
}

// The guard reads the marker of whatever file lies at an output path, so it must survive any bytes:
// seeded mutations of a marked file are recognised as ours or not, without a crash (the reader
// never hands the file to libhdf5, which reads out of bounds on some of these under ASan).
TEST(OutputGuard, CalibMarkerReaderSurvivesCorruptFiles) {
  const fs::path dir = scratch("guard_calib_fuzz");
  write_calib(dir / "ours.h5", output_marker_json(OutputKind::calib_file, "spin-calib"));
  const std::string good = test::read_text(dir / "ours.h5");
  std::mt19937_64 rng(20240611);
  int ours = 0, foreign = 0;
  for (int i = 0; i < 600; ++i) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      // Half the mutations hit the marker and the signature behind it.
      const size_t at = rng() % 2 ? rng() % (data::kOutputMarkerBytes + 8) : rng() % bytes.size();
      if (at >= bytes.size()) continue;
      switch (rng() % 3) {
        case 0: bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8))); break;
        case 1: bytes[at] = "\x00\xff\x7f\x80\x22\x7b"[rng() % 6]; break;
        default: bytes.resize(std::max<size_t>(at, 1)); break;
      }
    }
    const fs::path path = dir / "case.h5";
    write(path, bytes);
    EXPECT_LT(data::read_output_marker(path.string()).size(), data::kOutputMarkerBytes) << "case " << i;
    const std::string why = why_not_our_output(path, OutputKind::calib_file, "spin-calib");
    EXPECT_EQ(why.find('\n'), std::string::npos) << "case " << i;
    (why.empty() ? ours : foreign) += 1;
  }
  EXPECT_GT(ours, 0);
  EXPECT_GT(foreign, 0);
  std::cout << "recognised as ours: " << ours << " of " << ours + foreign << " corrupted files\n";
}

TEST(OutputGuard, MessagesStayOneLine) {
  const fs::path dir = scratch("guard_one_line");
  const fs::path odd = dir / "two\nlines";
  write_checkpoint(odd, "spin-rotate");
  write(odd / "evil\nname.txt", "x");
  OutputGuard g("spin-rotate");
  g.add_output(odd, OutputKind::checkpoint_dir, "--out");
  try {
    g.check();
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_CONTAINS(m, "two?lines");
    EXPECT_CONTAINS(m, "holds evil?name.txt");
  }
}

TEST(OutputGuard, MarkerWritersProduceWhatTheGuardRecognises) {
  const fs::path dir = scratch("guard_writers");
  EXPECT_EQ(output_marker_json(OutputKind::calib_file, "spin-calib"),
            R"({"format":"spintrain-output/1","kind":"calib_file","tool":"spin-calib"})");
  EXPECT_EQ(log_marker_line("spintrain"),
            R"({"spintrain_output":{"format":"spintrain-output/1","kind":"log_file","tool":"spintrain"}})"
            "\n");
  write(dir / "ck" / "config.json", "{}");
  write(dir / "ck" / "model.safetensors", "w");
  write_dir_marker(dir / "ck", OutputKind::checkpoint_dir, "spin-gptq");
  const nlohmann::json m = nlohmann::json::parse(test::read_text(dir / "ck" / kOutputMarkerFile));
  EXPECT_EQ(m["files"], nlohmann::json({"config.json", "model.safetensors"}));
  EXPECT_EQ(m["tool"], "spin-gptq");
  EXPECT_EQ(why_not_our_output(dir / "ck", OutputKind::checkpoint_dir, "spin-gptq"), "");
  EXPECT_THROW(write_dir_marker(dir / "ck", OutputKind::log_file, "spintrain"), Error);
  EXPECT_THROW(write_dir_marker(dir / "ck", OutputKind::state_dir, "spintrain", {"../state.pt"}), Error);
}

// save_checkpoint and save_gptq_checkpoint copy a source's non-weight files; the source's marker is
// not one of them, so an output never passes for the tool that wrote its input.
TEST(OutputGuard, CheckpointWritersDoNotCopyTheSourceMarker) {
  const fs::path dir = scratch("guard_copy_marker");
  const fs::path src = dir / "src";
  fs::copy(test::asset("models/stories260K"), src, fs::copy_options::recursive);
  write(src / "generation_config.json", "{}\n");
  write_dir_marker(src, OutputKind::checkpoint_dir, "spin-rotate");
  const Checkpoint ck = load_checkpoint(src);

  SaveOptions opt;
  opt.config_json = ck.config.json;
  opt.dtype = ck.dtype;
  opt.copy_from = src;
  save_checkpoint(dir / "plain", ck.config, ck.weights, opt);
  EXPECT_TRUE(fs::exists(dir / "plain" / "generation_config.json"));
  EXPECT_FALSE(fs::exists(dir / "plain" / kOutputMarkerFile));

  // The GPTQ format packs only multiples of 32: stories260K with intermediate_size padded to 192.
  Checkpoint padded = ck;
  padded.config = with_intermediate_size(ck.config, 192);
  padded.weights = pad_intermediate(ck.config, ck.weights, 192);
  std::map<std::string, PackedLinear> packed;
  GptqOptions o;
  o.grid = {4, 0, true, 1.0};
  for (const auto& [name, w] : named_tensors(padded.config, padded.weights)) {
    if (!find_linear(name)) continue;
    const torch::Tensor wf = w.to(torch::kFloat32);
    packed[name] = pack_gptq(gptq_quantize(wf, torch::eye(wf.size(1), torch::kFloat32), o, name));
  }
  save_gptq_checkpoint(dir / "gptq", padded, padded.weights, packed, {o, 1, 1, {}, {}});
  EXPECT_TRUE(fs::exists(dir / "gptq" / "generation_config.json"));
  EXPECT_FALSE(fs::exists(dir / "gptq" / kOutputMarkerFile));
}
