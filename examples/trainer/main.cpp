// rlhf-train METHOD [--config FILE.json] [--key value ...]: the library's methods on JSON Lines data in TRL's
// formats, with a GPT-2 model folder or a fresh model, evaluation, metrics files, checkpoints and an exact resume.
// rlhf-train merge: LoRA adapters merged into their base (merge.hpp).
// Started by mpirun, it trains data-parallel over the ranks (docs/distributed.md). docs/trainer.md.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "arguments.hpp"
#include "merge.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "run.hpp"
#ifdef RLHF_TRAINER_MPI
#include "rlhf/distributed/mpi.hpp"
#endif

namespace {

// Runs and turns an error into a message and exit status 1; with several ranks the others are stopped too, since
// they would wait for this one forever.
int run_or_report(const trainer::Parsed& parsed, rlhf::Communicator& comm) {
  const auto report = [&](const char* what) {
    if (comm.size() > 1)
      std::fprintf(stderr, "rlhf-train (rank %d of %d): %s\n", comm.rank(), comm.size(), what);
    else
      std::fprintf(stderr, "rlhf-train: %s\n", what);
#ifdef RLHF_TRAINER_MPI
    if (comm.size() > 1) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    return 1;
  };
  try {
    return trainer::run(parsed.args, *parsed.method, comm);
  } catch (const rlhf::error& e) {
    return report(e.what());
  } catch (const std::exception& e) {
    return report(e.what());
  }
}

bool started_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "merge") return trainer::merge_main(argc, argv);
  const trainer::Parsed parsed = trainer::parse_arguments(argc, argv);
  if (parsed.exit_code >= 0) return parsed.exit_code;
  try {  // a bad RLHF_CPU_ISA is refused before any work, as a bad flag is
    rlhf::cpu::active_isa();
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "rlhf-train: %s\n", e.what());
    return 2;
  }
  if (started_by_mpirun()) {
#ifdef RLHF_TRAINER_MPI
    try {
      rlhf::MpiSession mpi(argc, argv);
      rlhf::MpiCommunicator world;
      return run_or_report(parsed, world);
    } catch (const std::exception& e) {  // MPI itself did not start
      std::fprintf(stderr, "rlhf-train: %s\n", e.what());
      return 1;
    }
#else
    std::fprintf(stderr, "rlhf-train: started by mpirun, but built without MPI (apt-get install libopenmpi-dev "
                         "openmpi-bin, then rebuild)\n");
    return 1;
#endif
  }
  rlhf::SingleProcess one;
  return run_or_report(parsed, one);
}
