// io::print_line / io::ErrLine: lines of processes sharing one pipe never
// interleave (the ranks of `continua run --nproc N` share the terminal).
#include "continua/io/console.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <cerrno>
#include <unistd.h>

#include <string>
#include <vector>

namespace continua::io {
namespace {

// The line child `c` prints for `i`, assembled from many small pieces the way
// run.cc assembles its reports.
std::string expected_line(int c, int i) {
  std::string s = "continua: rank " + std::to_string(c) + " of 4: line " + std::to_string(i);
  for (int k = 0; k < 20; ++k) s += " piece" + std::to_string(k);
  return s;
}

TEST(Console, LinesOfSeveralProcessesOnOnePipeStayWhole) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  constexpr int kChildren = 4, kLines = 400;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ::dup2(fds[1], 2);
      for (int i = 0; i < kLines; ++i) {
        if (i % 2) {
          ErrLine line;
          line << "continua: rank " << c << " of 4: line " << i;
          for (int k = 0; k < 20; ++k) line << " piece" << k;
        } else {
          print_line(2, expected_line(c, i));
        }
      }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  ::close(fds[1]);
  std::string all;
  char buf[65536];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0);
    all.append(buf, size_t(n));
  }
  ::close(fds[0]);
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  // Every line is one a child printed, and each child's lines come in order.
  std::vector<int> next(kChildren, 0);
  size_t start = 0, lines = 0;
  while (start < all.size()) {
    const size_t end = all.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "unterminated tail: " << all.substr(start);
    const std::string line = all.substr(start, end - start);
    const int c = line.size() > 15 ? line[15] - '0' : -1;
    ASSERT_TRUE(c >= 0 && c < kChildren) << "interleaved line: " << line;
    ASSERT_EQ(line, expected_line(c, next[c])) << "interleaved line";
    ++next[c];
    ++lines;
    start = end + 1;
  }
  EXPECT_EQ(lines, size_t(kChildren * kLines));
}

TEST(Console, PrintLineAddsOneNewlineOnly) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  print_line(fds[1], "a");
  print_line(fds[1], "b\n");
  print_line(fds[1], "");
  ::close(fds[1]);
  char buf[16];
  const ssize_t n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::string(buf, 5), "a\nb\n\n");
}

// A closed descriptor is ignored: a message never fails a run.
TEST(Console, ClosedDescriptorIsIgnored) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  ::close(fds[1]);
  print_line(fds[1], "nobody reads this");
  SUCCEED();
}

}  // namespace
}  // namespace continua::io
