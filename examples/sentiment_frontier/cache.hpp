#pragma once
// The on-disk cache of the pipeline's phases. Each phase (or training run, or evaluation) writes into a folder
// named after it and a hash of everything it depends on — its settings and the keys of the phases it reads —
// and marks it finished with a file `done` written last (through a temporary file and a rename). A re-run finds
// `done` and skips the work; changed settings give a new hash and a new folder; an interrupted phase has no
// `done` and runs again.
//
// Integrity: `done` holds the key's text and, for every file of the folder at that moment, its size and a 64-bit
// content hash. A re-run verifies them all before using the folder; a file that is missing, truncated or has a
// flipped byte makes the unit "not done": it is recomputed (with a message on stderr), never used. Single cached
// files outside a unit (the evaluation results beside each checkpoint) carry their own checksum line
// (write_checked_file / read_checked_file). The hash detects corruption, not tampering (it is not cryptographic).
//
// Concurrency: write_file_atomic is the library's rlhf::io::write_file_atomic (rlhf/io/atomic_file.hpp): a uniquely
// named temporary (<path>.tmp-<random>), fsynced, renamed over <path>, then the folder fsynced. OutputLock holds a
// lock file (<out>/.lock, flock) for the whole run, so a second process on the same output folder stops with a
// message naming the first one's pid; the lock dies with its process, so a killed run leaves nothing to clean by
// hand. clean_stale_temporaries, called once the lock is held,
// removes the temporaries an interrupted run left behind.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/io/atomic_file.hpp"

namespace sentiment {

namespace fs = std::filesystem;

// The text a phase depends on, "name=value;" pairs in a fixed order, and its 64-bit FNV-1a hash.
class CacheKey {
 public:
  explicit CacheKey(std::string phase) : phase_(std::move(phase)) { text_ = "phase=" + phase_ + ";"; }

  template <class V>
  CacheKey& add(std::string_view name, const V& value) {
    std::ostringstream s;
    s.precision(9);
    s << value;
    text_.append(name).append("=").append(s.str()).append(";");
    return *this;
  }
  template <class V>
  CacheKey& add_list(std::string_view name, const V& values) {
    std::ostringstream s;
    s.precision(9);
    for (const auto& v : values) s << v << ",";
    return add(name, s.str());
  }

  const std::string& phase() const { return phase_; }
  const std::string& text() const { return text_; }
  std::string hex() const {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const char c : text_) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    char out[17];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return std::string(out, 12);
  }

 private:
  std::string phase_, text_;
};

namespace detail {

inline std::string errno_text() { return std::strerror(errno); }

}  // namespace detail

// True for the temporaries of the library's atomic writer (<name>.tmp-<random>), which this program and the
// safetensors and tokenizer writers use, and of older versions of this program (<name>.tmp-<pid>-<n>, <name>.tmp).
inline bool is_temporary_name(const std::string& name) {
  return name.find(".tmp-") != std::string::npos || (name.size() > 4 && name.ends_with(".tmp"));
}

// Writes `text` to `path` through a uniquely named temporary file, fsync and a rename (then fsyncs the folder), so
// a reader never sees half a file, a crash never leaves one, and two writers never share a temporary. Throws
// rlhf::io_error (a std::runtime_error) naming the path.
inline void write_file_atomic(const fs::path& path, const std::string& text) {
  rlhf::io::write_file_atomic(path, text, "sentiment_frontier");
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("read error on '" + path.string() + "'");
  return s.str();
}

// A 64-bit hash of `bytes` for integrity checks: FNV-1a over 8-byte little-endian words (the tail bytes one by one),
// then a final mix. Changing any one word always changes the result (each step is a bijection of the state).
inline std::uint64_t content_hash(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

inline std::string hex64(std::uint64_t v) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(v));
  return out;
}

// A file that carries its own check: `text` then a last line "checksum <hash of text>".
inline void write_checked_file(const fs::path& path, const std::string& text) {
  write_file_atomic(path, text + "checksum " + hex64(content_hash(text)) + "\n");
}

// The text written by write_checked_file, or nothing (with the reason in *why) when the file is missing,
// truncated, or its checksum does not match.
inline std::optional<std::string> read_checked_file(const fs::path& path, std::string* why = nullptr) {
  const auto no = [&](std::string reason) -> std::optional<std::string> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return no("missing");
  std::string all;
  try {
    all = read_file(path);
  } catch (const std::exception& e) {
    return no(e.what());
  }
  const std::string_view tag = "checksum ";
  const std::size_t at = all.rfind(tag);
  if (at == std::string::npos || (at > 0 && all[at - 1] != '\n')) return no("no checksum line (truncated?)");
  const std::string body = all.substr(0, at);
  if (all.substr(at) != std::string(tag) + hex64(content_hash(body)) + "\n") return no("checksum mismatch");
  return body;
}

// Removes, under `root` (recursively), the temporary files that interrupted writers left behind; returns how many.
// Only safe while no other writer uses `root`: call it with the folder's OutputLock held.
inline std::size_t clean_stale_temporaries(const fs::path& root) {
  std::size_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return 0;
  std::vector<fs::path> stale;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && is_temporary_name(it->path().filename().string())) stale.push_back(it->path());
  }
  for (const auto& p : stale) removed += fs::remove(p, ec) ? 1 : 0;
  return removed;
}

