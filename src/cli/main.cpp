#include "src/cli/main.h"

#include <iostream>
#include <thread>

#include "src/base/runtime_env.h"

namespace spin::cli {

int guarded_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // c10 errors carry a multi-line backtrace; keep the first line.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    std::cerr << "error: " << msg << std::endl;
    return 1;
  }
}

int tool_main(int argc, char** argv, const Program& program, const std::function<int(const Values&)>& body) {
  prefer_fast_runtime(argv);
  return guarded_main([&] {
    const Values values = parse(program, argc, argv);
    for (const Option& o : program.options)
      if (o.key == "threads") set_threads(int(values.integer("threads")));
    return body(values);
  });
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(n);
}

}  // namespace spin::cli
