#pragma once
// A fresh folder under the system's temporary folder, removed with everything in it when the test ends.
#include <filesystem>
#include <random>
#include <string>

namespace rlhf::test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "rlhf-test")
      : path(std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(std::random_device{}()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

}  // namespace rlhf::test
