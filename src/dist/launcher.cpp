#include "src/dist/launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "src/base/check.h"

namespace spin::dist {
namespace {

// A TCP port nobody listens on now (the kernel's pick for port 0 on loopback).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  SPIN_CHECK(fd >= 0, "spintrain --nproc: cannot create a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  SPIN_CHECK(ok, "spintrain --nproc: cannot find a free port on 127.0.0.1");
  return ntohs(a.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return cat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return cat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return "stopped";
}

// Stops the still-running ranks: SIGTERM, then SIGKILL after `grace`.
void stop_all(std::map<pid_t, int>& running, std::chrono::seconds grace) {
  for (const auto& [pid, rank] : running) kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      running.erase(pid);
    } else if (std::chrono::steady_clock::now() > deadline) {
      for (const auto& [p, rank] : running) kill(p, SIGKILL);
      for (const auto& [p, rank] : running) waitpid(p, &status, 0);
      running.clear();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace

bool launched_as_rank() {
  const char* ws = std::getenv("WORLD_SIZE");
  return ws && *ws;
}

int launch_local_ranks(int nproc, char** argv) {
  SPIN_CHECK(nproc >= 1, "--nproc: must be at least 1, got ", nproc);
  const std::string port = std::to_string(free_port());
  const pid_t launcher = getpid();
  std::map<pid_t, int> running;  // pid -> rank
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = fork();
    SPIN_CHECK(pid >= 0, "spintrain --nproc: fork failed for rank ", rank);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(1);  // the launcher died before prctl took effect
      const std::string r = std::to_string(rank), w = std::to_string(nproc);
      setenv("RANK", r.c_str(), 1);
      setenv("LOCAL_RANK", r.c_str(), 1);
      setenv("WORLD_SIZE", w.c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      execv("/proc/self/exe", argv);
      std::cerr << "error: spintrain --nproc: cannot run /proc/self/exe for rank " << rank << std::endl;
      _exit(127);
    }
    running[pid] = rank;
  }
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    const int rank = running.at(pid);
    running.erase(pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    std::cerr << "error: spintrain --nproc " << nproc << ": rank " << rank << " " << describe(status)
              << "; stopping the other ranks" << std::endl;
    stop_all(running, std::chrono::seconds(10));
    return 1;
  }
  return 0;
}

}  // namespace spin::dist
