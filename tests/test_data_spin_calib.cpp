// spin-calib end to end.
//
// SentencePiece: ../shared/data/text/tinyshakespeare.txt with the LLaMA-2 tokenizer
// (../shared/tokenizers/llama2/tokenizer.model) -> HDF5, checked against token ids computed
// independently with /usr/bin/python3 + python3-sentencepiece 0.1.97:
//   ids = spm.SentencePieceProcessor(model_file=tok).encode(open(txt).read())
//   len(ids) == 368633; ids[:15] == [3824, 21353, 19642, 29901, 13, 18743, 591, 8469, 738, 4340,
//   29892, 8293, 592, 7726, 29889]; s = [1] + ids: 719 rows of 512, 506 tokens dropped,
//   s[719*512-4 : 719*512] == [18120, 29892, 367, 451], sum(s[:719*512]) == 3358466366;
//   s = ids + [2]: 89 rows of 4096, sum(s[:89*4096]) == 3325268519.
// The tokenizer itself (data/sentencepiece_bpe.h) is checked the same way, plus short strings
// (sp.encode(s) in Python): "Hello world" -> [15043, 3186]; "  two  spaces\tand tab\n" ->
// [259, 1023, 29871, 8162, 12, 392, 4434, 13]; "naïve café – 東京 🤗" -> [1055, 30085, 345, 274,
// 28059, 785, 29871, 30591, 30675, 29871, 243, 162, 167, 154] (the emoji by byte fallback);
// sum(ids) of the whole text == 3363079858.
// tokenizer.json: the tinystories656k model directory on text and JSON lines documents, against
// Tokenizers.js (below).
// Also: --decode gives back a prefix of the text; bad input is a one-line error.
// Skipped when ../shared is absent (a user's clone without it).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "data/sentencepiece_bpe.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace fs = std::filesystem;
using spin::data::load_calib;

namespace {

const fs::path kShared = spin::test::root() / ".." / "shared";
const std::string kTok = (kShared / "tokenizers/llama2/tokenizer.model").string();
const std::string kText = (kShared / "data/text/tinyshakespeare.txt").string();

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs spin-calib with `args`; returns its exit status, output in `log`.
int calib(const std::string& args, const fs::path& log) {
  return spin::test::run(spin::test::bin("spin-calib").string() + " " + args, log);
}

// Runs spin-calib with `args`, which must fail: non-zero exit, an "error: " line holding every one of
// `parts`, and no file at `out`.
void expect_error(const std::string& args, const std::vector<std::string>& parts, const fs::path& dir,
                  const fs::path& out) {
  const fs::path log = dir / "log";
  EXPECT_NE(calib(args, log), 0) << args;
  const std::string s = slurp(log);
  const size_t at = s.find("error: ");
  ASSERT_NE(at, std::string::npos) << s;
  const std::string line = s.substr(at, s.find('\n', at) - at);
  for (const auto& p : parts) EXPECT_NE(line.find(p), std::string::npos) << "'" << p << "' not in: " << line;
  EXPECT_EQ(s.find('\n', at) + 1, s.size()) << "the error is the last line and one line: " << s;
  EXPECT_FALSE(fs::exists(out)) << "no output on failure";
}

class SpinCalib : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTok) || !fs::exists(kText)) GTEST_SKIP() << "../shared (tokenizer, text) not present";
  }
};

}  // namespace

