// `spintrain --nproc N`: runs N local ranks of one data-parallel job, as torchrun --standalone would.
//
// Each rank is this same executable, re-run with the same arguments and RANK, LOCAL_RANK, WORLD_SIZE,
// MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in its environment. When a rank fails (non-zero exit or
// a signal) the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher
// reports which rank failed and how. Ranks also die with the launcher (PR_SET_PDEATHSIG).
#pragma once

namespace spin::dist {

// True when this process is one rank of a launched job (WORLD_SIZE is set).
bool launched_as_rank();

// Runs `argv` (argv[0] = this program) as `nproc` ranks and waits for them; returns 0 if every rank
// succeeded, 1 otherwise.
int launch_local_ranks(int nproc, char** argv);

}  // namespace spin::dist
