#include "src/dist/group.h"

// USE_C10D_GLOO (ProcessGroupGloo) comes with TorchConfig.cmake's compile definitions.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <cstring>

#include "src/base/check.h"

namespace spin::dist {
namespace {

// The first line of a c10d error (they carry backtraces).
std::string first_line(const std::exception& e) {
  std::string m = e.what();
  return m.substr(0, m.find('\n'));
}

int env_int(const char* name, int lo, int hi) {
  const char* v = std::getenv(name);
  SPIN_CHECK(v && *v, "environment: ", name, " is not set (needed with WORLD_SIZE > 1)");
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  SPIN_CHECK(*end == '\0' && x >= lo && x <= hi, "environment: ", name, "='", v, "' is not an integer in [", lo,
             ", ", hi, "]");
  return static_cast<int>(x);
}

uint64_t fnv1a(uint64_t h, const torch::Tensor& t) {
  const torch::Tensor c = t.detach().cpu().contiguous();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  for (size_t i = 0, n = c.nbytes(); i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

Env env_from_environment() {
  Env e;
  const char* ws = std::getenv("WORLD_SIZE");
  if (!ws || !*ws) {
    SPIN_CHECK(!std::getenv("RANK"), "environment: RANK is set but WORLD_SIZE is not");
    return e;
  }
  e.world_size = env_int("WORLD_SIZE", 1, 1 << 16);
  if (e.world_size == 1) return e;
  e.rank = env_int("RANK", 0, e.world_size - 1);
  e.local_rank = std::getenv("LOCAL_RANK") ? env_int("LOCAL_RANK", 0, e.world_size - 1) : e.rank;
  const char* addr = std::getenv("MASTER_ADDR");
  SPIN_CHECK(addr && *addr, "environment: MASTER_ADDR is not set (needed with WORLD_SIZE > 1)");
  e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", 1, 65535);
  return e;
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

Group::Group(const Env& env, std::chrono::milliseconds timeout) : env_(env) {
  if (env.world_size == 1) return;
  impl_ = std::make_unique<Impl>();
  const std::string where = cat("rank ", env.rank, "/", env.world_size, " (", env.master_addr, ":", env.master_port, ")");
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const bool loopback = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
    opts->devices.push_back(loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(where, ": cannot join the process group within ", timeout.count() / 1000, " s: ", first_line(e));
  }
}

Group::~Group() = default;

void Group::average(const std::vector<torch::Tensor>& tensors) {
  if (!impl_) return;
  torch::ScalarType dtype = tensors.at(0).scalar_type();
  for (const auto& t : tensors) dtype = torch::promote_types(dtype, t.scalar_type());
  std::vector<torch::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().to(torch::kCPU, dtype).reshape(-1));
  std::vector<torch::Tensor> buffer = {torch::cat(flat)};
  try {
    impl_->pg->allreduce(buffer)->wait();
  } catch (const std::exception& e) {
    fail("rank ", rank(), ": all-reduce of the gradients failed (another rank died or hung): ", first_line(e));
  }
  buffer[0].div_(world_size());
  torch::NoGradGuard g;
  int64_t offset = 0;
  for (const auto& t : tensors) {
    t.copy_(buffer[0].narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

std::string Group::check_identical(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  uint64_t h = 14695981039346656037ull;
  for (const auto& t : tensors) h = fnv1a(h, t);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  if (!impl_) return hex;
  // max(h) and max(~h) = ~min(h) over the ranks: equal everywhere iff min == max.
  int64_t local[2];
  std::memcpy(&local[0], &h, 8);
  local[1] = ~local[0];
  std::vector<torch::Tensor> buffer = {torch::tensor({local[0], local[1]}, torch::kInt64)};
  try {
    impl_->pg->allreduce(buffer, c10d::AllreduceOptions{c10d::ReduceOp::MAX})->wait();
  } catch (const std::exception& e) {
    fail("rank ", rank(), ": checksum exchange failed (another rank died or hung): ", first_line(e));
  }
  const int64_t max_h = buffer[0][0].item<int64_t>(), min_h = ~buffer[0][1].item<int64_t>();
  SPIN_CHECK(max_h == min_h, "rank ", rank(), ": ", what, " differ between ranks (checksums from ",
             std::hex, min_h, " to ", max_h, ")");
  return hex;
}

}  // namespace spin::dist
