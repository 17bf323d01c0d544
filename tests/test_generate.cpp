// spin-generate end to end. Greedy ids are compared with tests/reference/llama_greedy.py, an
// independent python3-torch Llama forward (tests/reference/llama_forward.py) rerun on the whole
// sequence per token with an argmax, on the bundled stories260K and ../shared's tinystories656k;
// both sides compute in float64 (--dtype f64), so two nearly tied logits cannot part them by float32
// rounding. Also: a rotated checkpoint (R1-R4, online R3/R4) generates what the float model does;
// seeded sampling is reproducible and top-k 1 is greedy; bad inputs are one-line errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace spin;
using Ids = std::vector<int64_t>;

namespace {

const std::string kStories = test::asset("models/stories260K").string();
const fs::path kTiny = test::root() / ".." / "shared" / "models" / "tinystories656k";

std::string generate_command(const std::string& model, const std::string& flags) {
  return test::bin("spin-generate").string() + " --model " + model + " --threads 1 " + flags;
}

// spin-generate --json with `flags`: its JSON output (the test fails on a non-zero exit).
nlohmann::json generate_json(const std::string& model, const std::string& flags, const std::string& name) {
  const fs::path dir = test::scratch("generate_" + name);
  const int rc = test::run(generate_command(model, "--json " + flags) + " >" + (dir / "out.json").string() + " 2>" +
                           (dir / "err.txt").string());
  if (rc != 0) {
    ADD_FAILURE() << flags << ": exit " << rc << ": " << test::read_text(dir / "err.txt");
    return {{"ids", Ids{}}, {"prompt_ids", Ids{}}};
  }
  return nlohmann::json::parse(test::read_text(dir / "out.json"));
}

// The reference's greedy continuation of `prompt` by `n` tokens, in float64.
Ids python_greedy(const std::string& model, const Ids& prompt, int64_t n, const std::string& name) {
  const fs::path dir = test::scratch("generate_reference_" + name);
  std::string ids;
  for (int64_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string cmd = "/usr/bin/python3 " + (test::root() / "tests/reference/llama_greedy.py").string() + " " +
                          model + " " + ids + " " + std::to_string(n) + " f64 >" + (dir / "out.json").string();
  const int rc = test::run(cmd);
  if (rc != 0) {
    ADD_FAILURE() << cmd << ": exit " << rc;
    return {};
  }
  return nlohmann::json::parse(test::read_text(dir / "out.json"))["ids"].get<Ids>();
}

}  // namespace

TEST(Generate, GreedyIdsEqualThePythonReferenceOnStories260K) {
  const nlohmann::json out = generate_json(kStories, "--prompt-ids 1,403,407,261 --tokens 40 --dtype f64", "stories");
  const Ids ids = out["ids"].get<Ids>();
  ASSERT_EQ(ids.size(), 40u);
  EXPECT_EQ(out["prompt_ids"].get<Ids>(), (Ids{1, 403, 407, 261}));
  EXPECT_EQ(ids, python_greedy(kStories, {1, 403, 407, 261}, 40, "stories"));
  EXPECT_TRUE(out["text"].is_null()) << "stories260K has no tokenizer";
  EXPECT_TRUE(std::any_of(ids.begin(), ids.end(), [&](int64_t id) { return id != ids[0]; })) << "not one token repeated";
}

// From text: BOS <|start_story|> = 1 (the directory's tokenizer_config.json) in front of the prompt.
TEST(Generate, GreedyIdsEqualThePythonReferenceOnTinyStoriesFromText) {
  if (!fs::exists(kTiny / "model.safetensors")) GTEST_SKIP() << "../shared/models/tinystories656k not present";
  const nlohmann::json out =
      generate_json(kTiny.string(), "--prompt 'Once upon a time, there was a' --tokens 48 --dtype f64", "tiny");
  const Ids prompt = out["prompt_ids"].get<Ids>();
  ASSERT_GT(prompt.size(), 4u);
  EXPECT_EQ(prompt[0], 1) << "BOS from tokenizer_config.json";
  EXPECT_EQ(out["ids"].get<Ids>(), python_greedy(kTiny.string(), prompt, 48, "tiny"));
  EXPECT_EQ(out["prompt"].get<std::string>(), "Once upon a time, there was a");
  const std::string text = out["text"].get<std::string>();
  EXPECT_GT(text.size(), 40u) << text;

  // Text mode prints the prompt and the continuation.
  const fs::path dir = test::scratch("generate_tiny_text");
  ASSERT_EQ(test::run(generate_command(kTiny.string(), "--prompt 'Once upon a time, there was a' --tokens 48 --dtype f64"),
                      dir / "out.txt"),
            0);
  EXPECT_EQ(test::read_text(dir / "out.txt"), "Once upon a time, there was a" + text + "\n");
}

// ../shared/README.md gives the greedy text of tinystories656k from BOS.
TEST(Generate, TinyStoriesGreedyFromBosIsTheDocumentedStory) {
  if (!fs::exists(kTiny / "model.safetensors")) GTEST_SKIP() << "../shared/models/tinystories656k not present";
  const std::string text = generate_json(kTiny.string(), "--prompt-ids 1 --tokens 30", "tiny_bos")["text"];
  const std::string documented = "Once upon a time, there was a little girl named Lily. She had a toy car that she loved very much.";
  EXPECT_EQ(text.substr(0, documented.size()), documented);
}

// R1/R2 fused and R3/R4 applied online compute the float function, so greedy decoding agrees (f64).
TEST(Generate, RotatedCheckpointGeneratesWhatTheFloatModelDoes) {
  const fs::path dir = test::scratch("generate_rotate_model");
  ASSERT_EQ(test::run(test::bin("spin-rotate").string() + " --model " + kStories + " --out " + (dir / "rot").string() +
                          " --rotations r1,r2,r3,r4 --threads 1",
                      dir / "log.txt"),
            0)
      << test::read_text(dir / "log.txt");
  const std::string flags = "--prompt-ids 1,403,407 --tokens 32 --dtype f64";
  EXPECT_EQ(generate_json((dir / "rot").string(), flags, "rotated")["ids"], generate_json(kStories, flags, "float")["ids"]);
}

TEST(Generate, SeededSamplingIsReproducibleAndTopK1IsGreedy) {
  const std::string prompt = "--prompt-ids 1,403,407 --tokens 40 ";
  const Ids a = generate_json(kStories, prompt + "--temperature 0.9 --top-k 40 --seed 3", "s3a")["ids"].get<Ids>();
  const Ids b = generate_json(kStories, prompt + "--temperature 0.9 --top-k 40 --seed 3", "s3b")["ids"].get<Ids>();
  const Ids c = generate_json(kStories, prompt + "--temperature 0.9 --top-k 40 --seed 4", "s4")["ids"].get<Ids>();
  const Ids greedy = generate_json(kStories, prompt, "greedy")["ids"].get<Ids>();
  ASSERT_EQ(a.size(), 40u);
  EXPECT_EQ(a, b) << "same seed, same ids";
  EXPECT_NE(a, c) << "another seed, other ids";
  EXPECT_NE(a, greedy) << "sampling at temperature 0.9 is not greedy";
  EXPECT_EQ(generate_json(kStories, prompt + "--temperature 1.5 --top-k 1 --seed 9", "top1")["ids"].get<Ids>(), greedy)
      << "top-k 1 keeps only the largest logit";
}

TEST(Generate, BadInputsAreOneLineErrors) {
  const fs::path dir = test::scratch("generate_errors");
  const std::string ids = "--prompt-ids 1,403 ";
  std::vector<test::ExpectedError> cases = {
      {generate_command(kStories, "--prompt-ids 1,600"), "prompt id 600 at position 1 is outside the model's vocabulary [0, 512)"},
      {generate_command(kStories, "--prompt-ids 1,x"), "--prompt-ids: \"x\" is not a token id"},
      {generate_command(kStories, "--prompt-ids ''"), "--prompt-ids: \"\" is not a token id"},
      {generate_command(kStories, ids + "--tokens 0"), "--tokens must be positive, got 0"},
      {generate_command(kStories, ids + "--tokens 511"), "more than max_position_embeddings 512"},
      {generate_command(kStories, ids + "--temperature -1"), "--temperature must be >= 0"},
      {generate_command(kStories, ids + "--temperature 1 --top-k -2"), "--top-k must be >= 0"},
      {generate_command(kStories, ids + "--prompt hello"), "give one of --prompt and --prompt-ids"},
      {generate_command(kStories, "--tokens 4"), "give one of --prompt and --prompt-ids"},
      {generate_command(kStories, "--prompt hello"), "--prompt needs a tokenizer"},
      {generate_command(kStories, ids + "--wbits 1"), "bits must be between 2 and 16"},
      {generate_command((dir / "absent").string(), ids), "absent"},
  };
  if (fs::exists(kTiny / "tokenizer.json")) {
    cases.push_back({generate_command(kTiny.string(), "--prompt ''"), "--prompt is empty"});
    cases.push_back({generate_command(kStories, "--tokenizer " + kTiny.string() + " --prompt 'The quantum xylophone'"),
                     "prompt id 514 at position 3 is outside the model's vocabulary [0, 512)"});
  }
  test::expect_one_line_errors(cases, dir);
}
