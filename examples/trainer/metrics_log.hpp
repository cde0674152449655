#pragma once
// metrics.jsonl (one object per logging step or evaluation, appended) and metrics.csv (the same records, one
// column per metric name in order of first appearance; rewritten whole only when a new column appears) in
// output_dir.
//
// Durable: each record goes to both files with write(2) and fdatasync, every result checked. A failed append
// (a full disk) cuts both files back to where they were, so neither holds a torn line, and throws rlhf::io_error
// naming the file and the step. RLHF_TRAIN_FAULT_WRITE_FAIL_AT=N makes the process's Nth append fail that way
// (after writing half its line), for tests.
//
// On a resume from step N, records after N (written before the interruption) are dropped, so each step appears
// once. A line that is not a JSON object (torn by a kill or a full disk, anywhere in the file) is skipped and
// reported in repairs(); the intact records before and after it are kept.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"

namespace trainer {

namespace fs = std::filesystem;

using Record = std::vector<std::pair<std::string, double>>;  // name → value, in the order to print

namespace detail {

// RLHF_TRAIN_FAULT_WRITE_FAIL_AT=N: true for the Nth call in this process (1-based) since the variable took its
// current value, else false.
inline bool fault_write_now() {
  static long long calls = 0;
  static std::string seen;
  const char* v = std::getenv("RLHF_TRAIN_FAULT_WRITE_FAIL_AT");
  const std::string now = v ? v : "";
  if (now != seen) seen = now, calls = 0;
  return !now.empty() && ++calls == std::atoll(now.c_str());
}

// Appends `bytes` to `path` and syncs it; returns "" or why it failed, in which case the file is cut back to its
// old size. `old_size` receives that size (to undo a later failure in another file).
inline std::string append_durably(const fs::path& path, const std::string& bytes, bool fault, off_t& old_size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return std::string("cannot open: ") + std::strerror(errno);
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) {
    const std::string why = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return why;
  }
  old_size = sb.st_size;
  bool ok = false;
  if (fault) {  // half the line reaches the disk, then the disk is full
    (void)rlhf::io::detail::write_all(fd, bytes.data(), bytes.size() / 2);
    errno = ENOSPC;
  } else {
    ok = rlhf::io::detail::write_all(fd, bytes.data(), bytes.size()) && ::fdatasync(fd) == 0;
  }
  std::string why = ok ? "" : std::strerror(errno);
  if (!ok && ::ftruncate(fd, old_size) != 0)
    why += std::string(", and cutting the file back to its last whole line failed: ") + std::strerror(errno);
  if (::close(fd) != 0 && ok) why = std::string("close failed: ") + std::strerror(errno);
  return why;
}

}  // namespace detail

class MetricsLog {
 public:
  // keep_through: the records with step <= this survive from an earlier run (a resume); -1: start afresh.
  MetricsLog(const fs::path& output_dir, long long keep_through) : jsonl_(output_dir / "metrics.jsonl"),
                                                                   csv_(output_dir / "metrics.csv") {
    std::error_code ec;
    if (keep_through >= 0 && fs::exists(fs::symlink_status(jsonl_, ec))) keep_records(keep_through);
    std::string text;
    for (const auto& r : records_) text += line_of(r);
    rlhf::io::write_file_atomic(jsonl_, text);
    write_csv();
  }

  // What the resume did to the earlier log, one line each (empty for a clean log or a fresh start).
  const std::vector<std::string>& repairs() const { return repairs_; }

