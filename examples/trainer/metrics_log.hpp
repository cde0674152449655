#pragma once
// metrics.jsonl (one object per logging step or evaluation, appended) and metrics.csv (the same records, one
// column per metric name in order of first appearance; rewritten whole only when a new column appears) in
// output_dir.
// On a resume from step N, records after N (written before the interruption) are dropped, so each step appears once.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"

namespace trainer {

namespace fs = std::filesystem;

using Record = std::vector<std::pair<std::string, double>>;  // name → value, in the order to print

class MetricsLog {
 public:
  // keep_through: the records with step <= this survive from an earlier run (a resume); -1: start afresh.
  MetricsLog(const fs::path& output_dir, long long keep_through) : jsonl_(output_dir / "metrics.jsonl"),
                                                                   csv_(output_dir / "metrics.csv") {
    if (keep_through >= 0) {
      std::ifstream in(jsonl_);
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto doc = nlohmann::ordered_json::parse(line, nullptr, false);  // keeps the record's key order
        if (doc.is_discarded() || !doc.is_object()) break;  // a line cut by the interruption ends the log
        if (auto s = doc.find("step"); s == doc.end() || !s->is_number() || s->get<double>() > double(keep_through))
          continue;
        Record r;
        for (const auto& [k, v] : doc.items()) r.emplace_back(k, v.is_number() ? v.get<double>() : NAN);
        records_.push_back(std::move(r));
      }
    }
    std::string text;
    for (const auto& r : records_) text += line_of(r);
    rlhf::io::write_file_atomic(jsonl_, text);
    write_csv();
  }

  // Appends to both files; metrics.csv is rewritten whole only when the record brings a new column (the first
  // training and evaluation records), so that a long run's log costs a line per record.
  void append(const Record& r) {
    records_.push_back(r);
    append_line(jsonl_, line_of(r));
    bool new_column = false;
    for (const auto& [k, v] : r) new_column |= std::find(columns_.begin(), columns_.end(), k) == columns_.end();
    if (new_column)
      write_csv();
    else
      append_line(csv_, csv_row(r));
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
  static void append_line(const fs::path& path, const std::string& line) {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << line;
    if (!out) rlhf::fail<rlhf::io_error>("cannot append to '", path.string(), "'");
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
};

}  // namespace trainer
