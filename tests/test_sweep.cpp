// experiments/sweep.py end to end on a tiny grid: two seeds with the downstream-GPTQ section give one
// CSV row each with the GPTQ rows filled, the plots exist, and a rerun skips every finished stage.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace spin;

namespace {

// results.csv as header -> column of values.
std::map<std::string, std::vector<std::string>> read_csv(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> header;
  std::map<std::string, std::vector<std::string>> cols;
  for (std::string line; std::getline(in, line);) {
    std::stringstream ss(line);
    std::vector<std::string> cells;
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    if (header.empty()) {
      header = cells;
      continue;
    }
    for (size_t i = 0; i < header.size() && i < cells.size(); ++i) cols[header[i]].push_back(cells[i]);
  }
  return cols;
}

}  // namespace

TEST(Sweep, GridWithGptqGivesCsvPlotsAndResumes) {
  auto dir = test::scratch("sweep");
  const nlohmann::json grid = {
      {"base", {{"model", test::asset("models/stories260K").string()},
                {"calib", test::asset("data/stories260K-calib.h5").string()},
                {"eval-data", test::asset("data/stories260K-eval.h5").string()},
                {"wbits", 4}, {"groupsize", 32}, {"steps", 2}, {"nsamples", 8}, {"seq-len", 64},
                {"batch-size", 2}, {"eval-rows", 4}}},
      {"grid", {{"seed", {0, 1}}}},
      {"gptq", {{"nsamples", 8}}}};
  std::ofstream(dir / "grid.json") << grid.dump(2);
  const std::string cmd = "cd " + test::root().string() + " && /usr/bin/python3 experiments/sweep.py " +
                          (dir / "grid.json").string() + " --out " + (dir / "out").string() +
                          " --jobs 2 --threads 1 --bin " + test::bin("").string();
  ASSERT_EQ(test::run(cmd, dir / "first.txt"), 0) << test::read_text(dir / "first.txt");

  auto csv = read_csv(dir / "out" / "results.csv");
  ASSERT_EQ(csv["seed"].size(), 2u) << test::read_text(dir / "first.txt");
  const double float_nll = std::stod(csv["nll[float]"][0]);
  for (const char* col : {"nll[gptq_+_learned]", "nll[gptq_+_random-hadamard_init]", "nll[rtn_+_learned]"}) {
    ASSERT_EQ(csv[col].size(), 2u) << col;
    for (const auto& v : csv[col]) {
      const double nll = std::stod(v);
      EXPECT_TRUE(std::isfinite(nll) && nll > float_nll && nll < 10) << col << " = " << v;
    }
  }
  // Different seeds start from different random Hadamards, so their GPTQ rows differ.
  EXPECT_NE(csv["nll[gptq_+_random-hadamard_init]"][0], csv["nll[gptq_+_random-hadamard_init]"][1]);
  for (const char* png : {"eval_nll.png", "loss_curves.png", "orth_err.png"})
    EXPECT_GT(fs::file_size(dir / "out" / png), 1000u) << png;

  ASSERT_EQ(test::run(cmd, dir / "second.txt"), 0) << test::read_text(dir / "second.txt");
  const std::string second = test::read_text(dir / "second.txt");
  EXPECT_NE(second.find("seed=0: skipped, gptq skipped"), std::string::npos) << second;
  EXPECT_NE(second.find("seed=1: skipped, gptq skipped"), std::string::npos) << second;
}
