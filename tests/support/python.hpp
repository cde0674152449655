#pragma once
// Tests that need Python (or a Python module such as torch), an optional dependency. Such a test lives in an
// executable of its own and calls skip_without_python(...) first: when the interpreter or module is missing,
// the executable exits with skip_exit_code, which tests/CMakeLists.txt gives ctest as SKIP_RETURN_CODE, so the
// dependency's absence reads "Skipped", never "Passed".
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace rlhf::test {

inline constexpr int skip_exit_code = 77;

// $RLHF_PYTHON if set; else the system interpreter, where python3-torch installs; else python3 on PATH; else "".
inline std::string python() {
  if (const char* p = std::getenv("RLHF_PYTHON"); p && *p) return p;
  if (std::filesystem::exists("/usr/bin/python3")) return "/usr/bin/python3";
  return std::system("command -v python3 >/dev/null 2>&1") == 0 ? "python3" : "";
}

inline bool python_imports(const std::string& module) {
  return std::system((python() + " -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

// Ends the executable as skipped unless python (and `module`, if given) is available.
inline void skip_without_python(const std::string& module = "", const std::string& install = "python3") {
  const bool have = !python().empty() && (module.empty() || python_imports(module));
  if (have) return;
  std::printf("skipped: %s is not available (apt-get install %s)\n",
              module.empty() ? "python3" : ("python module " + module).c_str(), install.c_str());
  std::fflush(stdout);
  std::_Exit(skip_exit_code);
}

}  // namespace rlhf::test