  // Records as metrics.jsonl holds them: for a checkpoint to carry those a full disk kept out of the log.
  static std::string lines_of(const std::vector<Record>& records) {
    std::string text;
    for (const auto& r : records) text += line_of(r);
    return text;
  }
  // Appends the records of `file` (written by lines_of), when there is one.
  void append_from(const fs::path& file) {
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(file, ec))) return;
    std::vector<Record> records;
    read_records(file, -1, records);
    for (const auto& r : records) append(r);
  }

  // Appends to both files; metrics.csv is rewritten whole only when the record brings a new column (the first
  // training and evaluation records), so that a long run's log costs a line per record.
  void append(const Record& r) {
    const std::string line = line_of(r);
    off_t jsonl_size = 0, unused = 0;
    if (auto why = detail::append_durably(jsonl_, line, detail::fault_write_now(), jsonl_size); !why.empty())
      fail_append(jsonl_, r, why);
    records_.push_back(r);
    try {
      bool new_column = false;
      for (const auto& [k, v] : r) new_column |= std::find(columns_.begin(), columns_.end(), k) == columns_.end();
      if (new_column) {
        write_csv();
      } else if (auto why = detail::append_durably(csv_, csv_row(r), false, unused); !why.empty()) {
        fail_append(csv_, r, why);
      }
    } catch (...) {  // metrics.jsonl loses the record too, so that the two files agree
      records_.pop_back();
      if (::truncate(jsonl_.c_str(), jsonl_size) != 0) {}  // best effort: the error below names the cause
      throw;
    }
  }

  const fs::path& jsonl() const { return jsonl_; }
  const fs::path& csv() const { return csv_; }

 private:
  static std::string number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
  }
  static std::string line_of(const Record& r) {
    std::string s = "{";
    for (std::size_t i = 0; i < r.size(); ++i)
      s += (i ? ", " : "") + nlohmann::json(r[i].first).dump() + ": " + number(r[i].second);
    return s + "}\n";
  }
  static std::string step_of(const Record& r) {
    for (const auto& [k, v] : r)
      if (k == "step") return "the record of step " + number(v);
    return "a record";
  }
  [[noreturn]] static void fail_append(const fs::path& path, const Record& r, const std::string& why) {
    rlhf::fail<rlhf::io_error>("metrics log: cannot append ", step_of(r), " to '", path.string(), "': ", why,
                               " (the file keeps its earlier records, with no torn line)");
  }
  // Reads the earlier run's metrics.jsonl into records_ (see the top of this file).
  void keep_records(long long keep_through) { read_records(jsonl_, keep_through, records_); }
  // The records of a JSON Lines file with step <= keep_through (-1: every one), into `out`; what was skipped, into
  // repairs_.
  void read_records(const fs::path& file, long long keep_through, std::vector<Record>& out) {
    const std::string text = rlhf::io::read_regular_file(file, std::size_t(1) << 30);
    std::size_t dropped = 0, line_no = 0;
    for (std::size_t begin = 0; begin < text.size();) {
      std::size_t end = text.find('\n', begin);
      const bool torn_end = end == std::string::npos;
      if (torn_end) end = text.size();
      const std::string_view line(text.data() + begin, end - begin);
      begin = end + 1;
      ++line_no;
      if (line.empty()) continue;
      const std::string where = "'" + file.string() + "' line " + std::to_string(line_no);
      nlohmann::ordered_json doc;  // keeps the record's key order
      try {
        doc = rlhf::io::parse_json_text<nlohmann::ordered_json>(line, where, {.max_depth = 2});
      } catch (const rlhf::io_error& e) {
        repairs_.push_back(std::string(e.what()) + (torn_end ? " (the last line, cut short); skipped" : "; skipped"));
        continue;
      }
      const auto s = doc.is_object() ? doc.find("step") : doc.end();
      if (s == doc.end() || !s->is_number()) {
        repairs_.push_back(where + ": not a record with a numeric \"step\"; skipped");
        continue;
      }
      if (keep_through >= 0 && s->get<double>() > double(keep_through)) {
        ++dropped;
        continue;
      }
      Record r;
      for (const auto& [k, v] : doc.items()) r.emplace_back(k, v.is_number() ? v.get<double>() : NAN);
      out.push_back(std::move(r));
    }
    if (dropped)
      repairs_.push_back("'" + file.string() + "': " + std::to_string(dropped) + " record(s) after step " +
                         std::to_string(keep_through) + " dropped (the resumed run writes them again)");
  }
  std::string csv_row(const Record& r) const {
    std::string text;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i) text += ",";
      for (const auto& [k, v] : r)
        if (k == columns_[i] && std::isfinite(v)) text += number(v);
    }
    return text + "\n";
  }
  void write_csv() {
    columns_.clear();
    for (const auto& r : records_)
      for (const auto& [k, v] : r)
        if (std::find(columns_.begin(), columns_.end(), k) == columns_.end()) columns_.push_back(k);
    std::string text;
    for (std::size_t i = 0; i < columns_.size(); ++i) text += (i ? "," : "") + columns_[i];
    text += "\n";
    for (const auto& r : records_) text += csv_row(r);
    rlhf::io::write_file_atomic(csv_, text);
  }

  fs::path jsonl_, csv_;
  std::vector<Record> records_;
  std::vector<std::string> columns_;  // metrics.csv's header, in order of first appearance
  std::vector<std::string> repairs_;
};

}  // namespace trainer
