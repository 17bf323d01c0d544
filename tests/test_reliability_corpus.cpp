// Hostile-input corpus: every case of tests/corpus/hostile_inputs.h must be rejected
//   - in-process: load_model + data::load_calib throw a spin::Error whose message is one line naming
//     the culprit file and containing the expected fragments (and nothing else is thrown);
//   - through the real tool: spin-eval exits with status 1 (not a signal, not a hang) and prints
//     exactly one line "error: <the same message>".
// Control cases check that the valid inputs the corpus is derived from do load and evaluate.
#include <gtest/gtest.h>

#include <future>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/rotation/format.h"
#include "tests/corpus/hostile_inputs.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

const fs::path kModel = test::asset("models/stories260K");
const fs::path kData = test::asset("data/stories260K-eval.h5");

// What spin-eval does with its inputs, up to the first forward pass.
void load_inputs(const fs::path& model, const fs::path& data) {
  LoadedModel m = load_model(model);
  data::CalibOptions opts;
  opts.rows = 2;
  opts.seq_len = 16;
  data::load_calib(data.string(), m.checkpoint.config.vocab_size, opts);
}

// spin-eval on (model, data) with a hang guard; returns the exit status and fills `lines` with its output.
int run_eval(const fs::path& model, const fs::path& data, const fs::path& log, std::vector<std::string>& lines) {
  const std::string cmd = "timeout 120 " + test::bin("spin-eval").string() + " --model '" + model.string() +
                          "' --data '" + data.string() + "' --rows 2 --seq-len 16 --threads 1";
  const int rc = test::run(cmd, log);
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return rc;
}

class Corpus : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::suite_scratch("reliability_corpus");
    cases_ = test::corpus::build(dir_, kModel, kData);
  }
  static inline fs::path dir_;
  static inline std::vector<test::corpus::Case> cases_;
};

TEST_F(Corpus, HasEveryCategoryOfIssue10) {
  std::map<std::string, int> per_category;
  for (const auto& c : cases_) per_category[c.name.substr(0, c.name.find('/'))]++;
  for (const char* cat : {"safetensors", "config", "model", "shards", "rotations", "hdf5"})
    EXPECT_GT(per_category[cat], 0) << cat;
  EXPECT_GE(cases_.size(), 45u);
  std::printf("[corpus] %zu hostile inputs\n", cases_.size());
}

TEST_F(Corpus, ValidInputsLoadAndEvaluate) {
  const fs::path rotated = dir_ / "control_rotated", sharded = dir_ / "control_sharded";
  test::corpus::make_rotated(kModel, rotated);
  test::corpus::make_sharded(kModel, sharded);
  for (const fs::path& model : {kModel, rotated, sharded}) {
    SCOPED_TRACE(model.string());
    EXPECT_NO_THROW(load_inputs(model, kData));
    std::vector<std::string> lines;
    ASSERT_EQ(run_eval(model, kData, dir_ / "control.log", lines), 0);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].rfind("nll ", 0), 0u) << lines[0];
  }
}

TEST_F(Corpus, LoadersThrowOneLineErrorNamingTheFile) {
  for (const auto& c : cases_) {
    SCOPED_TRACE(c.name);
    try {
      load_inputs(c.model, c.data);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.culprit.string()), std::string::npos) << "culprit " << c.culprit << " not in: " << msg;
      for (const auto& f : c.fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a spin::Error: " << e.what();
    }
  }
}

TEST_F(Corpus, SpinEvalExitsWithOneLineError) {
  // Four processes at a time: each spends most of its time loading LibTorch.
  struct Run {
    int rc = 0;
    std::vector<std::string> lines;
  };
  std::vector<Run> runs(cases_.size());
  for (size_t first = 0; first < cases_.size(); first += 4) {
    std::vector<std::future<void>> batch;
    for (size_t i = first; i < std::min(first + 4, cases_.size()); ++i)
      batch.push_back(std::async(std::launch::async, [&, i] {
        runs[i].rc = run_eval(cases_[i].model, cases_[i].data, dir_ / cat("eval", i, ".log"), runs[i].lines);
      }));
    for (auto& f : batch) f.get();
  }
  for (size_t i = 0; i < cases_.size(); ++i) {
    const auto& c = cases_[i];
    const auto& lines = runs[i].lines;
    SCOPED_TRACE(c.name);
    EXPECT_EQ(runs[i].rc, 1) << "(124: hang, 128: killed by a signal)";
    ASSERT_EQ(lines.size(), 1u) << (lines.empty() ? "" : lines[0]);
    EXPECT_EQ(lines[0].rfind("error: ", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(c.culprit.string()), std::string::npos) << lines[0];
    for (const auto& f : c.fragments) EXPECT_NE(lines[0].find(f), std::string::npos) << "'" << f << "' not in: " << lines[0];
  }
}

}  // namespace
