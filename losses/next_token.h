// Training and evaluation losses over next-token distributions.
//
// Shapes: logits [B, T, V] (any float dtype; computed in float32), ids [B, T] int64.
// Position t predicts ids[:, t + 1], so T - 1 positions per row count.
#pragma once

namespace spin::losses {

// Mean negative log-likelihood (nats/token) of ids[:, 1:] under logits[:, :-1].
torch::Tensor next_token_nll(const torch::Tensor& logits, const torch::Tensor& ids);

// Mean over positions of KL(teacher || student) between next-token distributions, using all V classes.
// teacher_logp [B, T, V] are the float model's log-probabilities (no gradient).
torch::Tensor kl_to_teacher(const torch::Tensor& student_logits, const torch::Tensor& teacher_logp);

// Top-k teacher distribution, kept instead of the full [B, T, V] log-probs for large vocabularies.
struct TopK {
  torch::Tensor logp;     // [B, T, k] teacher log-probabilities of its k most likely tokens
  torch::Tensor indices;  // [B, T, k] int64
};
TopK teacher_topk(const torch::Tensor& teacher_logits, int64_t k);

// KL over the teacher's top-k support: sum_i p_i (log p_i − log q_i), p renormalised to the top k,
// q the student's full-softmax probabilities of those tokens. Mean over positions.
torch::Tensor kl_topk(const torch::Tensor& student_logits, const TopK& teacher);

}  // namespace spin::losses
