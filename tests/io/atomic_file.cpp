// rlhf::io::write_file_atomic: a successful write replaces the old content; a write that fails midway (a writer
// that throws, a full disk, a rename refused) leaves the target as it was and no temporary file behind.
#include "rlhf/io/atomic_file.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.hpp"
#include "support/text.hpp"

using namespace rlhf;
namespace fs = std::filesystem;

using rlhf::test::has;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("atomic_file: a successful write creates the file, then replaces its old content, and leaves nothing else") {
  const test::TempDir dir("rlhf-atomic-file");
  const auto p = dir / "table.txt";
  io::write_file_atomic(p, "first\n");
  CHECK(slurp(p) == "first\n");
  io::write_file_atomic(p, std::string("second, longer than the first\n"));
  CHECK(slurp(p) == "second, longer than the first\n");
  io::write_file_atomic(p, "");  // an empty file is a file
  CHECK(fs::exists(p));
  CHECK(fs::file_size(p) == 0);
  CHECK(names_in(dir.path) == std::vector<std::string>{"table.txt"});
}

TEST_CASE("atomic_file: a writer's bytes go to a temporary in the same folder; the target changes only at the end") {
  const test::TempDir dir("rlhf-atomic-file");
  const auto p = dir / "ckpt.bin";
  io::write_file_atomic(p, "old");
  std::string temporary;
  io::write_file_atomic(p, [&](io::AtomicFileSink& out) {
    out.write("ab");
    const int n = 7;
    out.write(&n, sizeof n);
    CHECK(out.bytes_written() == 2 + sizeof n);
    CHECK(out.target() == p.string());
    temporary = out.temporary();
    CHECK(fs::path(temporary).parent_path() == p.parent_path());
    CHECK(has(fs::path(temporary).filename().string(), "ckpt.bin.tmp-"));
    CHECK(fs::exists(temporary));
    CHECK(slurp(p) == "old");  // a reader meanwhile sees the old file
  });
  CHECK(slurp(p).size() == 2 + sizeof(int));
  CHECK_FALSE(fs::exists(temporary));
  CHECK(names_in(dir.path) == std::vector<std::string>{"ckpt.bin"});
}

TEST_CASE("atomic_file: a writer that throws midway leaves the target untouched and no temporary") {
  const test::TempDir dir("rlhf-atomic-file");
  const auto p = dir / "model.safetensors";
  const auto failing = [](io::AtomicFileSink& out) {
    out.write(std::string(1 << 16, 'x'));  // half a file is already on disk
    throw std::logic_error("writer gave up");
  };

  SUBCASE("an existing target keeps its content") {
    io::write_file_atomic(p, "the old checkpoint");
    CHECK_THROWS_WITH_AS(io::write_file_atomic(p, failing), "writer gave up", std::logic_error);
    CHECK(slurp(p) == "the old checkpoint");
    CHECK(names_in(dir.path) == std::vector<std::string>{"model.safetensors"});
  }
  SUBCASE("a missing target stays missing") {
    CHECK_THROWS_AS(io::write_file_atomic(p, failing), std::logic_error);
    CHECK(names_in(dir.path).empty());
  }
}

TEST_CASE("atomic_file: the library's own failures are io_errors naming the path; no temporary is left") {
  const test::TempDir dir("rlhf-atomic-file");

  SUBCASE("the folder does not exist") {
    const auto p = dir / "no-such-folder" / "f.txt";
    try {
      io::write_file_atomic(p, "x", "my_saver");
      FAIL("no error");
    } catch (const io_error& e) {
      CHECK_MESSAGE(has(e.what(), "my_saver: cannot write '" + p.string() + "'"), e.what());
      CHECK_MESSAGE(has(e.what(), "No such file or directory"), e.what());
    }
    CHECK(names_in(dir.path).empty());
  }
  SUBCASE("the rename is refused (the target is a folder that is not empty)") {
    const auto p = dir / "occupied";
    fs::create_directories(p / "child");
    try {
      io::write_file_atomic(p, "x");
      FAIL("no error");
    } catch (const io_error& e) {
      CHECK_MESSAGE(has(e.what(), "cannot write '" + p.string() + "'"), e.what());
      CHECK_MESSAGE(has(e.what(), "cannot rename"), e.what());
    }
    CHECK(fs::is_directory(p / "child"));
    CHECK(names_in(dir.path) == std::vector<std::string>{"occupied"});
  }
  SUBCASE("the path names no file") {
    CHECK_THROWS_WITH_AS(io::write_file_atomic(dir.path / "", "x"), doctest::Contains("names no file"), io_error);
    CHECK_THROWS_AS(io::write_file_atomic("", "x"), io_error);
  }
}

TEST_CASE("atomic_file: the disk filling up midway (a file-size limit) is an io_error; the old file survives") {
  const test::TempDir dir("rlhf-atomic-file");
  const auto p = dir / "big.bin";
  io::write_file_atomic(p, "small and old");
  // In a child process, so the limit (and SIGXFSZ ignored) touches nothing else of this test run.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
    try {
      io::write_file_atomic(p, std::string(1 << 20, 'z'));
      ::_exit(11);  // no error
    } catch (const io_error& e) {
      const std::string what = e.what();
      if (!has(what, "cannot write '" + p.string() + "'")) ::_exit(12);
      if (!has(what, "File too large")) ::_exit(13);
    } catch (...) {
      ::_exit(14);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK_MESSAGE(WEXITSTATUS(status) == 0, "child exit code ", WEXITSTATUS(status), " (see the test)");
  CHECK(slurp(p) == "small and old");
  CHECK(names_in(dir.path) == std::vector<std::string>{"big.bin"});
}

TEST_CASE("atomic_file: two threads replacing one file never share a temporary; the result is one whole file") {
  const test::TempDir dir("rlhf-atomic-file");
  const auto p = dir / "shared.txt";
  const std::string a(1 << 15, 'a'), b(1 << 15, 'b');
  std::vector<std::string> errors(2);
  const auto writer = [&](const std::string& text, std::string& error) {
    try {
      for (int i = 0; i < 30; ++i) io::write_file_atomic(p, text);
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread ta(writer, std::cref(a), std::ref(errors[0])), tb(writer, std::cref(b), std::ref(errors[1]));
  ta.join();
  tb.join();
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());
  const std::string last = slurp(p);
  CHECK((last == a || last == b));
  CHECK(names_in(dir.path) == std::vector<std::string>{"shared.txt"});
}
