#pragma once
// Which x86 vector instructions the CPU models' kernels may use, picked once at run time.
//
// The library is compiled for a baseline (x86-64-v3, AVX2 + FMA, by default: CMake's RLHF_ARCH) and carries kernels
// for the levels above it, each compiled with its own target attribute. The level used is the CPU's, lowered by the
// environment variable RLHF_CPU_ISA when set (portable, avx2, avx512, avx512_bf16, amx_bf16): a test or a benchmark forces a
// path with it, and a user can rule one out. A level above the CPU's is not raised to; a bad value throws, naming
// the variable and the values it takes.
//
//   portable     no kernel of ours: Eigen's products, compiled for the baseline
//   avx2         cpu::sgemm's AVX2 + FMA tile (8 floats per vector)
//   avx512       cpu::sgemm's AVX-512 F tile (16 floats per vector)
//   avx512_bf16  and bf16 products with float32 sums in hardware (vdpbf16ps), which the models' bf16 mode uses;
//                below it that mode multiplies in float32 (models/gpt/bf16_matmul.hpp, docs/models/cpu.md)
//   amx_bf16     and AMX-BF16 tiles for those products (models/gpt/bf16_amx.hpp), where the operating system grants
//                the tile state to the process (Linux 5.16 and later, asked for once with arch_prctl)
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define RLHF_CPU_X86 1
#else
#define RLHF_CPU_X86 0
#endif

namespace rlhf::cpu {

// Each level has every instruction of the levels before it.
enum class Isa { portable, avx2, avx512, avx512_bf16, amx_bf16 };
inline constexpr Isa top_isa = Isa::amx_bf16;

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable: return "portable";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
    case Isa::amx_bf16: return "amx_bf16";
  }
  return "?";
}

inline Isa parse_isa(std::string_view name, std::string_view source) {
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx_bf16})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument(std::string(source) + ": '" + std::string(name) +
                              "' is not a CPU level; expected portable, avx2, avx512, avx512_bf16 or amx_bf16");
}

// AMX-BF16 and AMX-TILE (cpuid leaf 7: edx bits 22 and 24), with the tile state granted to this process: Linux
// hands it out only on request (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA), and refuses it on older kernels.
inline bool amx_bf16_usable() {
#if RLHF_CPU_X86 && defined(__linux__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0u), "c"(0u));
  if (eax < 7) return false;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7u), "c"(0u));
  const bool has_amx = (edx >> 22 & 1u) && (edx >> 24 & 1u);
  constexpr long request_permission = 0x1023, xtiledata = 18;
  return has_amx && syscall(SYS_arch_prctl, request_permission, xtiledata) == 0;
#else
  return false;
#endif
}

// The highest level this CPU runs (cpuid, through the compiler's builtins).
inline Isa detected_isa() {
#if RLHF_CPU_X86
  static const Isa level = [] {
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return Isa::portable;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl")))
      return Isa::avx2;
    if (!__builtin_cpu_supports("avx512bf16")) return Isa::avx512;
    return amx_bf16_usable() ? Isa::amx_bf16 : Isa::avx512_bf16;
  }();
  return level;
#else
  return Isa::portable;
#endif
}

// The level RLHF_CPU_ISA asks for, or none.
inline const char* requested_isa_text() {
  const char* text = std::getenv("RLHF_CPU_ISA");
  return text && *text ? text : nullptr;
}

namespace detail {
// A lower cap set in code (IsaCap), for tests and benchmarks that compare the paths in one process.
inline std::atomic<int>& isa_cap() {
  static std::atomic<int> cap{int(top_isa)};
  return cap;
}
}  // namespace detail

// The level the kernels use: the CPU's, capped by RLHF_CPU_ISA (read once; a bad value throws) and by any IsaCap
// alive.
inline Isa active_isa() {
  static const Isa level = [] {
    const Isa cpu = detected_isa();
    const char* text = requested_isa_text();
    if (!text) return cpu;
    const Isa asked = parse_isa(text, "RLHF_CPU_ISA");
    return asked < cpu ? asked : cpu;
  }();
  return std::min(level, Isa(detail::isa_cap().load(std::memory_order_relaxed)));
}

// While alive, the kernels use no level above `cap`, in every thread. Not for concurrent use: one at a time.
class IsaCap {
 public:
  explicit IsaCap(Isa cap) : previous_(detail::isa_cap().exchange(int(cap))) {}
  ~IsaCap() { detail::isa_cap().store(previous_); }
  IsaCap(const IsaCap&) = delete;
  IsaCap& operator=(const IsaCap&) = delete;

 private:
  int previous_;
};

// One line for a program's start-up: the level in use, and why when it is not the CPU's.
inline std::string isa_summary() {
  const Isa cpu = detected_isa(), used = active_isa();
  std::string line = std::string("CPU kernels: ") + isa_name(used);
  if (used != cpu) line += std::string(" (lowered by RLHF_CPU_ISA; the CPU has ") + isa_name(cpu) + ")";
  else if (requested_isa_text() && parse_isa(requested_isa_text(), "RLHF_CPU_ISA") > cpu)
    line += std::string(" (RLHF_CPU_ISA asks for ") + requested_isa_text() + ", which this CPU lacks)";
  return line;
}

}  // namespace rlhf::cpu
