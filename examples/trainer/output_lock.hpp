#pragma once
// An advisory lock (flock(2)) on output_dir, held for the whole run, so that two runs never write into one
// folder: the second stops at once with an error naming the first (its pid, host and start time).
//
//   OutputDirLock lock(config.output_dir);   // creates the folder if needed; throws rlhf::io_error if taken
//
// The lock is on output_dir/.rlhf-train.lock, which holds the holder's "pid <pid> on <host> since <time>". The
// kernel releases it when the process ends, however it ends (kill -9 included), so a stale file never blocks a
// later run; the file itself is left in place (removing it would let a third run lock a new file while the
// second still holds the old one). flock works between processes on one machine; over NFS, only where the
// server supports it.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <utility>

#include "rlhf/core/error.hpp"
#include "rlhf/io/untrusted.hpp"

namespace trainer {

namespace fs = std::filesystem;

inline constexpr const char* output_lock_name = ".rlhf-train.lock";

class OutputDirLock {
 public:
  explicit OutputDirLock(const fs::path& output_dir) : folder_(output_dir), file_(output_dir / output_lock_name) {
    const std::string shown = "output_dir '" + rlhf::io::detail::clip(output_dir.native(), 256) + "'";
    if (output_dir.empty()) rlhf::fail<rlhf::config_error>("output_dir is empty");
    if (output_dir.native().find('\0') != std::string::npos)
      rlhf::fail<rlhf::config_error>(shown, ": the path contains a NUL byte");
    std::error_code ec;
    const auto status = fs::status(output_dir, ec);
    if (fs::exists(status) && !fs::is_directory(status))
      rlhf::fail<rlhf::io_error>(shown, " exists and is not a folder");
    if (!fs::exists(status)) {
      fs::create_directories(output_dir, ec);
      if (ec) rlhf::fail<rlhf::io_error>("cannot create ", shown, ": ", ec.message());
    }

    fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) rlhf::fail<rlhf::io_error>(shown, ": cannot open its lock file '", output_lock_name, "': ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string holder = read_holder();
      ::close(fd_);
      fd_ = -1;
      if (err == EWOULDBLOCK)
        rlhf::fail<rlhf::io_error>(shown, " is in use by another rlhf-train run (", holder.empty() ? "holder unknown" : holder,
                                   "; lock file '", file_.string(), "'); wait for it to end or choose another output_dir");
      rlhf::fail<rlhf::io_error>(shown, ": cannot lock '", file_.string(), "': ", std::strerror(err));
    }
    const std::string me = describe_self();
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != ssize_t(me.size())) {
      // the lock is held either way; only the note for a second run is missing
    }
  }
  OutputDirLock(OutputDirLock&& other) noexcept
      : folder_(std::move(other.folder_)), file_(std::move(other.file_)), fd_(std::exchange(other.fd_, -1)) {}
  OutputDirLock& operator=(OutputDirLock&& other) noexcept {
    if (this != &other) {
      release();
      folder_ = std::move(other.folder_), file_ = std::move(other.file_), fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;
  ~OutputDirLock() { release(); }

  const fs::path& folder() const { return folder_; }
  const fs::path& lock_file() const { return file_; }

 private:
  void release() {
    if (fd_ >= 0) ::close(fd_);  // closing the last descriptor of the open file releases the flock
    fd_ = -1;
  }
  std::string read_holder() const {
    char buf[200] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string s(buf, n > 0 ? std::size_t(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
    for (char& c : s)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return s;
  }
  static std::string describe_self() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
    char when[32] = {};
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return "pid " + std::to_string(::getpid()) + " on " + host + " since " + when + "\n";
  }

  fs::path folder_, file_;
  int fd_ = -1;
};

}  // namespace trainer
