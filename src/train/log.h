// The record of a training run: one JSON object per line in the log file, and a progress line on
// stderr per step ("layer 2/5  step 3/100  loss 0.1234  lr 0.1000  orth 1.2e-07  tok/s 1234  eta 1m05s").
#pragma once

#include <fstream>
#include <string>

namespace spin {

class TrainLog {
 public:
  TrainLog() = default;  // inactive (ranks other than 0): writes nothing
  // Opens `path` (appending when `append`); throws spin::Error if it cannot.
  TrainLog(const std::string& path, bool append, bool quiet);

  // Logs `rec` and prints its progress line. Fields used when present: layer, layers, step, steps,
  // loss, lr, orth_err, tokens_per_s, eta_seconds, warning (also printed as a warning line).
  void step(const nlohmann::json& rec);
  // Logs `rec` only.
  void record(const nlohmann::json& rec);

 private:
  std::ofstream out_;
  bool quiet_ = true;
};

// "42s" or "3m05s".
std::string format_seconds(double seconds);

}  // namespace spin
