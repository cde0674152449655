#pragma once
// Writing a file atomically: the one place in the library (and its examples) that replaces a file.
//
//   write_file_atomic(path, bytes)                       // a string's bytes
//   write_file_atomic(path, [&](AtomicFileSink& out) {   // or whatever a writer puts through out.write(...)
//     out.write(header); out.write(data, n);
//   });
//
// The bytes go to a new temporary file in the same folder, `<path>.tmp-<16 hex digits>` (created with O_EXCL, so
// two writers, threads or processes, never share one), which is fsynced, closed and renamed over `path`; the
// folder is then fsynced so that the rename itself survives a crash (best effort: some file systems refuse to
// fsync a folder, and the new file is in place by then). A reader therefore sees the old file or the new one,
// never half of either, and a crash or a kill at any moment leaves one of the two (plus, after a kill, at most
// a stray temporary, which any later run may delete: its name contains ".tmp-").
//
// On any failure the temporary file is removed and `path` is untouched. The library's own failures are
// rlhf::io_error whose message names `path` and the system's reason; an exception thrown by a writer leaves
// unchanged, after the same clean-up. New files get mode 0666 less the umask. POSIX only. docs/io/safetensors.md.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include "rlhf/core/error.hpp"  // rlhf::io_error

namespace rlhf::io {

namespace detail {

inline std::string errno_str() { return std::strerror(errno); }

// Writes all n bytes; false (with errno set) on failure.
inline bool write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// 16 hex digits, different on every call in this process (a counter is mixed in) and, with overwhelming
// probability, from every other process's.
inline std::string random_suffix() {
  static std::atomic<std::uint64_t> calls{0};
  std::random_device rd;
  const std::uint64_t r = ((std::uint64_t(rd()) << 32) ^ rd()) + calls.fetch_add(1) * 0x9e3779b97f4a7c15ull;
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 0; i < 16; ++i) s[i] = hex[(r >> (4 * i)) & 0xf];
  return s;
}

// fsync of a folder, so that a rename inside it is durable. Best effort; errors are ignored.
inline void fsync_folder(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? std::filesystem::path(".") : dir;
  if (const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// The temporary file of one write: closes its descriptor and removes it unless it was renamed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool renamed = false;
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!renamed && !path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace detail

class AtomicFileSink;

// Replaces `path` by what `write(sink)` writes, atomically (see the top of this file). `who` begins every error
// message (the caller's function name).
template <class Writer>
  requires std::invocable<Writer&, AtomicFileSink&>
void write_file_atomic(const std::filesystem::path& path, Writer&& write,
                       std::string_view who = "rlhf::io::write_file_atomic");

// What write_file_atomic hands its writer: appends bytes to the temporary file. A failed write throws io_error
// naming the target and the temporary.
class AtomicFileSink {
 public:
  void write(const void* data, std::size_t n) {
    if (!detail::write_all(fd_, data, n))
      fail<io_error>(who_, ": cannot write '", target_, "': writing its temporary file '", temporary_,
                     "' failed: ", detail::errno_str());
    written_ += n;
  }
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

  const std::string& target() const { return target_; }
  const std::string& temporary() const { return temporary_; }
  std::size_t bytes_written() const { return written_; }

 private:
  template <class Writer>
    requires std::invocable<Writer&, AtomicFileSink&>
  friend void write_file_atomic(const std::filesystem::path&, Writer&&, std::string_view);
  AtomicFileSink(int fd, std::string target, std::string temporary, std::string_view who)
      : fd_(fd), target_(std::move(target)), temporary_(std::move(temporary)), who_(who) {}

  int fd_;
  std::string target_, temporary_;
  std::string_view who_;
  std::size_t written_ = 0;
};

template <class Writer>
  requires std::invocable<Writer&, AtomicFileSink&>
void write_file_atomic(const std::filesystem::path& path, Writer&& write, std::string_view who) {
  const std::string where = path.string();
  const auto fail_write = [&](const auto&... parts) {
    fail<io_error>(who, ": cannot write '", where, "': ", parts...);
  };
  if (where.empty() || !path.has_filename()) fail_write("the path names no file");

  detail::TempFile tmp;
  for (int attempt = 0; tmp.fd < 0; ++attempt) {
    std::string name = where + ".tmp-" + detail::random_suffix();
    tmp.fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (tmp.fd >= 0) {
      tmp.path = std::move(name);
    } else if (errno != EEXIST || attempt == 15) {  // nothing was created, so nothing to remove
      fail_write("cannot create its temporary file '", name, "': ", detail::errno_str());
    }
  }

  AtomicFileSink sink(tmp.fd, where, tmp.path, who);
  write(sink);  // an exception leaves through ~TempFile, which removes the temporary

  if (::fsync(tmp.fd) != 0) fail_write("fsync of its temporary file '", tmp.path, "' failed: ", detail::errno_str());
  const int fd = std::exchange(tmp.fd, -1);
  if (::close(fd) != 0) fail_write("close of its temporary file '", tmp.path, "' failed: ", detail::errno_str());
  if (::rename(tmp.path.c_str(), where.c_str()) != 0)
    fail_write("cannot rename its temporary file '", tmp.path, "' over it: ", detail::errno_str());
  tmp.renamed = true;
  detail::fsync_folder(path.parent_path());
}

// Replaces `path` by `bytes`, atomically.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                              std::string_view who = "rlhf::io::write_file_atomic") {
  write_file_atomic(path, [bytes](AtomicFileSink& out) { out.write(bytes); }, who);
}

}  // namespace rlhf::io