TEST_F(SpinCalib, TokenizerMatchesSentencePiecePython) {
  const spin::data::SentencePieceBpe sp(kTok);
  EXPECT_EQ(sp.vocab_size(), 32000);
  EXPECT_EQ(sp.bos_id(), 1);
  EXPECT_EQ(sp.eos_id(), 2);
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"Hello world", {15043, 3186}},
      {"  two  spaces\tand tab\n", {259, 1023, 29871, 8162, 12, 392, 4434, 13}},
      {"na\xc3\xafve caf\xc3\xa9 \xe2\x80\x93 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\xa4\x97",
       {1055, 30085, 345, 274, 28059, 785, 29871, 30591, 30675, 29871, 243, 162, 167, 154}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(sp.encode(text), ids) << text;
    EXPECT_EQ(sp.decode(ids), text);
  }
  const std::string text = slurp(kText);
  const std::vector<int> ids = sp.encode(text);
  ASSERT_EQ(ids.size(), 368633u);
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 4), (std::vector<int>{3824, 21353, 19642, 29901}));
  EXPECT_EQ(std::accumulate(ids.begin(), ids.end(), int64_t{0}), 3363079858);
  EXPECT_EQ(sp.decode(ids), text);
}

TEST_F(SpinCalib, TokenizesShakespeareLikeSentencePiecePython) {
  const fs::path dir = spin::test::scratch("spin_calib_basic");
  const std::string out = (dir / "shakes.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTok + " --out " + out + " --seq-len 512 " + kText, dir / "log"), 0)
      << slurp(dir / "log");
  const std::string log = slurp(dir / "log");
  EXPECT_NE(log.find("input_ids [719, 512]"), std::string::npos) << log;
  EXPECT_NE(log.find("506 dropped"), std::string::npos) << log;

  torch::Tensor ids = load_calib(out, /*vocab_size=*/32000, {});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({719, 512}));
  EXPECT_TRUE(ids[0].narrow(0, 0, 16).equal(torch::tensor(
      {1, 3824, 21353, 19642, 29901, 13, 18743, 591, 8469, 738, 4340, 29892, 8293, 592, 7726, 29889}, torch::kInt64)));
  EXPECT_TRUE(ids[718].narrow(0, 508, 4).equal(torch::tensor({18120, 29892, 367, 451}, torch::kInt64)));
  EXPECT_EQ(ids.sum().item<int64_t>(), 3358466366);
  EXPECT_EQ(ids.eq(1).sum().item<int64_t>(), 1) << "one BOS: the file is one document";

  auto attrs = spin::data::read_attributes(out);
  EXPECT_EQ(attrs.at("vocab_size"), "32000");
  EXPECT_EQ(attrs.at("seq_len"), "512");
  EXPECT_EQ(attrs.at("created_by"), "spin-calib");
  EXPECT_EQ(attrs.at("tokenizer"), kTok);
  EXPECT_EQ(attrs.at("tokenizer_bytes"), std::to_string(fs::file_size(kTok)));
  EXPECT_EQ(attrs.at("source"), nlohmann::json({kText}).dump());
  EXPECT_EQ(attrs.at("source_tokens"), "368634");
  EXPECT_EQ(attrs.at("dropped_tokens"), "506");
  EXPECT_EQ(attrs.at("bos"), "true");

  // decode(encode(text)) round trip through the C++ SentencePiece API: a prefix of the file.
  ASSERT_EQ(calib("--tokenizer " + kTok + " --decode " + out + " --rows 2 >" + (dir / "dec.txt").string(), {}), 0);
  const std::string dec = slurp(dir / "dec.txt"), text = slurp(kText);
  EXPECT_GT(dec.size(), 2000u);
  EXPECT_EQ(text.substr(0, dec.size()), dec);
}

TEST_F(SpinCalib, NoBosEosAndSeqLen) {
  const fs::path dir = spin::test::scratch("spin_calib_eos");
  const std::string out = (dir / "eos.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTok + " --out " + out + " --seq-len 4096 --no-bos --eos " + kText, dir / "log"), 0)
      << slurp(dir / "log");
  torch::Tensor ids = load_calib(out, 32000, {});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({89, 4096}));
  EXPECT_TRUE(ids[0].narrow(0, 0, 4).equal(torch::tensor({3824, 21353, 19642, 29901}, torch::kInt64)));
  EXPECT_EQ(ids.sum().item<int64_t>(), 3325268519);
  EXPECT_EQ(spin::data::read_attributes(out).at("eos"), "true");
}

