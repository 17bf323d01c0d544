// spin-eval: perplexity / NLL (and KL to a reference model) of a checkpoint on HDF5 token ids,
// optionally under RTN fake quantization of weights, activations and the KV cache.
#include <iostream>
#include <optional>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/model/evaluate.h"
#include "src/rotation/runnable.h"

using namespace spin;
using cli::Type;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-eval", "Mean next-token NLL and perplexity of a (rotated) checkpoint on HDF5 token ids",
      std::vector<cli::Option>{
          {"model", Type::text, "", "io", "model directory (HF layout; a rotated checkpoint's online Hadamards are applied)"},
          {"data", Type::text, "", "io", "HDF5 file with dataset input_ids [N, T]"},
          {"rows", Type::integer, "-1", "io", "evaluate the first N rows (-1: all)"},
          {"seq-len", Type::integer, "-1", "io", "tokens per row (-1: as stored)"},
          {"batch-size", Type::integer, "8", "io", "rows per forward pass"},
          {"reference", Type::text, "", "io", "reference model directory: also report KL(reference || model)"},
          {"json", Type::boolean, "false", "io", "print one JSON object instead of text"},
      } + cli::quant_options() + cli::with_defaults(cli::run_options(), {{"device", "cpu"}})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    SPIN_CHECK(!v.text("model").empty() && !v.text("data").empty(),
               "spin-eval: --model and --data are required (see --help)");
    const cli::RunFlags run = cli::run_flags(v);
    const cli::QuantFlags q = cli::quant_flags(v);

    // Weight RTN uses a checkpoint's learned per-row clip ratios (spintrain --learn-clip) when it has them.
    const RunnableModel m = load_runnable(v.text("model"), q.weight, q.forward(), run.device, run.dtype);
    const ModelConfig& c = m.config();
    data::CalibOptions dopt;
    dopt.rows = v.integer("rows");
    dopt.seq_len = v.integer("seq-len");
    torch::Tensor ids = data::load_calib(v.text("data"), c.vocab_size, dopt).to(run.device);
    SPIN_CHECK(ids.size(1) >= 2, v.text("data"), ": rows of ", ids.size(1),
               " token predict nothing (the NLL needs at least 2 tokens per row; see --seq-len)");
    const ModelRef model = m.ref();

    std::optional<RunnableModel> ref_model;
    ModelRef ref{};
    if (!v.text("reference").empty()) {
      ref_model = load_runnable(v.text("reference"), {}, {}, run.device, run.dtype);
      SPIN_CHECK(ref_model->config().vocab_size == c.vocab_size, "--reference: vocab_size ",
                 ref_model->config().vocab_size, " differs from the model's ", c.vocab_size);
      ref = ref_model->ref();
    }
    EvalResult res = evaluate(model, ids, v.integer("batch-size"), ref_model ? &ref : nullptr);
    if (v.flag("json")) {
      nlohmann::json j = res.to_json();
      j["model"] = v.text("model");
      j["data"] = v.text("data");
      j["quant"] = q.describe();
      std::cout << j.dump() << std::endl;
    } else {
      std::cout << "nll " << res.nll << "  ppl " << res.ppl << "  tokens " << res.tokens;
      if (res.kl >= 0) std::cout << "  kl " << res.kl;
      std::cout << "  [" << q.describe() << "]  " << static_cast<int64_t>(res.tokens_per_s) << " tokens/s"
                << std::endl;
    }
    return 0;
  });
}
