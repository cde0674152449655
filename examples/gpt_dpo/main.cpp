// DPO on the CPU GPT with synthetic preference pairs (train.hpp). This build has no CUDA: --device cuda is
// refused; gpt_dpo_cuda (main_cuda.cu) runs the same training function on the GPU model. Started by mpirun (and
// built with MPI), it trains data-parallel over the ranks (docs/distributed.md).
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"
#include "train.hpp"
#ifdef RLHF_EXAMPLE_MPI
#include "rlhf/distributed/mpi.hpp"
#endif

int main(int argc, char** argv) {
  gpt_dpo::Options o;
  if (const int code = gpt_dpo::parse_options(argc, argv, o); code >= 0) return code;
  if (o.device == "cuda") {
    std::fprintf(stderr, "gpt_dpo: --device cuda: this binary was built without CUDA; run gpt_dpo_cuda\n");
    return 2;
  }
  try {
#ifdef RLHF_EXAMPLE_MPI
    if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK")) {
      rlhf::MpiSession mpi(argc, argv);
      rlhf::MpiCommunicator world;
      if (world.rank() == 0) gpt_dpo::print_header(o);
      gpt_dpo::train_on_cpu<rlhf::Gpt<float>, rlhf::AdamW<float>>(o, &world);
      return 0;
    }
#endif
    gpt_dpo::print_header(o);
    gpt_dpo::train_on_cpu<rlhf::Gpt<float>, rlhf::AdamW<float>>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt_dpo: %s\n", e.what());
    return 1;
  }
  return 0;
}
