// Data-parallel process group: the ranks of one spintrain job and the few collectives it needs.
//
// The job's shape comes from torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT); without them (or with WORLD_SIZE=1) there is one rank and nothing is
// communicated. Several ranks meet through a c10d::TCPStore served by rank 0 and communicate over
// c10d::ProcessGroupGloo. The tensors reduced here are the rotations' gradients (hidden_size^2 +
// layers * head_dim^2 floats: 66 MiB for 7B, 261 MiB for 70B in float32; docs/SCALING.md), so they go
// through host memory whatever the training device.
//
// A rank that dies makes the others' next collective fail (connection closed); a rank that hangs
// makes them fail after `timeout`. Either way spin::Error, never a hang.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace spin::dist {

struct Env {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
};

// Reads and validates the torchrun variables; every one absent means a single process.
Env env_from_environment();

class Group {
 public:
  // world_size 1 creates nothing. Otherwise blocks until every rank has joined (or `timeout`).
  Group(const Env& env, std::chrono::milliseconds timeout);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }

  // Replaces each tensor by its mean over the ranks: one all-reduce of one flat buffer in the tensors'
  // promoted dtype (float32 for float32 gradients).
  // The sum order is the same on every rank, so every rank gets bitwise the same result.
  void average(const std::vector<torch::Tensor>& tensors);

  // A checksum of the tensors' bytes (FNV-1a, 64 bit), checked to be equal on every rank; throws
  // spin::Error naming `what` when the ranks disagree. Returns it as 16 hex digits.
  std::string check_identical(const std::vector<torch::Tensor>& tensors, const std::string& what);

 private:
  struct Impl;
  Env env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spin::dist
