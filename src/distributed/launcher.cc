// run_local_ranks: `continua run --nproc N` starts N copies of itself.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "continua/distributed/distributed.h"
#include "continua/errors.h"

namespace continua {

namespace {

std::atomic<int> g_forward_signal{0};

void record_signal(int signo) { g_forward_signal.store(signo); }

}  // namespace

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(e));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<std::string> own_arguments() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  if (!args.empty()) args.erase(args.begin());
  return args;
}

int run_local_ranks(const std::string& program, const std::vector<std::string>& args, int nproc,
                    int tolerated_status) {
  if (nproc < 1) throw InvalidArgument("--nproc must be >= 1, got " + std::to_string(nproc));
  const int port = free_local_port();
  const int signals[] = {SIGTERM, SIGINT, SIGUSR1};
  struct sigaction old[3];
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int i = 0; i < 3; ++i) ::sigaction(signals[i], &sa, &old[i]);
  struct Restore {
    const int* s;
    struct sigaction* o;
    ~Restore() {
      for (int i = 0; i < 3; ++i) ::sigaction(s[i], &o[i], nullptr);
    }
  } restore{signals, old};

  std::vector<pid_t> pids;
  auto kill_all = [&](int signo) {
    for (pid_t p : pids) {
      if (p > 0) ::kill(p, signo);
    }
  };
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env_strings = {
        "RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(nproc), "LOCAL_RANK=" + std::to_string(r),
        "LOCAL_WORLD_SIZE=" + std::to_string(nproc), "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)};
    std::vector<std::string> argv_strings = {program};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      kill_all(SIGKILL);
      throw Error(std::string("--nproc: cannot start rank ") + std::to_string(r) + ": " + std::strerror(e));
    }
    if (pid == 0) {
      for (auto& e : env_strings) ::putenv(e.data());
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }

  int result = 0;
  bool failed = false;
  std::chrono::steady_clock::time_point kill_deadline;
  size_t alive = pids.size();
  while (alive > 0) {
    if (const int s = g_forward_signal.exchange(0)) kill_all(s);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (auto& p : pids) {
        if (p == pid) p = 0;
      }
      --alive;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (!failed && code != 0 && code != tolerated_status) {
        failed = true;
        result = code;
        kill_all(SIGTERM);
        kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      } else if (!failed && code == tolerated_status) {
        result = tolerated_status;
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (failed && std::chrono::steady_clock::now() > kill_deadline) kill_all(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return result;
}

}  // namespace continua
