// End-to-end test of spin-stiefel-bench: makes small Procrustes and Brockett problems, runs every
// optimizer and checks the JSON lines (target reached, orthogonality kept, errors name the field).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "tests/test_util.h"

namespace {

std::vector<nlohmann::json> read_lines(const std::filesystem::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace

TEST(StiefelBench, EveryOptimizerSolvesSmallProblems) {
  auto dir = spin::test::scratch("stiefel_bench");
  std::string bench = spin::test::bin("spin-stiefel-bench").string();
  struct Case { std::string mode, extra, lr; };
  for (const Case& c : {Case{"procrustes", "", "0.5"}, Case{"procrustes", "--det-flip", "0.5"}, Case{"brockett", "", "0.5"}}) {
    auto h5 = dir / ("p.h5");
    auto out = dir / "runs.jsonl";
    ASSERT_EQ(spin::test::run(bench + " --make-problem " + h5.string() + " --mode " + c.mode + " --size 16 " + c.extra, dir / "make.log"), 0);
    ASSERT_EQ(spin::test::run(bench + " --problem " + h5.string() + " --mode " + c.mode + " --steps 800 --lr " + c.lr + " --adam-lr 0.3 --beta2 0.9" +
                                  " --dtype f64 --threads 1 --log-every 50 --output " + out.string(),
                              dir / "run.log"),
              0);
    // Cayley SGD (iterative, exact) and QR SGD reach the 1e-3 target within 800 steps; Cayley Adam,
    // whose scalar second moment tracks the full Euclidean gradient (large at the optimum), is
    // slower on these problems: it must cut the relative error 50-fold.
    int summaries = 0;
    std::map<std::string, std::vector<double>> rel;
    for (const auto& j : read_lines(out)) {
      std::string name = j["optimizer"].get<std::string>();
      std::string what = c.mode + " " + c.extra + " " + name;
      if (j.contains("summary")) {
        ++summaries;
        if (name != "cayley_adam") {
          EXPECT_GE(j["steps_to_target"].get<int64_t>(), 1) << what;
        }
        EXPECT_LT(j["final_orth_error"].get<double>(), 1e-12) << what;
      } else {
        rel[name].push_back(j["rel_error"].get<double>());
        EXPECT_GE(rel[name].back(), -1e-9) << what << ": below the reachable optimum";
      }
    }
    ASSERT_GE(rel["cayley_adam"].size(), 2u);
    EXPECT_LT(rel["cayley_adam"].back(), rel["cayley_adam"].front() / 50) << c.mode << " " << c.extra;
    EXPECT_EQ(summaries, 4) << c.mode;
  }
}

TEST(StiefelBench, MissingDatasetIsNamed) {
  auto dir = spin::test::scratch("stiefel_bench_bad");
  std::string bench = spin::test::bin("spin-stiefel-bench").string();
  std::ofstream(dir / "not.h5") << "not hdf5";
  ASSERT_EQ(spin::test::run(bench + " --problem " + (dir / "not.h5").string(), dir / "log"), 1);
  std::ifstream log(dir / "log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("error: " + (dir / "not.h5").string() + ": cannot read problem"), std::string::npos) << text;
  EXPECT_EQ(spin::test::run(bench + " --problem x.h5 --mode svd", dir / "log"), 1);
}
