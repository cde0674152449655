// bench_gemm_engines: the float32 products of the CPU models at their own shapes, on each engine this build found,
// so that the engine each path takes is picked on measurements (docs/benchmarks.md, "Float32 products"):
//   own     cpu::sgemm on the level RLHF_CPU_ISA leaves (the models' path from AVX2 up)
//   eigen   Eigen's product, compiled for the build's baseline (-march=${RLHF_ARCH}; the models' portable path)
//   openblas, blis, dnnl   Debian's libopenblas-openmp-dev, libblis-openmp-dev, libdnnl-dev, where found
//   bf16_vdpbf16ps, bf16_amx   the models' bf16 products (gpt/bf16_matmul.hpp: b packed in the call) on each
//                              hardware level this CPU has, for the bf16 mode's table
// Each library picks its kernels at run time; to compare paths at one instruction level, lower all of them at once:
//   RLHF_CPU_ISA=avx2 OPENBLAS_CORETYPE=Haswell BLIS_ARCH_TYPE=haswell DNNL_MAX_CPU_ISA=AVX2 bench_gemm_engines
// Counters: GFLOP/s (2·M·N·K per product).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstddef>
#include <string>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/cpu/sgemm.hpp"
#include "rlhf/models/gpt/bf16_matmul.hpp"

#ifdef RLHF_BENCH_OPENBLAS
#include <cblas.h>
#endif
#ifdef RLHF_BENCH_BLIS
#include <blis.h>
#endif
#ifdef RLHF_BENCH_DNNL
#include <dnnl.h>
#endif

namespace {

// c [M, N] = a [M, K] · b [K, N], b stored as given or as its transpose (the backward products and the LM head).
struct Product {
  std::size_t M, N, K;
  bool b_transposed;
};

// The small GPT step's products (B 16 × T 128 rows, C 256, V 2048), the tiny one's, and SmolLM2-135M's MLP at T 512.
const std::vector<std::pair<std::string, Product>> products{
    {"gpt_small_qkv", {2048, 768, 256, false}},      {"gpt_small_fc", {2048, 1024, 256, false}},
    {"gpt_small_fcproj", {2048, 256, 1024, false}},  {"gpt_small_lm_head", {2048, 2048, 256, true}},
    {"gpt_small_dinp_fc", {2048, 256, 1024, true}},  {"gpt_tiny_qkv", {1024, 384, 128, false}},
    {"gpt_tiny_fcproj", {1024, 128, 512, false}},    {"smollm2_up", {512, 1536, 576, false}},
    {"smollm2_down", {512, 576, 1536, false}},
};

struct Operands {
  std::vector<float> a, b, c;
  explicit Operands(const Product& p) : a(p.M * p.K), b(p.K * p.N), c(p.M * p.N) {
    rlhf::Rng rng(1);
    for (auto& x : a) x = float(rng.normal());
    for (auto& x : b) x = float(rng.normal());
  }
};

template <class Multiply>
void run(benchmark::State& state, const Product& p, Multiply multiply) {
  Operands o(p);
  multiply(o, p);  // first call: buffers grow
  for (auto _ : state) {
    multiply(o, p);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(p.M * p.N * p.K), benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

void own(Operands& o, const Product& p) {
  const rlhf::cpu::Operand b = p.b_transposed ? rlhf::cpu::Operand{o.b.data(), 1, p.K}
                                              : rlhf::cpu::row_major(o.b.data(), p.N);
  rlhf::cpu::sgemm(o.c.data(), p.N, rlhf::cpu::row_major(o.a.data(), p.K), b, p.M, p.N, p.K, false);
}

void eigen(Operands& o, const Product& p) {
  using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Rows> a(o.a.data(), Eigen::Index(p.M), Eigen::Index(p.K));
  Eigen::Map<Rows> c(o.c.data(), Eigen::Index(p.M), Eigen::Index(p.N));
  if (p.b_transposed)
    c.noalias() = a * Eigen::Map<const Rows>(o.b.data(), Eigen::Index(p.N), Eigen::Index(p.K)).transpose();
  else
    c.noalias() = a * Eigen::Map<const Rows>(o.b.data(), Eigen::Index(p.K), Eigen::Index(p.N));
}

#ifdef RLHF_BENCH_OPENBLAS
void openblas(Operands& o, const Product& p) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, p.b_transposed ? CblasTrans : CblasNoTrans, int(p.M), int(p.N), int(p.K),
              1.0f, o.a.data(), int(p.K), o.b.data(), int(p.b_transposed ? p.K : p.N), 0.0f, o.c.data(), int(p.N));
}
#endif

#ifdef RLHF_BENCH_BLIS
void blis(Operands& o, const Product& p) {
  float one = 1.0f, zero = 0.0f;
  bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, dim_t(p.M), dim_t(p.N), dim_t(p.K), &one, o.a.data(), inc_t(p.K),
            1, o.b.data(), p.b_transposed ? 1 : inc_t(p.N), p.b_transposed ? inc_t(p.K) : 1, &zero, o.c.data(),
            inc_t(p.N), 1);
}
#endif

#ifdef RLHF_BENCH_DNNL
void dnnl(Operands& o, const Product& p) {
  dnnl_sgemm('N', p.b_transposed ? 'T' : 'N', dnnl_dim_t(p.M), dnnl_dim_t(p.N), dnnl_dim_t(p.K), 1.0f, o.a.data(),
             dnnl_dim_t(p.K), o.b.data(), dnnl_dim_t(p.b_transposed ? p.K : p.N), 0.0f, o.c.data(), dnnl_dim_t(p.N));
}
#endif

template <rlhf::cpu::Isa level>
void bf16_at(Operands& o, const Product& p) {
  namespace bf16 = rlhf::gpt::bf16;
  const rlhf::cpu::IsaCap cap(level);
  const bf16::Operand b = p.b_transposed ? bf16::Operand{o.b.data(), 1, p.K} : bf16::row_major(o.b.data(), p.N);
  bf16::gemm(o.c.data(), p.N, bf16::row_major(o.a.data(), p.K), b, p.M, p.N, p.K, false, bf16::Path::hardware);
}

void register_all() {
  using Multiply = void (*)(Operands&, const Product&);
  std::vector<std::pair<std::string, Multiply>> engines{{"own", own}, {"eigen", eigen}};
#ifdef RLHF_BENCH_OPENBLAS
  engines.emplace_back("openblas", openblas);
#endif
#ifdef RLHF_BENCH_BLIS
  engines.emplace_back("blis", blis);
#endif
#ifdef RLHF_BENCH_DNNL
  engines.emplace_back("dnnl", dnnl);
#endif
  using rlhf::cpu::Isa;
  if (rlhf::cpu::active_isa() >= Isa::avx512_bf16) engines.emplace_back("bf16_vdpbf16ps", bf16_at<Isa::avx512_bf16>);
  if (rlhf::cpu::active_isa() >= Isa::amx_bf16) engines.emplace_back("bf16_amx", bf16_at<Isa::amx_bf16>);
  for (const auto& [shape, p] : products)
    for (const auto& [engine, multiply] : engines)
      benchmark::RegisterBenchmark((shape + "/" + engine).c_str(),
                                   [p = p, multiply = multiply](benchmark::State& s) { run(s, p, multiply); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpu_kernels", rlhf::cpu::isa_summary());
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