TEST_F(SpinCalib, ShuffleAndRowsAreSeededAndSelectPackedRows) {
  const fs::path dir = spin::test::scratch("spin_calib_shuffle");
  const std::string plain = (dir / "plain.h5").string(), a = (dir / "a.h5").string(), b = (dir / "b.h5").string();
  const std::string base = "--tokenizer " + kTok + " --seq-len 256 ";
  ASSERT_EQ(calib(base + "--out " + plain + " " + kText, dir / "log0"), 0) << slurp(dir / "log0");
  ASSERT_EQ(calib(base + "--out " + a + " --shuffle --seed 5 --rows 10 " + kText, dir / "log1"), 0);
  ASSERT_EQ(calib(base + "--out " + b + " --shuffle --seed 5 --rows 10 " + kText, dir / "log2"), 0);
  torch::Tensor all = load_calib(plain, 32000, {}), ta = load_calib(a, 32000, {});
  ASSERT_EQ(ta.sizes(), torch::IntArrayRef({10, 256}));
  EXPECT_TRUE(ta.equal(load_calib(b, 32000, {}))) << "same seed, same rows";
  std::vector<int64_t> perm = spin::data::seeded_permutation(all.size(0), 5);
  for (int64_t i = 0; i < 10; ++i) EXPECT_TRUE(ta[i].equal(all[perm[i]])) << "row " << i;
  EXPECT_EQ(spin::data::read_attributes(a).at("seed"), "5");
}

TEST_F(SpinCalib, BadInputIsAOneLineError) {
  const fs::path dir = spin::test::scratch("spin_calib_errors");
  const std::string out = (dir / "x.h5").string();
  auto expect_fail = [&](const std::string& args, const std::vector<std::string>& parts) {
    expect_error(args, parts, dir, out);
  };
  expect_fail("--tokenizer " + (dir / "nope.model").string() + " --out " + out + " " + kText,
              {"nope.model", "no such tokenizer file"});
  std::ofstream(dir / "empty.txt").close();
  expect_fail("--tokenizer " + kTok + " --out " + out + " " + (dir / "empty.txt").string(),
              {"no text", "1 document(s)", "empty"});
  std::ofstream(dir / "short.txt") << "To be, or not to be, that is the question.\n";
  expect_fail("--tokenizer " + kTok + " --out " + out + " --seq-len 512 " + (dir / "short.txt").string(),
              {"fewer than one row", "--seq-len 512"});
  expect_fail("--tokenizer " + kTok + " --out " + out + " --rows 100000 " + kText, {"rows 100000"});
  std::ofstream(dir / "fake.model") << "not a sentencepiece model";
  expect_fail("--tokenizer " + (dir / "fake.model").string() + " --out " + out + " " + kText, {"fake.model"});
}

// ---------------------------------------------------------------- tokenizer.json, JSON lines
// ../shared/models/tinystories656k as a model directory: its tokenizer.json encodes, its
// tokenizer_config.json names BOS <|start_story|> = 1 with add_bos_token true. Expected ids come
// from Tokenizers.js (tests/tokenizer_oracle.h), run on the same documents; those tests skip
// without node.

