#include "cli/signals.h"

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <sstream>

#include "continua/errors.h"
#include "continua/training/strategy.h"

namespace continua::cli {
namespace {

std::atomic<int> g_signal{0};
std::atomic<Strategy*> g_strategy{nullptr};
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");
static_assert(std::atomic<Strategy*>::is_always_lock_free, "the handler needs lock-free atomics");

extern "C" void on_stop_signal(int signo) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signo);
  if (Strategy* s = g_strategy.load()) s->request_stop();
}

struct Named {
  const char* name;
  int signo;
};
constexpr Named kSignals[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"USR1", SIGUSR1},
                              {"USR2", SIGUSR2}, {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
                              {"XCPU", SIGXCPU}, {"ALRM", SIGALRM}};

}  // namespace

std::vector<int> parse_signals(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char c) { return std::isspace(c); }),
               item.end());
    std::string up = item;
    for (auto& c : up) c = char(std::toupper(static_cast<unsigned char>(c)));
    if (up.empty() || up == "NONE") continue;
    if (up.rfind("SIG", 0) == 0) up = up.substr(3);
    int signo = 0;
    for (const auto& n : kSignals) {
      if (up == n.name || up == std::to_string(n.signo)) signo = n.signo;
    }
    if (signo == 0) {
      throw InvalidArgument("--signal: unknown or unsupported signal '" + item +
                            "' (use TERM, INT, USR1, USR2, HUP, QUIT, XCPU, ALRM)");
    }
    if (std::find(out.begin(), out.end(), signo) == out.end()) out.push_back(signo);
  }
  return out;
}

std::string signal_name(int signo) {
  for (const auto& n : kSignals) {
    if (n.signo == signo) return std::string("SIG") + n.name;
  }
  return "signal " + std::to_string(signo);
}

StopSignals::StopSignals(std::vector<int> signals) : signals_(std::move(signals)) {
  g_signal.store(0);
  g_strategy.store(nullptr);
  for (int signo : signals_) {
    struct sigaction sa;
    ::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    auto* old = new struct sigaction;
    if (::sigaction(signo, &sa, old) != 0) {
      delete old;
      old = nullptr;
    }
    old_.push_back(old);
  }
}

StopSignals::~StopSignals() {
  g_strategy.store(nullptr);
  for (size_t i = 0; i < signals_.size(); ++i) {
    if (old_[i]) {
      ::sigaction(signals_[i], old_[i], nullptr);
      delete old_[i];
    }
  }
}

void StopSignals::attach(Strategy* strategy) {
  g_strategy.store(strategy);
  if (strategy && g_signal.load() != 0) strategy->request_stop();
}

int StopSignals::received() const { return g_signal.load(); }

}  // namespace continua::cli
