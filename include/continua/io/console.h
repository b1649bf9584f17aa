// Console output that stays whole when several processes share a terminal or
// a pipe (the ranks of `continua run --nproc N`, the tasks of an srun step).
//
// Usage:
//   continua::io::print_line(2, fmt::format("continua: rank {}: {} iterations", r, n));
//   continua::io::ErrLine() << "continua: rank " << r << ": " << n << " iterations";
//
// Contract: print_line writes `text` followed by a newline (unless `text`
// already ends with one) to file descriptor `fd` with a single write(2), retried
// on EINTR and continued on a short write. A line of at most PIPE_BUF (4096)
// bytes written to a pipe is atomic, so lines of different processes never
// interleave; std::cerr writes each `<<` separately, which does interleave.
// Errors (a closed stderr) are ignored: a message must never fail a run.
// For stdout, flush std::cout first if it holds buffered text. ErrLine
// collects a message with `<<` and prints it to stderr with print_line when the
// full expression ends (its destructor).
#pragma once

#include <sstream>
#include <string_view>

namespace continua::io {

void print_line(int fd, std::string_view text);

class ErrLine {
 public:
  ErrLine() = default;
  ErrLine(const ErrLine&) = delete;
  ErrLine& operator=(const ErrLine&) = delete;
  ~ErrLine() { print_line(2, text_.str()); }
  template <class T>
  ErrLine& operator<<(const T& value) {
    text_ << value;
    return *this;
  }

 private:
  std::ostringstream text_;
};

}  // namespace continua::io
