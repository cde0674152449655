#pragma once
// The on-disk cache of the pipeline's phases. Each phase (or training run, or evaluation) writes into a folder
// named after it and a hash of everything it depends on — its settings and the keys of the phases it reads —
// and marks it finished with a file `done` written last (through a temporary file and a rename). A re-run finds
// `done` and skips the work; changed settings give a new hash and a new folder; an interrupted phase has no
// `done` and runs again.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

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

// Writes `text` to `path` through `path`.tmp and a rename, so a reader never sees half a file.
inline void write_file_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "'");
    out << text;
    if (!out.flush()) throw std::runtime_error("write error on '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The folder of one cached unit of work: <root>/<phase>-<hash>.
class CacheEntry {
 public:
  CacheEntry(const fs::path& root, CacheKey key) : key_(std::move(key)), dir_(root / (key_.phase() + "-" + key_.hex())) {}

  const fs::path& dir() const { return dir_; }
  const CacheKey& key() const { return key_; }
  fs::path file(const std::string& name) const { return dir_ / name; }
  bool done() const { return fs::exists(dir_ / "done"); }
  // Creates the folder (a fresh start: leftovers of an interrupted run are overwritten as the work goes).
  void begin() const { fs::create_directories(dir_); }
  // Marks the work finished; the marker holds the key's text, to see what a folder was made from.
  void finish() const { write_file_atomic(dir_ / "done", key_.text() + "\n"); }

 private:
  CacheKey key_;
  fs::path dir_;
};

}  // namespace sentiment
