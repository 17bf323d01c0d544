// spin-eval: perplexity / NLL (and KL to a reference model) of a checkpoint on HDF5 token ids,
// optionally under RTN fake quantization of weights, activations and the KV cache.
#include <iostream>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/cli/flags.h"
#include "src/model/evaluate.h"
#include "src/quant/quantize_weights.h"
#include "src/rotation/format.h"

using namespace spin;

int main(int argc, char** argv) {
  return cli::guarded_main([&] {
    cxxopts::Options o("spin-eval", "Mean next-token NLL and perplexity of a (rotated) checkpoint on HDF5 token ids");
    o.add_options()
        ("model", "model directory (HF layout; a rotated checkpoint's online Hadamards are applied)", cxxopts::value<std::string>())
        ("data", "HDF5 file with dataset input_ids [N, T]", cxxopts::value<std::string>())
        ("rows", "evaluate the first N rows (-1: all)", cxxopts::value<int64_t>()->default_value("-1"))
        ("seq-len", "tokens per row (-1: as stored)", cxxopts::value<int64_t>()->default_value("-1"))
        ("batch-size", "rows per forward pass", cxxopts::value<int64_t>()->default_value("8"))
        ("reference", "reference model directory: also report KL(reference || model)", cxxopts::value<std::string>())
        ("dtype", "compute dtype: f32, bf16 or f64", cxxopts::value<std::string>()->default_value("f32"))
        ("device", "cpu, cuda or auto", cxxopts::value<std::string>()->default_value("cpu"))
        ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
        ("json", "print one JSON object instead of text");
    cli::add_quant_flags(o);
    auto r = cli::parse(o, argc, argv);
    SPIN_CHECK(r.count("model") && r.count("data"), "spin-eval: --model and --data are required (see --help)");
    cli::set_threads(r["threads"].as<int>());
    const auto dtype = cli::parse_dtype(r["dtype"].as<std::string>());
    const auto device = cli::parse_device(r["device"].as<std::string>());
    const cli::QuantFlags q = cli::quant_flags(r);

    LoadedModel m = load_model(r["model"].as<std::string>());
    const ModelConfig& c = m.checkpoint.config;
    data::CalibOptions dopt;
    dopt.rows = r["rows"].as<int64_t>();
    dopt.seq_len = r["seq-len"].as<int64_t>();
    torch::Tensor ids = data::load_calib(r["data"].as<std::string>(), c.vocab_size, dopt).to(device);

    auto to_compute = [&](const torch::Tensor& t) { return t.to(device, dtype); };
    // With a weight_clip file (spintrain --learn-clip) RTN uses the learned per-row clip ratios.
    ModelWeights w = fake_quant_weights(map_weights(c, m.checkpoint.weights, to_compute), q.weight, m.weight_clip);
    ForwardOptions fo = m.online();
    fo.act = q.act;
    fo.key = q.key;
    fo.value = q.value;
    ModelRef model{&c, &w, fo};

    std::optional<LoadedModel> ref_model;
    ModelWeights ref_w;
    ModelRef ref{};
    if (r.count("reference")) {
      ref_model = load_model(r["reference"].as<std::string>());
      SPIN_CHECK(ref_model->checkpoint.config.vocab_size == c.vocab_size, "--reference: vocab_size ",
                 ref_model->checkpoint.config.vocab_size, " differs from the model's ", c.vocab_size);
      ref_w = map_weights(ref_model->checkpoint.config, ref_model->checkpoint.weights, to_compute);
      ref = {&ref_model->checkpoint.config, &ref_w, ref_model->online()};
    }
    EvalResult res = evaluate(model, ids, r["batch-size"].as<int64_t>(), ref_model ? &ref : nullptr);
    if (r.count("json")) {
      nlohmann::json j = res.to_json();
      j["model"] = r["model"].as<std::string>();
      j["data"] = r["data"].as<std::string>();
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