namespace {

const fs::path kTinyDir = kShared / "models" / "tinystories656k";
constexpr int64_t kTinyVocab = 2048;
constexpr int64_t kStartStory = 1;  // BOS

#define SKIP_WITHOUT_ORACLE()                                                                  \
  do {                                                                                         \
    if (!spin::test::oracle_missing().empty()) GTEST_SKIP() << spin::test::oracle_missing(); \
  } while (0)

// The first `bytes` or so of tinyshakespeare.txt, ending at a newline, without '&' (not in the
// tokenizer's vocabulary, so it would not decode back), written to `file` (Tokenizers.js is slow on
// the whole text, one large pre-token for this tokenizer).
std::string write_shakespeare_prefix(const fs::path& file, size_t bytes) {
  std::string text = slurp(kText);
  text = text.substr(0, text.find('\n', bytes) + 1);
  text.erase(std::remove(text.begin(), text.end(), '&'), text.end());
  std::ofstream(file, std::ios::binary) << text;
  return text;
}

// The stream spin-calib packs: each document's ids with BOS in front, cut into rows of `seq_len`.
torch::Tensor expected_rows(const nlohmann::json& documents_ids, int64_t seq_len) {
  std::vector<int64_t> stream;
  for (const auto& ids : documents_ids) {
    stream.push_back(kStartStory);
    for (const auto& id : ids) stream.push_back(id.get<int64_t>());
  }
  const int64_t rows = int64_t(stream.size()) / seq_len;
  return torch::tensor(stream, torch::kInt64).narrow(0, 0, rows * seq_len).view({rows, seq_len});
}

// A copy of the tinystories656k tokenizer in `dir` with `tokenizer_config` as its tokenizer_config.json.
fs::path tiny_variant(const fs::path& dir, const std::string& tokenizer_config) {
  fs::create_directories(dir);
  fs::copy_file(kTinyDir / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << tokenizer_config;
  return dir;
}

class SpinCalibText : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTinyDir / "tokenizer.json") || !fs::exists(kText))
      GTEST_SKIP() << "../shared (tinystories656k, tinyshakespeare.txt) not present";
  }
};

}  // namespace

