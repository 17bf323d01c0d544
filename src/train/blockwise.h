// Block-wise training (--mode blockwise): R2 and the learnable scales of one decoder layer at a time,
// against the float layer's output, so only one layer's rotated/quantized weights, gradients and
// activations exist at once (end to end needs them for every layer).
//
// Layer inputs are kept for all calibration rows, in the R1 basis:
//   x_fp [N, T, hidden]  the float model's input to layer i
//   x_q  [N, T, hidden]  the quantized student's input to layer i (earlier layers already trained)
// Layer i trains for cfg.steps steps on micro-batches of rows, minimising the relative MSE
//   ||layer_q(x_q) − layer_fp(x_fp)||² / ||layer_fp(x_fp)||²
// (the student sees its own upstream quantization error, as in OmniQuant), then both inputs advance
// one layer (x_q through the trained quantized layer). R1 is shared by all layers, so it cannot be
// learned layer-locally: it stays fixed (its --init, or --r1-from a rotated checkpoint, e.g. an e2e
// run on a few rows). The final norm and lm_head have nothing to learn.
#pragma once

#include "src/train/mode.h"

namespace spin {

// job.data's rows [N, T] are the calibration set; `learnables` holds R1 (fixed), the R2 leaves and the
// scales; each layer gets its own HybridOptimizer. job.log receives one record per step (layer, step,
// loss, lr, orth_err, ...) and one per layer with the relative MSE over all rows before and after its
// training ({"layer", "layer_mse_init", "layer_mse_final", "layer_seconds"}).
LearnResult learn_blockwise(const Job& job, Learnables& learnables);

}  // namespace spin
