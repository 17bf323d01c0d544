// main() of the tools: option parsing, threads and the one-line error on failure.
#pragma once

#include <functional>

#include "src/cli/options.h"

namespace spin::cli {

// Runs body(); a spin::Error or other exception prints "error: <message>" (its first line) on stderr
// and returns 1.
int guarded_main(const std::function<int()>& body);

// A tool's whole main(): prefer_fast_runtime (src/base/runtime_env.h), then parses argv against
// `program`, sets the threads when --threads is one of its options and runs body(values), all inside
// guarded_main.
int tool_main(int argc, char** argv, const Program& program, const std::function<int(const Values&)>& body);

// threads <= 0: all cores. Sets LibTorch's intra-op pool (it defaults to 1 thread).
void set_threads(int threads);

}  // namespace spin::cli
