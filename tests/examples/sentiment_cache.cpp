// The sentiment_frontier example's cache (examples/sentiment_frontier/cache.hpp) on its own, without running the
// pipeline: atomic writes with unique temporaries, the per-folder lock against a second writer (another process),
// the cleaning of stale temporaries, and the integrity check of each cached unit's done marker and of checked files.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../../examples/sentiment_frontier/cache.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace sentiment;
using rlhf::test::TempDir;

namespace {

void put(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

doctest::Contains contains(const std::string& s) { return doctest::Contains(doctest::String(s.c_str())); }

}  // namespace

TEST_CASE("sentiment cache: write_file_atomic leaves only the file; two threads writing one path never collide") {
  const TempDir dir("rlhf-sentiment-cache-atomic");
  const fs::path p = dir.path / "table.csv";
  write_file_atomic(p, "a,b\n");
  CHECK(read_file(p) == "a,b\n");
  CHECK(names_in(dir.path) == std::vector<std::string>{"table.csv"});

  // The old fixed "<path>.tmp" name made concurrent writers rename each other's file away (an exception).
  const std::string x(1 << 16, 'x'), y(1 << 16, 'y');
  std::vector<std::string> errors;
  std::mutex m;
  auto writer = [&](const std::string& text) {
    try {
      for (int i = 0; i < 50; ++i) write_file_atomic(p, text);
    } catch (const std::exception& e) {
      const std::lock_guard<std::mutex> hold(m);
      errors.push_back(e.what());
    }
  };
  std::thread t1(writer, x), t2(writer, y);
  t1.join();
  t2.join();
  CHECK(errors.empty());
  const std::string last = read_file(p);
  CHECK((last == x || last == y));  // one whole file, never a mix
  CHECK(names_in(dir.path) == std::vector<std::string>{"table.csv"});

  CHECK_THROWS_WITH_AS(write_file_atomic(dir.path / "no" / "such" / "folder", "z"), doctest::Contains("cannot write"),
                       std::runtime_error);
}

TEST_CASE("sentiment cache: a second run on one output folder stops with a message naming the first") {
  const TempDir dir("rlhf-sentiment-cache-lock");
  {
    const OutputLock first(dir.path);
    // the same process, a second lock: refused (flock locks belong to the open file, not the process)
    CHECK_THROWS_WITH_AS(OutputLock(dir.path), contains("is in use by another run (pid " + std::to_string(::getpid()) + ", lock file"),
                         std::runtime_error);
  }
  CHECK_NOTHROW(OutputLock(dir.path));  // released with its owner

  // another process holds it: refused, naming that process; then it exits and a waiting locker gets it
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    const OutputLock held(dir.path);
    (void)!::write(ready[1], "x", 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ::_exit(0);  // the kernel releases the lock, however the process ends
  }
  ::close(ready[1]);
  char c;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  CHECK_THROWS_WITH_AS(OutputLock(dir.path), contains("(pid " + std::to_string(child) + ", lock file"),
                       std::runtime_error);
  const auto t0 = std::chrono::steady_clock::now();
  {
    const OutputLock waited(dir.path, /*wait=*/true);
    CHECK(std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(100));
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
}

TEST_CASE("sentiment cache: temporaries left by an interrupted run are removed, nothing else") {
  const TempDir dir("rlhf-sentiment-cache-stale");
  put(dir.path / "frontier.csv", "kept");
  put(dir.path / "frontier.csv.tmp-1234-0", "ours");
  put(dir.path / "sft-abc" / "sft.safetensors", "kept");
  put(dir.path / "sft-abc" / "sft.safetensors.tmp-0123456789abcdef", "library writer");
  put(dir.path / "runs" / "dpo-1" / "done.tmp", "older versions");
  put(dir.path / "runs" / "dpo-1" / "step-000001.safetensors", "kept");
  put(dir.path / ".tmp", "not a temporary of ours");
  CHECK(clean_stale_temporaries(dir.path) == 3);
  CHECK(fs::exists(dir.path / "frontier.csv"));
  CHECK(fs::exists(dir.path / "sft-abc" / "sft.safetensors"));
  CHECK(fs::exists(dir.path / "runs" / "dpo-1" / "step-000001.safetensors"));
  CHECK(fs::exists(dir.path / ".tmp"));
  CHECK(!fs::exists(dir.path / "frontier.csv.tmp-1234-0"));
  CHECK(!fs::exists(dir.path / "sft-abc" / "sft.safetensors.tmp-0123456789abcdef"));
  CHECK(!fs::exists(dir.path / "runs" / "dpo-1" / "done.tmp"));
  CHECK(clean_stale_temporaries(dir.path / "nonexistent") == 0);
}

TEST_CASE("sentiment cache: a unit whose files do not match its done marker is not done") {
  const TempDir dir("rlhf-sentiment-cache-entry");
  CacheKey key("pairs");
  key.add("N", 4).add("seed", 1);
  const CacheEntry entry(dir.path, key);
  CHECK(!entry.done());
  entry.begin();
  const std::string table = "prompt\treward\n0\t0.5\n1\t0.25\n";
  write_file_atomic(entry.file("completions.tsv"), table);
  write_file_atomic(entry.file("model.safetensors"), std::string(1000, '\x01'));
  entry.finish();
  CHECK(entry.done());
  CHECK(entry.verify().empty());
  write_checked_file(entry.file("model.safetensors.eval-1234"), "0.5 0.1\n");  // later, with its own check
  CHECK(entry.done());

  SUBCASE("a flipped byte") {
    std::string bytes = read_file(entry.file("model.safetensors"));
    bytes[517] ^= 0x10;
    put(entry.file("model.safetensors"), bytes);
    CHECK(!entry.done());
    CHECK(entry.verify() == "'model.safetensors' does not match its recorded hash (corrupt)");
  }
  SUBCASE("half a file") {
    put(entry.file("completions.tsv"), table.substr(0, table.size() / 2));
    CHECK(!entry.done());
    CHECK(entry.verify().find("'completions.tsv' has 13 bytes") == 0);
  }
  SUBCASE("an empty file") {
    put(entry.file("completions.tsv"), "");
    CHECK(!entry.done());
  }
  SUBCASE("a missing file") {
    fs::remove(entry.file("completions.tsv"));
    CHECK(entry.verify() == "'completions.tsv' is missing");
  }
  SUBCASE("a marker of the old format (the key's text only), truncated, or of another key") {
    put(entry.file("done"), key.text() + "\n");
    CHECK(entry.verify().find("lists no files") != std::string::npos);
    std::string marker = read_file(entry.file("done"));
    entry.finish();
    marker = read_file(entry.file("done"));
    put(entry.file("done"), marker.substr(0, marker.size() - 4));
    CHECK(entry.verify() == "its done marker is truncated");
    CacheKey other("pairs");
    other.add("N", 5).add("seed", 1);
    put(CacheEntry(dir.path, other).file("done"), marker);
    CHECK(!CacheEntry(dir.path, other).done());
  }
  SUBCASE("begin() removes a marker that did not verify; finish() records the new files") {
    put(entry.file("completions.tsv"), "garbage");
    CHECK(!entry.done());
    entry.begin();
    CHECK(!fs::exists(entry.file("done")));
    write_file_atomic(entry.file("completions.tsv"), table);
    entry.finish();
    CHECK(entry.done());
  }
}

TEST_CASE("sentiment cache: checked files (evaluation results) refuse empty, garbage, truncated and altered text") {
  const TempDir dir("rlhf-sentiment-cache-checked");
  const fs::path p = dir.path / "step-000001.safetensors.eval-abc";
  write_checked_file(p, "0.625 0.125\n");
  CHECK(read_checked_file(p) == std::optional<std::string>("0.625 0.125\n"));
  std::string why;
  put(p, "");
  CHECK(!read_checked_file(p, &why));
  CHECK(why == "no checksum line (truncated?)");
  put(p, "garbage");
  CHECK(!read_checked_file(p));
  write_checked_file(p, "0.625 0.125\n");
  std::string text = read_file(p);
  put(p, text.substr(0, text.size() - 3));
  CHECK(!read_checked_file(p, &why));
  CHECK(why == "checksum mismatch");
  text[2] = '9';
  put(p, text);
  CHECK(!read_checked_file(p));
  CHECK(!read_checked_file(dir.path / "missing", &why));
  CHECK(why == "missing");
}

TEST_CASE("sentiment cache: content_hash changes with any one byte") {
  std::string s(4096 + 5, '\0');
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = char(i * 7);
  const auto h = content_hash(s);
  for (std::size_t i = 0; i < s.size(); i += 37) {
    std::string t = s;
    t[i] ^= 1;
    CHECK(content_hash(t) != h);
  }
  CHECK(content_hash(s.substr(0, s.size() - 1)) != h);
  CHECK(content_hash("") != content_hash(std::string(1, '\0')));
}