TEST_F(SpinCalibText, TokenizerJsonIdsEqualTokenizersJsAndDecodeRoundTrips) {
  SKIP_WITHOUT_ORACLE();
  const fs::path dir = spin::test::scratch("spin_calib_tinystories");
  const fs::path txt = dir / "shakes.txt";
  const std::string text = write_shakespeare_prefix(txt, 200000);
  const std::string out = (dir / "tiny.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTinyDir.string() + " --out " + out + " --seq-len 256 " + txt.string(), dir / "log"), 0)
      << slurp(dir / "log");
  const nlohmann::json oracle = spin::test::run_oracle(kTinyDir / "tokenizer.json", {}, {txt}, {}, "spin_calib_text");
  ASSERT_TRUE(oracle.contains("files"));
  const torch::Tensor want = expected_rows(nlohmann::json::array({oracle["files"][0]["ids"]}), 256);
  const torch::Tensor got = load_calib(out, kTinyVocab, {});
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(got.equal(want));
  EXPECT_GT(got.size(0), 100);

  const auto attrs = spin::data::read_attributes(out);
  EXPECT_EQ(attrs.at("tokenizer"), (kTinyDir / "tokenizer.json").string());
  EXPECT_EQ(attrs.at("input_format"), R"(["text"])");
  EXPECT_EQ(attrs.at("bos"), "true");
  EXPECT_EQ(attrs.at("vocab_size"), "2048");
  const std::string describe = attrs.at("tokenizer_describe");
  EXPECT_NE(describe.find("<|start_story|> = 1 from tokenizer_config.json bos_token"), std::string::npos) << describe;
  EXPECT_NE(describe.find("add_bos_token true"), std::string::npos) << describe;

  // --decode with the same tokenizer gives the text back (the oracle round-trips it too).
  EXPECT_TRUE(oracle["files"][0]["decoded_equal"].get<bool>());
  ASSERT_EQ(calib("--tokenizer " + kTinyDir.string() + " --decode " + out + " >" + (dir / "dec.txt").string(), {}), 0);
  const std::string dec = slurp(dir / "dec.txt");
  EXPECT_GT(dec.size(), text.size() * 9 / 10);
  EXPECT_EQ(text.substr(0, dec.size()), dec);
}

TEST_F(SpinCalibText, BosFollowsTheTokenizerConfigAndTheFlags) {
  const fs::path dir = spin::test::scratch("spin_calib_bos");
  const fs::path txt = dir / "shakes.txt";
  write_shakespeare_prefix(txt, 20000);
  auto rows = [&](const fs::path& tokenizer, const std::string& flags, const std::string& name) {
    const std::string out = (dir / (name + ".h5")).string();
    EXPECT_EQ(calib("--tokenizer " + tokenizer.string() + " --out " + out + " --seq-len 64 " + flags + " " + txt.string(),
                    dir / "log"),
              0)
        << slurp(dir / "log");
    return load_calib(out, kTinyVocab, {}).flatten();  // [rows * 64]
  };
  const torch::Tensor dflt = rows(kTinyDir, "", "default"), no_bos = rows(kTinyDir, "--no-bos", "no_bos");
  EXPECT_EQ(dflt[0].item<int64_t>(), kStartStory) << "add_bos_token true in the model directory";
  EXPECT_EQ(dflt.eq(kStartStory).sum().item<int64_t>(), 1);
  EXPECT_EQ(no_bos.eq(kStartStory).sum().item<int64_t>(), 0);
  EXPECT_TRUE(no_bos.narrow(0, 0, 1000).equal(dflt.narrow(0, 1, 1000)));

  const fs::path off = tiny_variant(dir / "add_bos_false", R"({"bos_token": "<|start_story|>", "add_bos_token": false})");
  EXPECT_EQ(rows(off, "", "off").eq(kStartStory).sum().item<int64_t>(), 0) << "add_bos_token false";
  EXPECT_EQ(rows(off, "--bos", "off_bos")[0].item<int64_t>(), kStartStory) << "--bos overrides the file";
  const fs::path unsaid = tiny_variant(dir / "unsaid", R"({"bos_token": "<|start_story|>"})");
  EXPECT_EQ(rows(unsaid, "", "unsaid")[0].item<int64_t>(), kStartStory) << "no add_bos_token: BOS when there is one";
  const fs::path none = tiny_variant(dir / "none", R"({"bos_token": null})");
  EXPECT_EQ(rows(none, "", "none").eq(kStartStory).sum().item<int64_t>(), 0) << "no BOS token: none put";
  expect_error("--tokenizer " + none.string() + " --out " + (dir / "x.h5").string() + " --bos " + txt.string(),
               {"tokenizer.json", "has no BOS", "bos_token is null", "--no-bos"}, dir, dir / "x.h5");
  const fs::path asks = tiny_variant(dir / "asks", R"({"bos_token": null, "add_bos_token": true})");
  expect_error("--tokenizer " + asks.string() + " --out " + (dir / "x.h5").string() + " " + txt.string(),
               {"add_bos_token is true, but there is no BOS", "--no-bos"}, dir, dir / "x.h5");
  EXPECT_EQ(rows(asks, "--no-bos", "asks_no_bos").eq(kStartStory).sum().item<int64_t>(), 0);
  expect_error("--tokenizer " + kTinyDir.string() + " --out " + (dir / "x.h5").string() + " --bos --no-bos " + txt.string(),
               {"--bos and --no-bos contradict each other"}, dir, dir / "x.h5");
}

TEST_F(SpinCalibText, JsonLinesDocumentsEqualTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  const fs::path dir = spin::test::scratch("spin_calib_jsonl");
  std::string text = slurp(kText).substr(0, 60000);
  std::vector<std::string> docs;  // the paragraphs of the text, then one with JSON escapes
  for (size_t at = 0, next; (next = text.find("\n\n", at)) != std::string::npos; at = next + 2)
    docs.push_back(text.substr(at, next - at));
  docs.push_back("caf\xc3\xa9 \xf0\x9f\xa4\x97 \"quoted\"\ttab");
  const fs::path jsonl = dir / "stories.jsonl";
  {
    std::ofstream f(jsonl, std::ios::binary);
    for (size_t i = 0; i + 1 < docs.size(); ++i) {
      f << nlohmann::json{{"id", i}, {"story", docs[i]}, {"text", 7}}.dump() << "\n";
      if (i == 2) f << R"({"story": ""})" << "\n";  // an empty document
      if (i == 5) f << "  \r\n";                      // a blank line: another
    }
    f << R"({"story": "caf\u00e9 \ud83e\udd17 \"quoted\"\ttab", "n": [1, 2]})" << "\n";
  }
  const std::string out = (dir / "j.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTinyDir.string() + " --jsonl-field story --seq-len 64 --out " + out + " " +
                      jsonl.string(),
                  dir / "log"),
            0)
      << slurp(dir / "log");
  const nlohmann::json oracle = spin::test::run_oracle(kTinyDir / "tokenizer.json", docs, {}, {}, "spin_calib_jsonl");
  ASSERT_TRUE(oracle.contains("texts"));
  nlohmann::json ids = nlohmann::json::array();
  for (const auto& t : oracle["texts"]) ids.push_back(t["ids"]);
  const torch::Tensor want = expected_rows(ids, 64), got = load_calib(out, kTinyVocab, {});
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(got.equal(want));
  EXPECT_EQ(got.eq(kStartStory).sum().item<int64_t>(), want.eq(kStartStory).sum().item<int64_t>());

  const auto attrs = spin::data::read_attributes(out);
  EXPECT_EQ(attrs.at("input_format"), R"(["jsonl"])") << "by the .jsonl extension";
  EXPECT_EQ(attrs.at("jsonl_field"), "story");
  EXPECT_EQ(attrs.at("documents"), std::to_string(docs.size() + 2));
  EXPECT_EQ(attrs.at("empty_documents"), "2");
  EXPECT_NE(slurp(dir / "log").find("2 empty (skipped)"), std::string::npos) << slurp(dir / "log");

  // --input-format text: the same file is one document.
  ASSERT_EQ(calib("--tokenizer " + kTinyDir.string() + " --input-format text --seq-len 64 --out " + out + " " +
                      jsonl.string(),
                  dir / "log"),
            0)
      << slurp(dir / "log");
  EXPECT_EQ(spin::data::read_attributes(out).at("documents"), "1");
  EXPECT_EQ(spin::data::read_attributes(out).at("input_format"), R"(["text"])");
}