// An exclusive lock on an output folder for the life of this object: <dir>/.lock, held with flock(2), holding the
// owner's pid for the message a second process prints. The kernel drops the lock when its process ends, however it
// ends, so a killed run never leaves a stale lock. A second OutputLock on the same folder (another process, or the
// same one) throws a std::runtime_error naming the holder, or with wait = true blocks until the holder is gone.
class OutputLock {
 public:
  explicit OutputLock(const fs::path& dir, bool wait = false) : path_(dir / ".lock") {
    fs::create_directories(dir);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) throw std::runtime_error("cannot open the lock file '" + path_.string() + "': " + detail::errno_text());
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) {
        const std::string why = detail::errno_text();
        ::close(fd_);
        throw std::runtime_error("cannot lock '" + path_.string() + "': " + why);
      }
      const std::string holder = holder_text();
      if (!wait) {
        ::close(fd_);
        throw std::runtime_error("the output folder '" + dir.string() + "' is in use by another run (" + holder +
                                 ", lock file '" + path_.string() + "'): wait for it to finish, or pass another --out");
      }
      std::fprintf(stderr, "waiting for the other run on '%s' (%s) to finish\n", dir.string().c_str(), holder.c_str());
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
      break;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
  }
  ~OutputLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (removing it would race with a new locker)
  }
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string holder_text() const {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, std::size_t(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return pid.empty() ? std::string("pid unknown") : "pid " + pid;
  }
  fs::path path_;
  int fd_ = -1;
};

// The folder of one cached unit of work: <root>/<phase>-<hash>.
class CacheEntry {
 public:
  CacheEntry(const fs::path& root, CacheKey key) : key_(std::move(key)), dir_(root / (key_.phase() + "-" + key_.hex())) {}

  const fs::path& dir() const { return dir_; }
  const CacheKey& key() const { return key_; }
  fs::path file(const std::string& name) const { return dir_ / name; }

  // True when `done` is there, names this key, and every file it lists has its recorded size and hash. A marker
  // that fails (a corrupt or missing file, a marker of another key or of an older format) is reported on stderr
  // and the unit counts as not done: the phase recomputes it.
  bool done() const {
    std::error_code ec;
    if (!fs::exists(dir_ / "done", ec)) return false;
    const std::string why = verify();
    if (why.empty()) return true;
    std::fprintf(stderr, "cache: '%s' is not used: %s; recomputing it\n", dir_.string().c_str(), why.c_str());
    return false;
  }
  // Why the unit does not verify ("" when it does).
  std::string verify() const {
    std::string marker;
    try {
      marker = read_file(dir_ / "done");
    } catch (const std::exception& e) {
      return e.what();
    }
    const std::string head = key_.text() + "\n";
    if (marker.compare(0, head.size(), head) != 0) return "its done marker names another key";
    std::istringstream in(marker.substr(head.size()));
    std::string line;
    std::size_t files = 0;
    if (!std::getline(in, line) || std::sscanf(line.c_str(), "files %zu", &files) != 1)
      return "its done marker lists no files (written by an older version, or truncated)";
    for (std::size_t i = 0; i < files; ++i) {
      std::string name, hash;
      std::uintmax_t size = 0;
      if (!std::getline(in, line)) return "its done marker is truncated";
      std::istringstream row(line);
      if (!(row >> name >> size >> hash)) return "its done marker is malformed";
      std::error_code ec;
      const fs::path p = dir_ / name;
      if (!fs::is_regular_file(p, ec)) return "'" + name + "' is missing";
      if (fs::file_size(p, ec) != size) return "'" + name + "' has " + std::to_string(fs::file_size(p, ec)) +
                                             " bytes, not the " + std::to_string(size) + " recorded";
      std::string bytes;
      try {
        bytes = read_file(p);
      } catch (const std::exception& e) {
        return e.what();
      }
      if (hex64(content_hash(bytes)) != hash) return "'" + name + "' does not match its recorded hash (corrupt)";
    }
    if (!std::getline(in, line) || line != "end") return "its done marker is truncated";
    return "";
  }
  // Creates the folder (a fresh start: leftovers of an interrupted run are overwritten as the work goes) and removes
  // a done marker that did not verify.
  void begin() const {
    fs::create_directories(dir_);
    std::error_code ec;
    fs::remove(dir_ / "done", ec);
  }
  // Marks the work finished: `done` holds the key's text, then the size and content hash of every file in the
  // folder (except temporaries, and the evaluation results "*.eval-*" stored beside checkpoints later, which carry
  // their own checksum), then "end".
  void finish() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || name == "done" || is_temporary_name(name) ||
          name.find(".eval-") != std::string::npos || name.find_first_of(" \t\n") != std::string::npos)
        continue;
      names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    std::string marker = key_.text() + "\nfiles " + std::to_string(names.size()) + "\n";
    for (const auto& name : names) {
      const std::string bytes = read_file(dir_ / name);
      marker += name + " " + std::to_string(bytes.size()) + " " + hex64(content_hash(bytes)) + "\n";
    }
    write_file_atomic(dir_ / "done", marker + "end\n");
  }

 private:
  CacheKey key_;
  fs::path dir_;
};

}  // namespace sentiment
