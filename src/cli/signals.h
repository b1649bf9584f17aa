// Stop signals for `continua run`: SIGTERM, SIGINT, SIGUSR1 (configurable)
// ask the training loop to stop at the next iteration boundary, so the
// command can write a checkpoint and exit with kExitStoppedBySignal.
//
//   StopSignals signals(parse_signals("TERM,INT,USR1"));
//   signals.attach(&strategy);     // the handler calls strategy.request_stop()
//   ... if (!strategy.train(exp) || signals.received()) { save; exit 75; } ...
//
// Contract: the handler is async-signal-safe (it only stores to lock-free
// atomics) and idempotent, so a second signal while the checkpoint is being
// written changes nothing: the save runs to its end. Handlers are installed
// with SA_RESTART and the previous ones are restored by the destructor.
// parse_signals throws InvalidArgument for an unknown name.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

namespace continua {
class Strategy;
}

namespace continua::cli {

// Exit status of `continua run` stopped by a signal after writing a
// checkpoint (EX_TEMPFAIL: "try again later"; the run resumes from it).
constexpr int kExitStoppedBySignal = 75;

// "TERM,INT,USR1" (names with or without SIG, case-insensitive, or numbers)
// -> signal numbers. "none" or "" -> no signal.
std::vector<int> parse_signals(const std::string& list);
// "SIGTERM" for 15.
std::string signal_name(int signo);

class StopSignals {
 public:
  explicit StopSignals(std::vector<int> signals);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The strategy the handler stops (null: none). A signal received before
  // attach() stops the strategy at once.
  void attach(Strategy* strategy);
  // The first signal received, or 0.
  int received() const;

 private:
  std::vector<int> signals_;
  std::vector<struct sigaction*> old_;
};

}  // namespace continua::cli
