#include "continua/io/console.h"

#include <cerrno>
#include <string>

#include <unistd.h>

namespace continua::io {

void print_line(int fd, std::string_view text) {
  std::string line(text);
  if (line.empty() || line.back() != '\n') line += '\n';
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += size_t(n);
  }
}

}  // namespace continua::io
