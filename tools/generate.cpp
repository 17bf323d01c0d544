// spin-generate: continue a prompt with a checkpoint (float, rotated, fake-quant or GPTQ-packed,
// loaded and quantized exactly as spin-eval runs it: src/rotation/runnable.h), greedy or with seeded
// sampling (src/model/generate.h), and print the prompt and its continuation.
//
// The prompt is text (--prompt, encoded by the tokenizer, BOS in front as the tokenizer says or as
// --bos / --no-bos ask) or token ids (--prompt-ids 1,2,3, taken as given). The tokenizer is the
// model directory's unless --tokenizer names one; without any, only --prompt-ids works and the
// output is ids alone.
#include <iostream>

#include "data/tokenizer.h"
#include "src/base/json_input.h"
#include "src/cli/main.h"
#include "src/model/generate.h"
#include "src/rotation/runnable.h"

using namespace spin;
using cli::Type;
namespace {

// "1,2,3" -> {1, 2, 3}.
std::vector<int64_t> parse_ids(const std::string& list) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SPIN_CHECK(!item.empty() && used == item.size(), "--prompt-ids: ", json_quoted(item),
               " is not a token id (expected a comma-separated list of integers, e.g. 1,2,3)");
    ids.push_back(id);
    start = end + 1;
  }
  return ids;
}

// The text `ids` add after `prompt`: decoded together, so that a tokenizer that drops the space
// in front of the first token (SentencePiece) keeps the one between prompt and continuation.
std::string continuation_text(const data::Tokenizer& tok, const std::vector<int64_t>& prompt,
                              const std::vector<int64_t>& ids) {
  const std::vector<int> p(prompt.begin(), prompt.end());
  std::vector<int> all = p;
  all.insert(all.end(), ids.begin(), ids.end());
  const std::string prefix = tok.decode(p), full = tok.decode(all);
  if (full.compare(0, prefix.size(), prefix) == 0) return full.substr(prefix.size());
  return tok.decode(std::vector<int>(ids.begin(), ids.end()));
}

std::string join(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += cat(s.empty() ? "" : " ", id);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-generate", "Continue a prompt with a (rotated, quantized) checkpoint: greedy or seeded sampling",
      std::vector<cli::Option>{
          {"model", Type::text, "", "io", "model directory (as spin-eval loads it)"},
          {"prompt", Type::text, "", "io", "prompt text (encoded by the tokenizer)"},
          {"prompt-ids", Type::text, "", "io", "prompt token ids, comma-separated (instead of --prompt)"},
          {"tokenizer", Type::text, "", "io", "tokenizer.json, tokenizer.model or a directory (default: the model's)"},
          {"tokens", Type::integer, "32", "generation", "new tokens to generate"},
          {"temperature", Type::real, "0", "generation", "0: greedy; > 0: sample from softmax(logits / T)"},
          {"top-k", Type::integer, "0", "generation", "sample among the k most likely tokens only (0: all)"},
          {"seed", Type::integer, "0", "generation", "sampling seed"},
          {"json", Type::boolean, "false", "io", "print one JSON object (ids and text) instead of text"},
      } + cli::bos_options() +
          cli::quant_options() + cli::with_defaults(cli::run_options(), {{"device", "cpu"}})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    const std::string model_dir = v.text("model");
    SPIN_CHECK(!model_dir.empty(), "spin-generate: --model is required (see --help)");
    SPIN_CHECK(v.given("prompt") != v.given("prompt-ids"), "spin-generate: give one of --prompt and --prompt-ids");
    const cli::RunFlags run = cli::run_flags(v);
    const cli::QuantFlags q = cli::quant_flags(v);
    GenerateOptions gen;
    gen.tokens = v.integer("tokens");
    gen.temperature = v.real("temperature");
    gen.top_k = v.integer("top-k");
    gen.seed = uint64_t(v.integer("seed"));

    // ------------------------------------------------------------------ tokenizer and prompt
    std::unique_ptr<data::Tokenizer> tok;
    if (v.given("tokenizer")) tok = data::open_tokenizer(v.text("tokenizer"));
    else if (!data::find_tokenizer_file(model_dir).empty()) tok = data::open_tokenizer(model_dir);
    std::vector<int64_t> prompt;
    if (v.given("prompt")) {
      const std::string text = v.text("prompt");
      SPIN_CHECK(!text.empty(), "spin-generate: --prompt is empty");
      SPIN_CHECK(tok, "spin-generate: --prompt needs a tokenizer, and ", model_dir,
                 " has neither tokenizer.json nor tokenizer.model; give --tokenizer or --prompt-ids");
      if (tok->use_bos(cli::bos_flag(v))) prompt.push_back(tok->bos_id());
      for (int id : tok->encode(text)) prompt.push_back(id);
    } else {
      prompt = parse_ids(v.text("prompt-ids"));
    }

    // ------------------------------------------------------------------ load and generate
    const RunnableModel m = load_runnable(model_dir, q.weight, q.forward(), run.device, run.dtype);
    const std::vector<int64_t> ids = generate(m.ref(), prompt, gen);

    // ------------------------------------------------------------------ print
    if (v.flag("json")) {
      nlohmann::json j = {{"model", model_dir},         {"quant", q.describe()},          {"prompt_ids", prompt},
                          {"ids", ids},                 {"temperature", gen.temperature}, {"top_k", gen.top_k},
                          {"seed", gen.seed},           {"tokenizer", nullptr},           {"prompt", nullptr},
                          {"text", nullptr}};
      if (tok) {
        j["tokenizer"] = tok->describe();
        j["prompt"] = tok->decode(std::vector<int>(prompt.begin(), prompt.end()));
        j["text"] = continuation_text(*tok, prompt, ids);
      }
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else if (tok) {
      std::cout << tok->decode(std::vector<int>(prompt.begin(), prompt.end())) << continuation_text(*tok, prompt, ids)
                << std::endl;
    } else {
      std::cout << join(prompt) << " | " << join(ids) << std::endl;
    }
    return 0;
  });
}
