// A checkpoint ready to run, loaded the one way spin-eval and spin-generate run a model: load_model
// (float, rotated, fake-quant or GPTQ-packed checkpoints), the weights moved to the compute device
// and dtype, every linear RTN fake-quantized by `weight` (with the checkpoint's learned clip ratios
// when its rotation section names them), and the forward's activation / KV quantizers plus the
// checkpoint's online Hadamards R3/R4.
#pragma once

#include <filesystem>

#include "src/model/evaluate.h"
#include "src/rotation/format.h"

namespace spin {

struct RunnableModel {
  LoadedModel loaded;      // as stored (the checkpoint's own dtype and device)
  ModelWeights weights;    // on the compute device in the compute dtype, linears fake-quantized
  ForwardOptions options;  // act / key / value quantizers, r3 / r4 from the rotation section
  const ModelConfig& config() const { return loaded.checkpoint.config; }
  // Points into this object: valid while it lives and is not moved.
  ModelRef ref() const { return {&loaded.checkpoint.config, &weights, options}; }
};

// `quant` supplies act, key and value (its r3/r4 are replaced by the checkpoint's); an all-default
// `weight` and `quant` give the float model with its online Hadamards (spin-eval --reference).
RunnableModel load_runnable(const std::filesystem::path& dir, const QuantSpec& weight, const ForwardOptions& quant,
                            torch::Device device, torch::ScalarType dtype);

}  // namespace spin