TEST_F(SpinCalibText, HostileInputsAreOneLineErrorsNamingFileLineAndField) {
  const fs::path dir = spin::test::scratch("spin_calib_hostile");
  const fs::path out = dir / "x.h5";
  auto file = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return (dir / name).string();
  };
  const std::string base = "--tokenizer " + kTinyDir.string() + " --seq-len 4 --out " + out.string() + " ";
  const std::string good = R"({"text": "Once upon a time there was a cat."})";
  expect_error(base + file("bad.jsonl", good + "\n{\"text\": \"a\"\n"), {"bad.jsonl:2:", "not valid JSON"}, dir, out);
  expect_error(base + file("missing.jsonl", good + "\n" + good + "\n{\"story\": \"b\"}\n"),
               {"missing.jsonl:3:", "no field \"text\"", "--jsonl-field"}, dir, out);
  expect_error(base + file("number.jsonl", R"({"text": 42})"), {"number.jsonl:1:", "field \"text\"", "must be a string", "number"},
               dir, out);
  expect_error(base + file("array.jsonl", R"(["text", "a"])"), {"array.jsonl:1:", "must be an object", "\"text\""}, dir, out);
  expect_error(base + "--jsonl-field story " + file("other.jsonl", good), {"other.jsonl:1:", "no field \"story\""}, dir, out);
  expect_error(base + file("empties.jsonl", "{\"text\": \"\"}\n\n{\"text\": \"\"}\n"),
               {"no text", "3 document(s)", "empty"}, dir, out);
  expect_error(base + file("latin1.txt", "caf\xe9 au lait"), {"latin1.txt:", "not valid UTF-8", "byte offset 3"}, dir, out);
  expect_error(base + "--input-format csv " + file("a.txt", "text"), {"--input-format", "unknown input format 'csv'"}, dir,
               out);
  expect_error(base + (dir / "absent.jsonl").string(), {"absent.jsonl", "no such text file"}, dir, out);
}
