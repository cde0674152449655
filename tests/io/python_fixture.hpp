#pragma once
// The Python side of the safetensors interop tests: runs make_safetensors_fixture.py in a test folder.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/python.hpp"
#include "support/temp_dir.hpp"

namespace rlhf::test {

inline const std::filesystem::path safetensors_fixture_script =
    std::filesystem::path(__FILE__).parent_path() / "make_safetensors_fixture.py";

// Runs the fixture script with `args`; returns its exit status and puts its output in `log`.
inline int run_fixture(const TempDir& dir, const std::string& args, std::string& log) {
  const auto out = dir / "python.log";
  const auto cmd =
      python() + " '" + safetensors_fixture_script.string() + "' " + args + " >'" + out.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream f(out);
  std::ostringstream text;
  text << f.rdbuf();
  log = text.str();
  return rc;
}

inline std::vector<float> iota_values(std::size_t n, float scale, float shift) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * scale + shift;
  return v;
}

}  // namespace rlhf::test
