#pragma once
// Where a run's numbers come from: the commit of the source tree (git rev-parse HEAD, "unknown" without git, with
// "+ uncommitted changes" when tracked files differ from it), the CPU (/proc/cpuinfo's model name and the ISA flags
// that change the float sums: AVX2, FMA, AVX-512 F/BW/VL, AVX-512 BF16), the ISA this binary was compiled for (its
// -march: the paths Eigen and the bf16 products take), the compiler and the OpenMP threads.
// docs/experiments/sentiment.md#reproducibility-which-cpu-each-csv-belongs-to.
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <array>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace sentiment {

// The first line `command` prints, without its newline; "" when it fails.
inline std::string first_line_of(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    std::array<char, 256> buf{};
    if (std::fgets(buf.data(), int(buf.size()), pipe)) out = buf.data();
    if (pclose(pipe) != 0) out.clear();
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

inline std::string source_commit(const std::string& source_dir) {
  const std::string git = "git -C '" + source_dir + "' ";
  std::string commit = first_line_of(git + "rev-parse HEAD 2>/dev/null");
  if (commit.empty()) return "unknown";
  if (!first_line_of(git + "status --porcelain --untracked-files=no 2>/dev/null").empty())
    commit += " + uncommitted changes";
  return commit;
}

// "model name" and the ISA flags that matter, from /proc/cpuinfo ("unknown" where it is not readable).
inline std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown";
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && model == "unknown") model = value;
    if (key == "flags" && flags.empty()) {
      std::istringstream words(value);
      for (std::string w; words >> w;) flags.insert(w);
    }
  }
  std::string isa;
  for (const char* f : {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"})
    if (flags.count(f)) isa += std::string(isa.empty() ? "" : " ") + f;
  return model + "; ISA: " + (isa.empty() ? "none of avx2 fma avx512f avx512bw avx512vl avx512_bf16" : isa);
}

// The vector ISA the compiler was allowed to use for this binary.
inline std::string compiled_isa() {
  std::string s;
#if defined(__AVX512F__)
  s += "avx512f ";
#endif
#if defined(__AVX512BF16__)
  s += "avx512_bf16 ";
#endif
#if defined(__AVX2__)
  s += "avx2 ";
#endif
#if defined(__FMA__)
  s += "fma ";
#endif
  if (s.empty()) return "baseline x86-64 (no AVX2)";
  s.pop_back();
  return s;
}

inline std::string provenance_text(const std::string& source_dir) {
  std::ostringstream s;
  s << "# commit:   " << source_commit(source_dir) << "\n"
    << "# machine:  " << cpu_description() << "\n"
    << "# compiled: " << compiled_isa() << " (" <<
#if defined(__clang__)
      "clang " << __clang_major__ << "." << __clang_minor__
#elif defined(__GNUC__)
      "g++ " << __GNUC__ << "." << __GNUC_MINOR__
#else
      "unknown compiler"
#endif
    << "), OpenMP threads " <<
#if defined(_OPENMP)
      omp_get_max_threads()
#else
      "none (built without OpenMP)"
#endif
    << "\n";
  return s.str();
}

}  // namespace sentiment
