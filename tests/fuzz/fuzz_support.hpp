#pragma once
// Shared by the fuzz targets: the input as a file (the loaders read paths), and the rule that rlhf::error is the
// only acceptable way to refuse an input. Any other exception escapes LLVMFuzzerTestOneInput, which libFuzzer
// reports as a crash ("deadly signal" after std::terminate), like a sanitizer report.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rlhf/core/error.hpp"

namespace fuzz {

// One in-memory file (memfd) per process, rewritten for each input; its path is /proc/self/fd/<fd>, a regular
// file as far as open/fstat/ifstream can tell, so the loaders run exactly as on a file on disk.
class InputFile {
 public:
  InputFile() {
    fd_ = ::memfd_create("rlhf-fuzz-input", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    for (std::size_t done = 0; done < size;) {
      const ssize_t w = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<std::size_t>(w);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

inline InputFile& input_file() {
  static InputFile f;
  return f;
}

// Runs `body`; rlhf::error (and its subclasses) is the expected refusal of a bad input and is swallowed.
template <class Body>
int refuse_or_accept(Body&& body) {
  try {
    body();
  } catch (const rlhf::error&) {
  }
  return 0;
}

}  // namespace fuzz
