// Helpers shared by the tests: where the repository, the tools and a scratch directory are.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace spin::test {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

// Repository root (ctest sets SPIN_ROOT).
inline std::filesystem::path root() { return env_or("SPIN_ROOT", SPIN_DEFAULT_ROOT); }
// Bundled assets: asset("models/stories260K"), asset("data/stories260K-eval.h5").
inline std::filesystem::path asset(const std::string& rel) { return root() / "assets" / rel; }
// Built executables (build/bin).
inline std::filesystem::path bin(const std::string& exe) { return std::filesystem::path(env_or("SPIN_BIN", SPIN_DEFAULT_BIN)) / exe; }

// A fresh empty directory for one test: SPIN_TMP/<name>.
inline std::filesystem::path scratch(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(env_or("SPIN_TMP", SPIN_DEFAULT_TMP)) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A fresh directory for what a suite builds once per process (SetUpTestSuite): ctest runs each test of
// a suite as its own process, in parallel, so the directory's name carries the process id.
inline std::filesystem::path suite_scratch(const std::string& name) {
  return scratch(name + "." + std::to_string(::getpid()));
}

// Runs a shell command, returns its exit status; stdout+stderr go to `log` if given.
inline int run(const std::string& cmd, const std::filesystem::path& log = {}) {
  std::string full = log.empty() ? cmd : cmd + " >" + log.string() + " 2>&1";
  int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// A whole file as text ("" if it does not exist).
inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The spintrain command line on the bundled stories260K model and calibration rows, writing `out`,
// with `flags` appended.
inline std::string spintrain_command(const std::filesystem::path& out, const std::string& flags) {
  return bin("spintrain").string() + " --model " + asset("models/stories260K").string() + " --calib " +
         asset("data/stories260K-calib.h5").string() + " --out " + out.string() + " " + flags;
}

// A command line that must fail with exit status 1 and one line of output containing `fragment`.
struct ExpectedError {
  std::string command, fragment;
};
inline void expect_one_line_errors(const std::vector<ExpectedError>& cases, const std::filesystem::path& dir) {
  for (const auto& c : cases) {
    const std::filesystem::path log = dir / "log.txt";
    EXPECT_EQ(run(c.command, log), 1) << c.command;
    const std::string all = read_text(log);
    EXPECT_NE(all.find(c.fragment), std::string::npos) << c.command << ": " << all;
    EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 1) << all;
  }
}

}  // namespace spin::test
