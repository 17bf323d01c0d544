// Outputs never destroy what they did not write, tool by tool (the rule itself is tested in
// tests/test_output_guard.cpp): each case is refused before any work with a one-line error and leaves
// the user's data byte-identical; rewriting a previous output of the same tool still works.
#include <gtest/gtest.h>

#include <fstream>

#include "src/io/output_guard.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace spin;

namespace {

const std::string kModel = test::asset("models/stories260K").string();
const std::string kCalib = test::asset("data/stories260K-calib.h5").string();

std::string rotate(const fs::path& out, const std::string& extra = "") {
  return test::bin("spin-rotate").string() + " --model " + kModel + " --out " + out.string() + " --threads 1 " + extra;
}
std::string gptq(const std::string& model, const fs::path& out, const std::string& extra = "") {
  return test::bin("spin-gptq").string() + " --model " + model + " --calib " + kCalib + " --out " + out.string() +
         " --nsamples 4 --seq-len 32 --format fake --quiet --threads 1 " + extra;
}
std::string train(const fs::path& out, const std::string& extra = "") {
  return test::spintrain_command(out, "--nsamples 4 --seq-len 32 --batch-size 2 --steps 1 --threads 1 --quiet " + extra);
}

// Every file below `dir` with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = test::read_text(e.path());
  return files;
}

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

}  // namespace

