#include "src/train/log.h"

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "src/base/check.h"
#include "src/io/output_guard.h"

namespace spin {

TrainLog::TrainLog(const std::string& path, bool append, bool quiet) : quiet_(quiet) {
  // Like every other output of the tools, the log's directory is created when missing.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const bool fresh = !append || !std::filesystem::exists(path, ec) || std::filesystem::file_size(path, ec) == 0;
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  SPIN_CHECK(out_.good(), path, ": cannot open log file");
  if (fresh) out_ << log_marker_line("spintrain") << std::flush;  // what lets a later run replace it
}

void TrainLog::record(const nlohmann::json& rec) {
  if (out_.is_open()) out_ << rec.dump() << "\n" << std::flush;
}

void TrainLog::step(const nlohmann::json& rec) {
  if (!out_.is_open()) return;
  record(rec);
  if (rec.contains("warning")) std::cerr << "warning: step " << rec["step"] << ": " << rec["warning"].get<std::string>() << std::endl;
  if (quiet_) return;
  std::ostringstream line;
  if (rec.contains("layer")) line << "layer " << rec["layer"].get<int64_t>() + 1 << "/" << rec["layers"] << "  ";
  line << "step " << rec["step"] << "/" << rec["steps"] << std::fixed << "  loss " << std::setprecision(4)
       << rec["loss"].get<double>() << "  lr " << rec["lr"].get<double>();
  if (rec.contains("orth_err"))
    line << "  orth " << std::scientific << std::setprecision(1) << rec["orth_err"].get<double>() << std::fixed;
  line << "  tok/s " << std::setprecision(0) << rec["tokens_per_s"].get<double>() << "  eta "
       << format_seconds(rec["eta_seconds"].get<double>());
  std::cerr << line.str() << std::endl;
}

std::string format_seconds(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 60 ? cat(t / 60, "m", std::setw(2), std::setfill('0'), t % 60, "s") : cat(t, "s");
}

}  // namespace spin