// A user's directory, a file where a directory is due, and an input as the output: refused by every
// tool, nothing changed.
TEST(Outputs, ForeignPathsAndInputsAreRefusedByEveryTool) {
  const fs::path dir = test::scratch("outputs_refused");
  write(dir / "mine" / "notes.txt", "my notes\n");
  write(dir / "file.txt", "a file\n");
  ASSERT_EQ(test::run(rotate(dir / "rotated"), dir / "setup.txt"), 0) << test::read_text(dir / "setup.txt");
  const auto before = snapshot(dir);
  const fs::path logs = test::scratch("outputs_refused_logs");
  const std::string rotated = (dir / "rotated").string();
  test::expect_one_line_errors(
      {{rotate(dir / "mine"), "has no spintrain-output.json"},
       {rotate(dir / "file.txt"), "is a file, but spin-rotate writes a directory there"},
       {rotate(dir), "has no spintrain-output.json"},
       {rotate(dir, "--overwrite"), "holds the subdirectory"},
       {rotate(kModel), "is also the input --model"},
       {gptq(rotated, dir / "rotated"), "is also the input --model"},
       {gptq(rotated, dir / "rotated" / "inner"), "inside the input --model"},
       {gptq(rotated, dir / "mine"), "has no spintrain-output.json"},
       {gptq(rotated, dir / "rotated-gptq", "--overwrite --calib " + (dir / "rotated-gptq" / "c.h5").string()),
        "contains the input --calib"},
       {train(dir / "mine"), "has no spintrain-output.json"},
       {train(dir / "rotated"), "was written by spin-rotate"},
       {train(fs::path(kModel)), "is also the input --model"},
       {train(dir / "out", "--log " + (dir / "file.txt").string()), "--log"},
       {train(dir / "out", "--log " + (dir / "mine" / "notes.txt").string()), "--log"}},
      logs);
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// Each tool replaces its own previous output (atomically, as before), also given with a trailing
// slash or through a symbolic link; --overwrite replaces a foreign directory without subdirectories.
TEST(Outputs, OwnOutputsAreRewrittenAndOverwriteIsExplicit) {
  const fs::path dir = test::scratch("outputs_rewrite");
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(test::run(rotate(dir / "rot" / ""), dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
    ASSERT_EQ(test::run(gptq((dir / "rot").string(), dir / "gptq"), dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
    ASSERT_EQ(test::run(train(dir / "train", "--save-every 1"), dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
  }
  EXPECT_TRUE(why_not_our_output(dir / "rot", OutputKind::checkpoint_dir, "spin-rotate").empty());
  EXPECT_TRUE(why_not_our_output(dir / "gptq", OutputKind::checkpoint_dir, "spin-gptq").empty());
  EXPECT_TRUE(why_not_our_output(dir / "train", OutputKind::checkpoint_dir, "spintrain").empty());
  EXPECT_TRUE(why_not_our_output(dir / "train.state", OutputKind::state_dir, "spintrain").empty());
  EXPECT_TRUE(why_not_our_output(dir / "train.log.jsonl", OutputKind::log_file, "spintrain").empty());

  fs::create_symlink(dir / "rot", dir / "link");
  EXPECT_EQ(test::run(rotate(dir / "link"), dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
  EXPECT_TRUE(fs::is_symlink(dir / "link")) << "the link is kept, its target replaced";

  write(dir / "foreign" / "old.txt", "old\n");
  EXPECT_EQ(test::run(rotate(dir / "foreign"), dir / "log.txt"), 1);
  EXPECT_TRUE(fs::exists(dir / "foreign" / "old.txt"));
  EXPECT_EQ(test::run(rotate(dir / "foreign", "--overwrite"), dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
  EXPECT_FALSE(fs::exists(dir / "foreign" / "old.txt"));
  EXPECT_TRUE(fs::exists(dir / "foreign" / "config.json"));
}

// spin-calib --out, an HDF5 token file marked in its user block: a file spin-calib did not write (a
// model file, a token file from elsewhere) is refused without --overwrite, an input (a text file, a
// file inside the --tokenizer directory) always; its own previous output is rewritten.
TEST(Outputs, SpinCalibReplacesOnlyItsOwnTokenFile) {
  const fs::path tiny = test::root() / ".." / "shared" / "models" / "tinystories656k";
  if (!fs::exists(tiny / "tokenizer.json")) GTEST_SKIP() << "../shared/models/tinystories656k not present";
  const fs::path dir = test::scratch("outputs_calib");
  write(dir / "story.txt", "Once upon a time there was a little cat. The cat liked to play in the sun every day.\n");
  write(dir / "tok" / "tokenizer_config.json", test::read_text(tiny / "tokenizer_config.json"));
  fs::copy_file(tiny / "tokenizer.json", dir / "tok" / "tokenizer.json");
  fs::copy_file(fs::path(kModel) / "model.safetensors", dir / "model.safetensors");
  fs::copy_file(kCalib, dir / "foreign.h5");
  auto calib = [&](const fs::path& out, const std::string& extra = "") {
    return test::bin("spin-calib").string() + " --tokenizer " + (dir / "tok").string() + " --seq-len 8 --out " +
           out.string() + " " + (dir / "story.txt").string() + " " + extra;
  };
  const auto before = snapshot(dir);
  const fs::path logs = test::scratch("outputs_calib_logs");
  test::expect_one_line_errors(
      {{calib(dir / "model.safetensors"), "exists and is not a calibration file written by spin-calib"},
       {calib(dir / "foreign.h5"), "no output marker in an HDF5 user block"},
       {calib(dir / "story.txt"), "is also the input text file"},
       {calib(dir / "story.txt", "--overwrite"), "is also the input text file"},
       {calib(dir / "tok" / "tokenizer.json", "--overwrite"), "lies inside the input --tokenizer"}},
      logs);
  EXPECT_EQ(snapshot(dir), before);

  for (int run = 0; run < 2; ++run)
    ASSERT_EQ(test::run(calib(dir / "calib.h5"), logs / "log.txt"), 0) << test::read_text(logs / "log.txt");
  EXPECT_TRUE(why_not_our_output(dir / "calib.h5", OutputKind::calib_file, "spin-calib").empty());
  ASSERT_EQ(test::run(calib(dir / "foreign.h5", "--overwrite"), logs / "log.txt"), 0) << test::read_text(logs / "log.txt");
  EXPECT_TRUE(why_not_our_output(dir / "foreign.h5", OutputKind::calib_file, "spin-calib").empty());
}
